"""Stochastic Parameter Decomposition (Bushnaq, Braun, Sharkey 2025).

Each target matrix ``W`` is written as ``C`` rank-one subcomponents ``U_c V_c^T``. An importance function
(by default one tiny MLP per subcomponent) turns the component activations ``V_c . a`` into causal importances
``g_c`` in ``[0, 1]``; the model
run with every subcomponent scaled by a random mask ``m = g + (1 - g) r``, ``r ~ U(0, 1)``, must still
compute the target model's output. Four losses:

- faithfulness: ``sum_layers ||W - sum_c U_c V_c^T||^2 / N`` (N: number of target weights);
- stochastic reconstruction: output of the model with all targets masked vs the target output;
- layerwise stochastic reconstruction: the same with one target masked at a time (mean over targets);
- importance minimality: ``sum_layers sum_c |g_c|^p``, mean over inputs, using the upper-leaky sigmoid.

Outputs are compared by MSE for toy models and by KL for language models. Options of :class:`SPDConfig` add
an annealed minimality exponent, a frequency term, adversarial reconstruction (masks pushed to the worst case by
PGD), a delta component and importance functions that read several subcomponents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from paramlens.core.weights import LinearMap, MapSlots, Target
from paramlens.decompose.adversarial import masks_from, pgd_sources
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
from paramlens.decompose.forward import faithfulness, output_loss, run_maps, with_total
from paramlens.decompose.importance_fns import CIFunction, importance_function
from paramlens.decompose.narrow_products import NarrowProducts
from paramlens.decompose.noise import uniform
from paramlens.decompose.spd_config import SPDConfig


class SPDModel(nn.Module):
    """Subcomponents and the importance function for every target. Holds no copy of the decomposed model (with a
    delta component: a copy of each target's weights, ``components.<target>.target_weight``).

    Args:
        ci_fn, ci_fn_hidden: the importance function (:mod:`paramlens.decompose.importance_fns`) and its width;
            ``gate_hidden`` is the width of the per-subcomponent gates (``ci_fn="mlp_per_subcomponent"``).
        delta: keep a delta component per target (see :meth:`RankOne.delta`).
        persistent_sources: keep adversarial mask sources ``(C,)`` per target across steps (``sources.<target>``).
        compile, compile_losses: compile the importance function and what follows from it into one graph
            (:func:`importance_terms`), or all the losses of a batch, the model's masked forward passes included
            (:func:`batch_losses`).
    """

    def __init__(self, targets: Sequence[Target], C: int, gate_hidden: int = 16, compile: bool = False,
                 tied: dict[str, str] | None = None, *, ci_fn: CIFunction = "mlp_per_subcomponent",
                 ci_fn_hidden: int = 64, delta: bool = False, persistent_sources: bool = False,
                 compile_losses: bool = False):
        super().__init__()
        self.targets = list(targets)
        self.tied = dict(tied or {})
        by_name = {t.name: t for t in self.targets}
        self.owners = tied_owners(self.targets, self.tied)
        self.components = nn.ModuleDict({module_key(t): Subcomponents(t, C, delta) for t in self.owners})
        self.tied_components = {
            module_key(t): TiedSubcomponents(t, self.components[module_key(by_name[self.tied[t.name]])])
            for t in self.targets if t.name in self.tied
        }
        keys = [module_key(t) for t in self.targets]
        if ci_fn == "mlp_per_subcomponent":
            self.gates = nn.ModuleDict({k: Gates(C, gate_hidden) for k in keys})
            self._ci = lambda acts: {k: self.gates[k](a) for k, a in acts.items()}
        else:
            self.ci_fn = importance_function(ci_fn, keys, C, ci_fn_hidden)
            self._ci = self.ci_fn
        terms = partial(importance_terms, self.pre_importance_of)
        self.terms = compiled(terms) if compile and not compile_losses else terms
        losses = partial(batch_losses, self)
        self.losses = compiled(losses) if compile_losses else losses
        self._slots: MapSlots | None = None
        if persistent_sources:
            self.sources = nn.Module()
            for k in keys:
                self.sources.register_buffer(k, torch.rand(C))

    def map_slots(self, model: nn.Module) -> MapSlots:
        """The targets' map slots on ``model``, made once per model (a compiled loss stays valid across calls)."""
        if self._slots is None or self._slots.model is not model:
            self._slots = MapSlots(model, self.targets)
        return self._slots

    def component(self, target: Target) -> RankOne:
        key = module_key(target)
        return self.tied_components[key] if key in self.tied_components else self.components[key]

    @torch.no_grad()
    def init_from(self, model: nn.Module) -> None:
        """Unit-norm random ``V`` columns and ``U`` rows, each ``U_c`` scaled by ``U_c^T W V_c`` so that the
        initial sum already points along ``W``'s action on each read direction; a delta component's copy of ``W``.
        Checks tied targets."""
        check_tied_in(model, self.targets, self.tied)
        for t in self.owners:
            comp = self.components[module_key(t)]
            W = t.matrix(model).detach().float()
            comp.V.copy_(torch.nn.functional.normalize(comp.V, dim=0))
            comp.U.copy_(torch.nn.functional.normalize(comp.U, dim=1))
            scale = torch.einsum("co,oi,ic->c", comp.U, W, comp.V)
            comp.U.mul_(scale[:, None])
            if hasattr(comp, "target_weight"):
                comp.target_weight.copy_(W)

    def warm_up(self, model: nn.Module, steps: int, lr: float, weight_decay: float) -> None:
        """Fit the subcomponents' sums to the target weights (faithfulness loss only) for ``steps`` AdamW
        steps, so training starts from a faithful decomposition; weight decay keeps unneeded parts small."""
        params = list(self.components.parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            opt.zero_grad()
            faithfulness(model, self.owners, lambda t: self.component(t).weight()).backward()
            opt.step()

    def activations(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Component activations ``{target: (..., C)}`` (``x @ V``) from the targets' inputs."""
        return {t.name: self.component(t).inner(inputs[t.name]) for t in self.targets}

    def pre_importance_of(self, acts: dict[str, Tensor]) -> dict[str, Tensor]:
        """Importance-function outputs before the sigmoid, ``{target: (..., C)}``, from the activations."""
        out = self._ci({module_key(t): acts[t.name] for t in self.targets})
        return {t.name: out[module_key(t)] for t in self.targets}

    def pre_importance(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Importance-function outputs before the sigmoid, ``{target: (..., C)}``, from the targets' inputs."""
        return self.pre_importance_of(self.activations(inputs))

    def importance(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Causal importances in ``[0, 1]`` (hard sigmoid), ``{target: (..., C)}``."""
        return {n: hard_sigmoid(g) for n, g in self.pre_importance(inputs).items()}

    def maps(self, masks: dict[str, Tensor | None], only: Sequence[Target] | None = None,
             deltas: dict[str, Tensor] | None = None) -> dict[Target, LinearMap]:
        """``{target: layer map}`` with the subcomponents scaled by ``masks`` ``{target: (..., C) or None}`` (on
        ``only`` these targets) and delta components by ``deltas`` ``{target: (..., 1)}`` (None: at 1)."""
        deltas = deltas or {}
        return {t: self.component(t).masked(masks[t.name], deltas.get(t.name)) for t in (only or self.targets)}

    def persistent_sources(self) -> dict[str, Tensor]:
        """``{target: (C,)}``: the adversarial sources carried across steps."""
        return {t.name: getattr(self.sources, module_key(t)) for t in self.targets}

    @torch.no_grad()
    def keep_sources(self, sources: dict[str, Tensor]) -> None:
        for t in self.targets:
            getattr(self.sources, module_key(t)).copy_(sources[t.name])


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn)`` for one SPD module. The compiled functions of every module share one cache (that of
    ``torch.compile``'s wrapper code), whose size limit grows by 8 for each, so that a process building many modules
    keeps compiling them rather than falling back to eager. Narrow matrix products are computed transposed
    (:mod:`paramlens.decompose.narrow_products`)."""
    torch._dynamo.config.recompile_limit += 8
    return torch.compile(fn, dynamic=False, options={"post_grad_custom_post_pass": NarrowProducts()})


def importance_terms(pre_importance_of: Callable[[dict[str, Tensor]], dict[str, Tensor]], acts: dict[str, Tensor],
                     noise: list[dict[str, Tensor]], slope: float, p: float | Tensor) -> tuple[Any, ...]:
    """Everything SPD derives from the importance function on one batch, in one function (compiled as one graph:
    the elementwise work fuses into a few kernels).

    Args:
        acts: component activations ``{target: (..., C)}``; noise: draws ``{target: r (..., C)}``, one per mask.
        slope: of the leaky sigmoids; p: the importance-minimality exponent (a ``()`` tensor when it is annealed, so
            that a new value does not recompile; a float when constant, so that ``p = 1`` costs no power).
    Returns:
        ``(g, masks, g_upper, minimality)``: lower-leaky importances ``{target: (..., C)}``, the masks ``g + (1 - g)
        r`` (one dict per draw), upper-leaky importances, and ``sum_targets sum_c g_upper^p`` averaged over inputs.
    """
    pre = pre_importance_of(acts)
    g = {n: lower_leaky_hard_sigmoid(v, slope) for n, v in pre.items()}
    upper = {n: upper_leaky_hard_sigmoid(v, slope) for n, v in pre.items()}
    minimality = sum((u + 1e-12).pow(p).sum(-1).mean() for u in upper.values())
    return g, [masks_from(g, r) for r in noise], upper, minimality


DELTA = "delta:"
"""Noise key prefix of a delta component's random mask: ``noise[k][DELTA + target]`` ``(..., 1)``."""


def _recon(spd: SPDModel, slots: MapSlots, x: Tensor, target_out: Tensor, masks: dict[str, Tensor], cfg: SPDConfig,
           only: Sequence[Target] | None = None, r: dict[str, Tensor] | None = None) -> Tensor:
    """The output loss of the model run with ``masks`` on every target (or on ``only`` those), delta components
    scaled by their draws in ``r`` (None or no draws: at 1)."""
    deltas = {n[len(DELTA):]: v for n, v in (r or {}).items() if n.startswith(DELTA)}
    return output_loss(run_maps(slots.model, spd.maps(masks, only, deltas), x, slots), target_out, cfg.output_loss)


def spd_losses(
    spd: SPDModel, model: nn.Module, x: Tensor, target_out: Tensor, inputs: dict[str, Tensor], cfg: SPDConfig,
    noise: list[dict[str, Tensor]], step: int = 0,
) -> dict[str, Tensor]:
    """The SPD losses and their weighted total for one batch at training step ``step`` (:func:`batch_losses`,
    compiled when ``spd`` compiles its losses).

    Args:
        x: the batch; target_out, inputs: the target model's output and each target's input on it.
        noise: ``n_mask_samples`` draws of ``{target: r ~ U(0, 1) (..., C)}`` (with delta components also
            ``{DELTA + target: (..., 1)}``, their masks), then with fresh adversarial sources one more, the start of
            their search.
    """
    p = torch.tensor(cfg.exponent(step)) if cfg.p_final is not None else cfg.p  # a constant p folds into the graph
    with spd.map_slots(model).installed() as slots:
        return spd.losses(slots, x, target_out, inputs, cfg, noise, p)


def batch_losses(spd: SPDModel, slots: MapSlots, x: Tensor, target_out: Tensor, inputs: dict[str, Tensor],
                 cfg: SPDConfig, noise: list[dict[str, Tensor]], p: float | Tensor) -> dict[str, Tensor]:
    """:func:`spd_losses` with the model's target maps in installed ``slots`` and the minimality exponent ``p``."""
    g_mask, masks, g_upper, minimality = spd.terms(spd.activations(inputs), noise[: cfg.n_mask_samples],
                                                   cfg.leaky_slope, p)
    losses: dict[str, Tensor] = {}
    losses["faithfulness"] = faithfulness(slots.model, spd.owners, lambda t: spd.component(t).weight())
    stoch, layerwise = x.new_zeros(()).float(), x.new_zeros(()).float()
    for m, r in zip(masks, noise):
        if cfg.stochastic_recon_coeff:
            stoch = stoch + _recon(spd, slots, x, target_out, m, cfg, r=r)
        if cfg.layerwise_recon_coeff:
            for t in spd.targets:
                layerwise = layerwise + _recon(spd, slots, x, target_out, m, cfg, only=[t], r=r) / len(spd.targets)
    losses["stochastic_recon"] = stoch / cfg.n_mask_samples
    losses["layerwise_recon"] = layerwise / cfg.n_mask_samples
    losses["importance_minimality"] = minimality
    if cfg.frequency_coeff:
        losses["frequency"] = sum(g.reshape(-1, g.shape[-1]).mean(0).pow(2).sum() for g in g_upper.values())
    if cfg.adversarial_recon_coeff:
        losses["adversarial_recon"] = _adversarial(spd, slots, x, target_out, g_mask, cfg, noise)
    return with_total(losses, cfg)


def _adversarial(spd: SPDModel, slots: MapSlots, x: Tensor, target_out: Tensor, g_mask: dict[str, Tensor],
                 cfg: SPDConfig, noise: list[dict[str, Tensor]]) -> Tensor:
    """The output loss under adversarial masks (:mod:`paramlens.decompose.adversarial`); persistent sources are
    stored back into ``spd``."""
    start = spd.persistent_sources() if cfg.pgd_persistent else noise[cfg.n_mask_samples]
    sources = pgd_sources(lambda m: _recon(spd, slots, x, target_out, m, cfg), g_mask, start, cfg.pgd_steps,
                          cfg.pgd_step_size, shared=cfg.pgd_persistent)
    if cfg.pgd_persistent:
        spd.keep_sources(sources)
    return _recon(spd, slots, x, target_out, masks_from(g_mask, sources), cfg)


class SPDMethod:
    """SPD as a :class:`~paramlens.decompose.fit.Method`, the pieces the shared training loop calls: the module is an
    :class:`SPDModel` (rank-one subcomponents and their gates), the noise ``n_mask_samples`` uniform draws per
    subcomponent and input, the importances the gates' hard-sigmoid outputs."""

    name = "spd"
    config = SPDConfig

    @staticmethod
    def build_empty(targets: Sequence[Target], cfg: SPDConfig) -> SPDModel:
        return SPDModel(targets, cfg.C, cfg.gate_hidden, cfg.compiles(), cfg.tied, ci_fn=cfg.ci_fn,
                        ci_fn_hidden=cfg.ci_fn_hidden, delta=cfg.delta_component,
                        persistent_sources=bool(cfg.adversarial_recon_coeff) and cfg.pgd_persistent,
                        compile_losses=cfg.compiles_losses())

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
        """``n_mask_samples`` draws of ``{target: r ~ U(0, 1) (..., C)}`` (with delta components also ``{DELTA +
        target: (..., 1)}``; and one more draw as the start of fresh adversarial sources), drawn for the global batch
        (every process draws the same; :func:`~paramlens.decompose.noise.uniform`) and cut to this process's ``rows``."""
        noise = []
        fresh_sources = bool(cfg.adversarial_recon_coeff) and not cfg.pgd_persistent
        for _ in range(cfg.n_mask_samples + fresh_sources):
            draw = {}
            for t in targets:
                lead = inputs[t.name].shape[: -1 if t.kind != "embedding" else None]
                shape = (cfg.batch_size, *lead[1:])
                draw[t.name] = uniform((*shape, cfg.C), generator)[rows]
                if cfg.delta_component:
                    draw[DELTA + t.name] = uniform((*shape, 1), generator)[rows]
            noise.append(draw)
        return noise

    @staticmethod
    def importance(spd: SPDModel, model: nn.Module, x: Tensor, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return spd.importance(inputs)

    @staticmethod
    def component_matrix(spd: SPDModel, target: Target, index: int) -> Tensor:
        comp = spd.component(target)
        return torch.outer(comp.U[index], comp.V[:, index]).detach()

    @staticmethod
    def outputs_along(spd: SPDModel, target: Target, directions: Tensor) -> Tensor:
        """What each subcomponent writes for each unit input direction, ``(n, C, d_out)``."""
        comp = spd.component(target)
        return (directions @ comp.V.detach()).unsqueeze(-1) * comp.U.detach().unsqueeze(0)

    @staticmethod
    def read_directions(spd: SPDModel, target: Target) -> Tensor:
        """``(d_in, C)``: the direction each subcomponent reads, ``V``."""
        return spd.component(target).V.detach()
