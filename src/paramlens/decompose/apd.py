"""Attribution-based Parameter Decomposition (Braun, Bushnaq, Heimersheim, Mendel, Sharkey 2025).

``C`` parameter components, each a vector in the space of all target weights: in target ``t`` component
``c`` is ``P_c = (A_c B_c)^T`` with ``A_c`` ``(d_in, m)``, ``B_c`` ``(m, d_out)`` (rank ``m``). On each batch:

1. attributions: ``s_bc = sum_o (sum_t <d out_o / d h_t, a_t P_c^T>)^2``, the squared first-order effect
   of component ``c`` on each output ``o`` (``h_t``: target ``t``'s output, ``a_t``: its input);
2. batch top-k: the ``topk * batch`` largest ``s_bc`` over the batch are active (under data parallelism, over
   the global batch); a running mean of the smallest active score becomes the threshold that decides which
   components are active on inputs outside training (one input at a time, a handful of probes);
3. losses: faithfulness ``||W - sum_c P_c||^2 / N``; top-k reconstruction (the model run with only the
   active components vs the target output); Schatten-p simplicity ``sum (|A_c[:, k]|^2 |B_c[k]|^2)^(p/2) / N``
   over active components, mean over the batch (``N``: number of target weights, as in faithfulness, so a
   coefficient means the same on models of any size).

A target whose matrix is another's transpose (``tied``, e.g. TMS's ``W^T``) uses the owner's components
transposed: ``A' = B^T``, ``B' = A^T``.

With more than ``max_exact_outputs`` outputs (a language model's vocabulary), ``sum_o (.)^2`` is estimated
with ``n_probes`` random sign vectors (Hutchinson): ``E[(r . J)^2] = |J|^2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.distributed as dist
from einops import einsum
from pydantic import Field
from torch import Tensor, nn

from paramlens.core.fields import BatchSize, LearningRate, LrSchedule, Seed, Steps, WarmupFraction
from paramlens.core.weights import LinearMap, Target
from paramlens.decompose.components import check_tied_in, module_key, tied_owners
from paramlens.decompose.forward import Coefficient, faithfulness, logits_of, output_loss, run_maps, with_total
from paramlens.decompose.schedule import Schedule


class APDConfig(Schedule):
    """APD settings; the defaults are the paper's for TMS 5-2 (set ``C``, ``topk`` and the coefficients for your
    model; the paper's TMS 40-10: ``C=40, topk=2, topk_recon_coeff=10, schatten_p=0.9, schatten_coeff=15,
    lr=1e-3, lr_schedule="cosine"``)."""

    method: Literal["apd"] = "apd"
    C: int = Field(5, ge=1, description="parameter components (shared by all targets)")
    rank: int = Field(3, ge=1, description="rank m of each component in each target")
    topk: float = Field(0.211, gt=0, description="mean number of active components per input (batch top-k)")
    steps: Steps = 20_000
    batch_size: BatchSize = 2048
    lr: LearningRate = 3e-2
    lr_schedule: LrSchedule = "constant"
    lr_warmup_frac: WarmupFraction = 0.05
    faithfulness_coeff: Coefficient = 1.0
    topk_recon_coeff: Coefficient = 1.0
    schatten_coeff: Coefficient = 0.7
    schatten_p: float = Field(1.0, gt=0)
    max_exact_outputs: int = Field(64, ge=1)
    n_probes: int = Field(8, ge=1)
    output_loss: Literal["mse", "kl"] = "mse"
    tied: dict[str, str] = Field(default_factory=dict, description="{target: owner}: target's matrix is owner's "
                                 "transpose (tied weights); it uses the owner's components, transposed")
    seed: Seed = 0


class APDModel(nn.Module):
    """``A`` ``(C, d_in, m)`` and ``B`` ``(C, m, d_out)`` for every target."""

    THRESHOLD_MOMENTUM = 0.01

    def __init__(self, targets: Sequence[Target], cfg: APDConfig):
        super().__init__()
        self.targets, self.cfg = list(targets), cfg
        # attribution score above which a component is active; 0 until the first training step
        self.register_buffer("threshold", torch.zeros(()))
        self.tied = {name: module_key(t) for t in targets for name, owner in cfg.tied.items() if t.name == owner}
        C, rank = cfg.C, cfg.rank
        self.A = nn.ParameterDict()
        self.B = nn.ParameterDict()
        for t in tied_owners(self.targets, cfg.tied):
            d_out, d_in = t.shape
            self.A[module_key(t)] = nn.Parameter(nn.init.xavier_normal_(torch.empty(C, d_in, rank)))
            self.B[module_key(t)] = nn.Parameter(nn.init.xavier_normal_(torch.empty(C, rank, d_out)))

    def factors(self, t: Target) -> tuple[Tensor, Tensor]:
        """``A`` ``(C, d_in, m)`` and ``B`` ``(C, m, d_out)`` of target ``t`` (a tied target: its owner's, swapped
        and transposed)."""
        if t.name in self.tied:
            A, B = self.A[self.tied[t.name]], self.B[self.tied[t.name]]
            return B.transpose(1, 2), A.transpose(1, 2)
        return self.A[module_key(t)], self.B[module_key(t)]

    def weight(self, t: Target) -> Tensor:
        """Sum of the components in target ``t``, ``(d_out, d_in)``."""
        return einsum(*self.factors(t), "c i m, c m o -> o i")

    def _inner(self, t: Target, x: Tensor) -> Tensor:
        """``x A_c`` for every component, ``(..., C, m)``."""
        A = self.factors(t)[0]
        return t.read_in(x, A.permute(1, 0, 2).flatten(1)).unflatten(-1, (A.shape[0], A.shape[2]))

    def component_acts(self, t: Target, x: Tensor) -> Tensor:
        """What each component writes, ``(..., C, d_out)``, for the module input ``x``."""
        return einsum(self._inner(t, x), self.factors(t)[1], "... c m, c m o -> ... c o")

    def masked(self, t: Target, mask: Tensor | None) -> LinearMap:
        """The layer map with component ``c`` scaled by ``mask[..., c]`` (None: all at 1)."""

        def fn(x: Tensor) -> Tensor:
            inner = self._inner(t, x)
            if mask is not None:
                inner = inner * mask.unsqueeze(-1)
            return einsum(inner, self.factors(t)[1], "... c m, c m o -> ... o")

        return fn

    def maps(self, masks: dict[str, Tensor | None]) -> dict[Target, LinearMap]:
        return {t: self.masked(t, masks[t.name]) for t in self.targets}

    @property
    def calibrated(self) -> bool:
        """Whether a training step has set the threshold."""
        return bool(self.threshold != 0)

    @torch.no_grad()
    def update_threshold(self, kth_score: Tensor) -> None:
        """Fold the smallest active score of a training batch into the running threshold."""
        new = torch.lerp(self.threshold, kth_score, self.THRESHOLD_MOMENTUM) if self.calibrated else kth_score
        self.threshold.copy_(new)

    def active(self, scores: Tensor) -> Tensor:
        """0/1 mask ``(..., C)`` of the components active on each input: score at or above the running threshold
        (batch top-k over ``scores`` while no training step has set one, as at random initialisation)."""
        if not self.calibrated:
            return batch_topk(scores, self.cfg.topk)[0]
        return (scores >= self.threshold).float()

    def schatten(self, mask: Tensor, p: float) -> Tensor:
        """``sum_t sum_{c,k} mask_c (|A_c[:, k]|^2 |B_c[k]|^2)^(p/2) / N``, mean over inputs; mask ``(..., C)``."""
        total = mask.new_zeros(())
        for t in self.targets:
            A, B = self.factors(t)
            per_c = (A.pow(2).sum(1) * B.pow(2).sum(2) + 1e-16).pow(p / 2).sum(-1)  # (C,)
            total = total + (mask * per_c).sum(-1).mean()
        return total / sum(t.shape[0] * t.shape[1] for t in self.targets)


def output_probes(n_out: int, cfg: APDConfig, generator: torch.Generator) -> Tensor:
    """``(n, n_out)`` output directions whose squared attributions sum to ``sum_o``: the unit vectors, or with more
    than ``max_exact_outputs`` outputs ``n_probes`` random sign vectors scaled by ``1 / sqrt(n_probes)``."""
    if n_out <= cfg.max_exact_outputs:
        return torch.eye(n_out, device=generator.device)
    signs = torch.randint(0, 2, (cfg.n_probes, n_out), generator=generator, device=generator.device).float() * 2 - 1
    return signs / cfg.n_probes**0.5


def attributions(dec: APDModel, model: nn.Module, x: Tensor, inputs: dict[str, Tensor],
                 probes: Tensor | None = None) -> Tensor:
    """``(..., C)`` attribution scores ``sum_o (sum_t <d out_o / d h_t, a_t P_c^T>)^2`` (see module doc).

    ``probes``: from :func:`output_probes`; None draws them with the config's seed (evaluation)."""
    leaves: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: tuple, out: Tensor, name: str) -> Tensor:
        leaves[name] = torch.zeros_like(out, requires_grad=True)
        return out + leaves[name]

    handles = [model.get_submodule(t.name).register_forward_hook(lambda m, a, o, _n=t.name: hook(m, a, o, _n))
               for t in dec.targets]
    try:
        with torch.enable_grad():
            out = logits_of(model(x))
    finally:
        for h in handles:
            h.remove()
    names = [t.name for t in dec.targets]
    acts = {t.name: dec.component_acts(t, inputs[t.name]).detach() for t in dec.targets}
    if probes is None:
        probes = output_probes(out.shape[-1], dec.cfg, torch.Generator().manual_seed(dec.cfg.seed)).to(out.device)
    score = None
    for k, probe in enumerate(probes):
        with torch.enable_grad():  # the caller may run under no_grad
            grads = torch.autograd.grad((out * probe).sum(), [leaves[n] for n in names],
                                        retain_graph=k + 1 < len(probes))
        attr = sum(einsum(g, acts[n], "... o, ... c o -> ... c") for g, n in zip(grads, names))
        score = attr.pow(2) if score is None else score + attr.pow(2)
    return score


def batch_topk(scores: Tensor, topk: float) -> tuple[Tensor, Tensor]:
    """``(mask, kth)``: 0/1 mask of the ``round(topk * n_inputs)`` largest scores over the whole batch, and the
    smallest of them; ``scores`` ``(..., C)``.

    Under ``torch.distributed`` the scores of every process are gathered first, so the chosen set is that of the
    global batch (as in one process); each process gets the mask of its own inputs.
    """
    local = scores.detach()
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world > 1:
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.contiguous())
        local_rank, everything = dist.get_rank(), torch.cat(parts)
    else:
        local_rank, everything = 0, local
    flat = everything.reshape(-1)
    n_inputs = flat.numel() // scores.shape[-1]
    k = max(1, min(flat.numel(), round(topk * n_inputs)))
    top = flat.topk(k)
    mask = torch.zeros_like(flat)
    mask[top.indices] = 1.0
    mask = mask.view_as(everything)[local_rank * len(local) : (local_rank + 1) * len(local)]
    return mask, top.values[-1]


def apd_losses(dec: APDModel, model: nn.Module, x: Tensor, target_out: Tensor, inputs: dict[str, Tensor],
               cfg: APDConfig, probes: Tensor, step: int = 0) -> dict[str, Tensor]:
    """The three APD losses and their weighted total for one batch (see the module doc); folds the batch's smallest
    active attribution into ``dec``'s running threshold. ``probes``: from :func:`output_probes`; APD's losses do not
    change with the ``step``."""
    mask, kth = batch_topk(attributions(dec, model, x, inputs, probes), cfg.topk)
    dec.update_threshold(kth)
    losses = {
        "faithfulness": faithfulness(model, dec.targets, dec.weight),
        "topk_recon": output_loss(run_maps(model, dec.maps({t.name: mask for t in dec.targets}), x), target_out,
                                  cfg.output_loss),
        "schatten": dec.schatten(mask, cfg.schatten_p),
    }
    return with_total(losses, cfg)


class APDMethod:
    """APD as a :class:`~paramlens.decompose.fit.Method`, the pieces the shared training loop calls: the module is an
    :class:`APDModel` (rank-``m`` parameter components that span the targets), the noise the step's output probes,
    the importances the components active by the running attribution threshold (0/1, the same for every target)."""

    name = "apd"
    config = APDConfig

    @staticmethod
    def build_empty(targets: Sequence[Target], cfg: APDConfig) -> APDModel:
        return APDModel(targets, cfg)

    @staticmethod
    def build(model: nn.Module, targets: Sequence[Target], cfg: APDConfig) -> APDModel:
        dec = APDMethod.build_empty(targets, cfg)
        check_tied_in(model, targets, cfg.tied)
        return dec

    losses = staticmethod(apd_losses)

    @staticmethod
    def draw_noise(cfg: APDConfig, targets: Sequence[Target], inputs: dict[str, Tensor], target_out: Tensor,
                   generator: torch.Generator, rows: slice) -> Tensor:
        """The step's output probes (:func:`output_probes`); every process draws the same."""
        return output_probes(target_out.shape[-1], cfg, generator)

    @staticmethod
    def importance(dec: APDModel, model: nn.Module, x: Tensor, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Active components by the running threshold on the attributions (the same mask for every target:
        components span targets)."""
        mask = dec.active(attributions(dec, model, x, inputs))
        return {t.name: mask for t in dec.targets}

    @staticmethod
    def component_matrix(dec: APDModel, target: Target, index: int) -> Tensor:
        A, B = dec.factors(target)
        return (A[index] @ B[index]).T.detach()

    @staticmethod
    def outputs_along(dec: APDModel, target: Target, directions: Tensor) -> Tensor:
        """What each component writes for each unit input direction, ``(n, C, d_out)``."""
        A, B = (f.detach() for f in dec.factors(target))
        return einsum(directions, A, B, "n i, c i m, c m o -> n c o")

    @staticmethod
    def read_directions(dec: APDModel, target: Target) -> Tensor:
        """``(d_in, C)``: each component's main input direction (top right-singular vector of ``P_c``)."""
        P = einsum(*(f.detach() for f in dec.factors(target)), "c i m, c m o -> c o i")
        return torch.linalg.svd(P, full_matrices=False).Vh[:, 0, :].T
