"""Stochastic Parameter Decomposition (Bushnaq, Braun, Sharkey 2025).

Each target matrix ``W`` is written as ``C`` rank-one subcomponents ``U_c V_c^T``. A per-subcomponent
gate turns the component activation ``V_c . a`` into a causal importance ``g_c`` in ``[0, 1]``; the model
run with every subcomponent scaled by a random mask ``m = g + (1 - g) r``, ``r ~ U(0, 1)``, must still
compute the target model's output. Four losses:

- faithfulness: ``sum_layers ||W - sum_c U_c V_c^T||^2 / N`` (N: number of target weights);
- stochastic reconstruction: output of the model with all targets masked vs the target output;
- layerwise stochastic reconstruction: the same with one target masked at a time (mean over targets);
- importance minimality: ``sum_layers sum_c |g_c|^p``, mean over inputs, using the upper-leaky sigmoid.

Outputs are compared by MSE for toy models and by KL for language models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from paramlens.core.fields import LearningRate, Seed
from paramlens.core.weights import LinearMap, Target
from paramlens.decompose.components import (
    Gates,
    RankOne,
    Subcomponents,
    TiedSubcomponents,
    check_tied_in,
    hard_sigmoid,
    lower_leaky_hard_sigmoid,
    module_key,
    tied_owners,
    upper_leaky_hard_sigmoid,
)
from paramlens.decompose.forward import Coefficient, faithfulness, output_loss, run_maps, with_total
from paramlens.decompose.schedule import Schedule


class SPDConfig(Schedule):
    """SPD settings; the defaults (with :class:`Schedule`'s) are the paper's for TMS 5-2."""

    method: Literal["spd"] = "spd"
    C: int = Field(20, ge=1, description="subcomponents per target")
    p: float = Field(1.0, gt=0, description="exponent of the importance-minimality loss")
    faithfulness_coeff: Coefficient = 1.0
    stochastic_recon_coeff: Coefficient = 1.0
    layerwise_recon_coeff: Coefficient = 1.0
    importance_minimality_coeff: Coefficient = 3e-3
    gate_hidden: int = Field(16, ge=1)
    leaky_slope: float = Field(0.01, ge=0)
    n_mask_samples: int = Field(1, ge=1)
    faithfulness_warmup_steps: int = Field(
        0, ge=0, description="steps of fitting the subcomponents' sum to the weights alone (AdamW) before training")
    faithfulness_warmup_lr: LearningRate = 1e-2
    faithfulness_warmup_weight_decay: float = Field(0.1, ge=0)
    output_loss: Literal["mse", "kl"] = "mse"
    tied: dict[str, str] = Field(
        default_factory=dict, description="{target: owner}: target's matrix is owner's transpose (tied weights); "
        "it is decomposed with the owner's subcomponents, transposed, and gated on its own")
    compile: bool | None = Field(
        None, description="compile the gate MLPs with torch.compile (about 20 s once, then ~3x faster gates); "
        "None: only for runs of 3000 steps or more")
    seed: Seed = 0

    def compiles(self) -> bool:
        return self.compile if self.compile is not None else self.steps >= 3000


# On toy models ParamLens runs SPD with the paper's losses and coefficients but a 3x higher, constant
# learning rate: the same solution in a quarter of the steps (benchmarks/decompose_tms.py). At 1e-2 some
# seeds of TMS 5-2 settle with two features on one subcomponent.
FAST_TOY_SCHEDULE = {"lr": 3e-3, "lr_schedule": "constant"}


class SPDModel(nn.Module):
    """Subcomponents and gates for every target. Holds no copy of the decomposed model."""

    def __init__(self, targets: Sequence[Target], C: int, gate_hidden: int = 16, compile: bool = False,
                 tied: dict[str, str] | None = None):
        super().__init__()
        self.targets = list(targets)
        self.tied = dict(tied or {})
        by_name = {t.name: t for t in self.targets}
        self.owners = tied_owners(self.targets, self.tied)
        self.components = nn.ModuleDict({module_key(t): Subcomponents(t, C) for t in self.owners})
        self.tied_components = {
            module_key(t): TiedSubcomponents(t, self.components[module_key(by_name[self.tied[t.name]])])
            for t in self.targets if t.name in self.tied
        }
        self.gates = nn.ModuleDict({module_key(t): Gates(C, gate_hidden) for t in self.targets})
        self.gate_fns = {k: torch.compile(g.forward, dynamic=False) if compile else g for k, g in self.gates.items()}

    def component(self, target: Target) -> RankOne:
        key = module_key(target)
        return self.tied_components[key] if key in self.tied_components else self.components[key]

    @torch.no_grad()
    def init_from(self, model: nn.Module) -> None:
        """Unit-norm random ``V`` columns and ``U`` rows, each ``U_c`` scaled by ``U_c^T W V_c`` so that the
        initial sum already points along ``W``'s action on each read direction. Checks tied targets."""
        check_tied_in(model, self.targets, self.tied)
        for t in self.owners:
            comp = self.components[module_key(t)]
            W = t.matrix(model).detach().float()
            comp.V.copy_(torch.nn.functional.normalize(comp.V, dim=0))
            comp.U.copy_(torch.nn.functional.normalize(comp.U, dim=1))
            scale = torch.einsum("co,oi,ic->c", comp.U, W, comp.V)
            comp.U.mul_(scale[:, None])

    def warm_up(self, model: nn.Module, steps: int, lr: float, weight_decay: float) -> None:
        """Fit the subcomponents' sums to the target weights (faithfulness loss only) for ``steps`` AdamW
        steps, so training starts from a faithful decomposition; weight decay keeps unneeded parts small."""
        params = list(self.components.parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            opt.zero_grad()
            faithfulness(model, self.owners, lambda t: self.component(t).weight()).backward()
            opt.step()

    def pre_importance(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Gate outputs before the sigmoid, ``{target: (..., C)}``, from the targets' inputs."""
        return {t.name: self.gate_fns[module_key(t)](self.component(t).inner(inputs[t.name])) for t in self.targets}

    def importance(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Causal importances in ``[0, 1]`` (hard sigmoid), ``{target: (..., C)}``."""
        return {n: hard_sigmoid(g) for n, g in self.pre_importance(inputs).items()}

    def maps(self, masks: dict[str, Tensor | None], only: Sequence[Target] | None = None) -> dict[Target, LinearMap]:
        return {t: self.component(t).masked(masks[t.name]) for t in (only or self.targets)}



def spd_losses(
    spd: SPDModel, model: nn.Module, x: Tensor, target_out: Tensor, inputs: dict[str, Tensor], cfg: SPDConfig,
    noise: list[dict[str, Tensor]],
) -> dict[str, Tensor]:
    """The four SPD losses and their weighted total for one batch.

    Args:
        x: the batch; target_out, inputs: the target model's output and each target's input on it.
        noise: ``n_mask_samples`` draws of ``{target: r ~ U(0, 1) (..., C)}``.
    """
    pre = spd.pre_importance(inputs)
    g_mask = {n: lower_leaky_hard_sigmoid(v, cfg.leaky_slope) for n, v in pre.items()}
    losses: dict[str, Tensor] = {}
    losses["faithfulness"] = faithfulness(model, spd.owners, lambda t: spd.component(t).weight())
    stoch, layerwise = x.new_zeros(()).float(), x.new_zeros(()).float()
    for r in noise:
        masks = {n: g + (1 - g) * r[n] for n, g in g_mask.items()}
        if cfg.stochastic_recon_coeff:
            stoch = stoch + output_loss(run_maps(model, spd.maps(masks), x), target_out, cfg.output_loss)
        if cfg.layerwise_recon_coeff:
            for t in spd.targets:
                out = run_maps(model, spd.maps(masks, only=[t]), x)
                layerwise = layerwise + output_loss(out, target_out, cfg.output_loss) / len(spd.targets)
    losses["stochastic_recon"] = stoch / len(noise)
    losses["layerwise_recon"] = layerwise / len(noise)
    g_upper = [upper_leaky_hard_sigmoid(v, cfg.leaky_slope) for v in pre.values()]
    losses["importance_minimality"] = sum((g + 1e-12).pow(cfg.p).sum(-1).mean() for g in g_upper)
    return with_total(losses, cfg)


class SPDMethod:
    """SPD as a :class:`~paramlens.decompose.fit.Method`, the pieces the shared training loop calls: the module is an
    :class:`SPDModel` (rank-one subcomponents and their gates), the noise ``n_mask_samples`` uniform draws per
    subcomponent and input, the importances the gates' hard-sigmoid outputs."""

    name = "spd"
    config = SPDConfig

    @staticmethod
    def build_empty(targets: Sequence[Target], cfg: SPDConfig) -> SPDModel:
        return SPDModel(targets, cfg.C, cfg.gate_hidden, cfg.compiles(), cfg.tied)

    @staticmethod
    def build(model: nn.Module, targets: Sequence[Target], cfg: SPDConfig) -> SPDModel:
        spd = SPDMethod.build_empty(targets, cfg)
        spd.init_from(model)
        spd.warm_up(model, cfg.faithfulness_warmup_steps, cfg.faithfulness_warmup_lr,
                    cfg.faithfulness_warmup_weight_decay)
        return spd

    losses = staticmethod(spd_losses)

    @staticmethod
    def draw_noise(cfg: SPDConfig, targets: Sequence[Target], inputs: dict[str, Tensor], target_out: Tensor,
                   generator: torch.Generator, rows: slice) -> list[dict[str, Tensor]]:
        """``n_mask_samples`` draws of ``{target: r ~ U(0, 1) (..., C)}``, drawn for the global batch (every
        process draws the same) and cut to this process's ``rows``."""
        noise = []
        for _ in range(cfg.n_mask_samples):
            draw = {}
            for t in targets:
                lead = inputs[t.name].shape[: -1 if t.kind != "embedding" else None]
                draw[t.name] = torch.rand((cfg.batch_size, *lead[1:], cfg.C), generator=generator)[rows]
            noise.append(draw)
        return noise

    @staticmethod
    def importance(spd: SPDModel, model: nn.Module, x: Tensor, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return spd.importance(inputs)

    @staticmethod
    def outputs_along(spd: SPDModel, target: Target, directions: Tensor) -> Tensor:
        """What each subcomponent writes for each unit input direction, ``(n, C, d_out)``."""
        comp = spd.component(target)
        return (directions @ comp.V.detach()).unsqueeze(-1) * comp.U.detach().unsqueeze(0)

    @staticmethod
    def read_directions(spd: SPDModel, target: Target) -> Tensor:
        """``(d_in, C)``: the direction each subcomponent reads, ``V``."""
        return spd.component(target).V.detach()
