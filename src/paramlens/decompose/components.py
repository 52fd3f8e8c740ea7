"""Rank-one subcomponents of target weight matrices, and the causal-importance gates that score them.

For a target with matrix ``W`` ``(d_out, d_in)`` and ``C`` subcomponents, ``V`` is ``(d_in, C)`` and
``U`` is ``(C, d_out)``: subcomponent ``c`` is the rank-one matrix ``U[c]^T V[:, c]^T`` and their sum is
``(V @ U)^T``. With a mask ``m`` ``(..., C)`` the layer computes ``((x @ V) * m) @ U + bias``, which costs
``O(C (d_in + d_out))`` per input, never a per-input weight copy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import einsum
from torch import Tensor, nn

from paramlens.core.weights import LinearMap, Target
from paramlens.decompose import gate_kernel
from paramlens.errors import ParamLensError


def module_key(target: Target) -> str:
    """A target name usable as an ``nn.ModuleDict`` key (no dots)."""
    return target.name.replace(".", "-")


class RankOne(nn.Module):
    """Shared maths of rank-one subcomponents; subclasses provide ``V`` ``(d_in, C)`` and ``U`` ``(C, d_out)``."""

    target: Target
    C: int
    V: Tensor
    U: Tensor

    def weight(self) -> Tensor:
        """The sum of all subcomponents, ``(d_out, d_in)``."""
        return (self.V @ self.U).T

    def matrices(self) -> Tensor:
        """Every subcomponent as a matrix, ``(C, d_out, d_in)`` (memory ``C x d_out x d_in``: for analysis)."""
        return einsum(self.U, self.V, "c o, i c -> c o i")

    def inner(self, x: Tensor) -> Tensor:
        """Component activations ``x @ V``, ``(..., C)``, for the target module's input ``x``."""
        return self.target.read_in(x, self.V)

    def delta(self) -> Tensor | None:
        """The delta component ``W - sum_c U_c V_c^T`` ``(d_out, d_in)`` when the target's weights ``W`` are kept
        (``target_weight``, see :class:`Subcomponents`); else None."""
        W = getattr(self, "target_weight", None)
        return None if W is None else W - self.weight()

    def masked(self, mask: Tensor | None, delta_mask: Tensor | None = None) -> LinearMap:
        """The layer map with subcomponent ``c`` scaled by ``mask[..., c]`` (None: all at 1), plus the delta
        component when there is one, scaled by ``delta_mask`` ``(..., 1)`` (None: at 1)."""
        delta = self.delta()

        def apply(x: Tensor) -> Tensor:
            acts = self.inner(x)
            out = (acts if mask is None else acts * mask) @ self.U
            if delta is None:
                return out
            rest = self.target.read_in(x, delta.T)
            return out + (rest if delta_mask is None else rest * delta_mask)

        return apply


class Subcomponents(RankOne):
    """``C`` rank-one subcomponents of one target.

    Attributes:
        V: ``(d_in, C)`` read directions.
        U: ``(C, d_out)`` write directions.
        target_weight: ``(d_out, d_in)`` buffer, the target's weights, only with a delta component
            (``delta=True``; filled by the caller).
    """

    def __init__(self, target: Target, C: int, delta: bool = False):
        super().__init__()
        d_out, d_in = target.shape
        self.target, self.C = target, C
        self.V = nn.Parameter(torch.randn(d_in, C) / math.sqrt(d_in))
        self.U = nn.Parameter(torch.randn(C, d_out) / math.sqrt(C))
        if delta:
            self.register_buffer("target_weight", torch.zeros(d_out, d_in))


def tied_owners(targets: Sequence[Target], tied: dict[str, str]) -> list[Target]:
    """The targets that own parameters, after checking ``tied`` (``{target: owner}``, target's matrix is the
    owner's transpose): both must be targets, owners untied, shapes transposed."""
    by_name = {t.name: t for t in targets}
    for name, owner in tied.items():
        if name not in by_name or owner not in by_name or owner in tied:
            raise ParamLensError(f"tied target '{name}' -> '{owner}': both must be targets, and the owner untied")
        if by_name[name].shape != by_name[owner].shape[::-1]:
            raise ParamLensError(f"tied target '{name}' {by_name[name].shape} is not shaped like the transpose "
                                 f"of '{owner}' {by_name[owner].shape}")
    return [t for t in targets if t.name not in tied]


def check_tied_in(model: nn.Module, targets: Sequence[Target], tied: dict[str, str]) -> None:
    """Raise unless every tied target's matrix is its owner's transpose in ``model``."""
    by_name = {t.name: t for t in targets}
    for name, owner in tied.items():
        if not torch.allclose(by_name[name].matrix(model), by_name[owner].matrix(model).T, atol=1e-6, rtol=1e-4):
            raise ParamLensError(f"tied target '{name}' is not the transpose of '{owner}' in this model")


class TiedSubcomponents(RankOne):
    """The subcomponents of a target whose matrix is another target's transpose (tied weights, such as
    the ``W`` and ``W^T`` of TMS): the owner's ``C`` rank-one pieces, transposed. No parameters of its own."""

    def __init__(self, target: Target, owner: Subcomponents):
        super().__init__()
        self.target, self.C = target, owner.C
        object.__setattr__(self, "owner", owner)  # not a submodule: its parameters belong to the owner

    @property
    def V(self) -> Tensor:  # type: ignore[override]
        return self.owner.U.T

    @property
    def U(self) -> Tensor:  # type: ignore[override]
        return self.owner.V.T

    @property
    def target_weight(self) -> Tensor | None:
        W = getattr(self.owner, "target_weight", None)
        return None if W is None else W.T


class Gates(nn.Module):
    """One tiny MLP per subcomponent (``1 -> hidden -> 1``, exact GELU), all ``C`` evaluated together.

    Input: component activations ``(..., C)``; output: pre-sigmoid importances ``(..., C)``. Parameters ``w1``,
    ``b1``, ``w2`` ``(C, hidden)`` and ``b2`` ``(C,)``. On CPU in float32 the forward and backward passes run in a
    fused compiled kernel (:mod:`paramlens.decompose.gate_kernel`, about 3x faster than inductor's code for them, no
    ``(..., C, hidden)`` tensors) when a C compiler is available; otherwise in one einsum.
    """

    def __init__(self, C: int, hidden: int = 16):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(C, hidden) * math.sqrt(2.0))
        self.b1 = nn.Parameter(torch.zeros(C, hidden))
        self.w2 = nn.Parameter(torch.randn(C, hidden) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(C))

    def forward(self, inner: Tensor) -> Tensor:
        if gate_kernel.usable(inner, self.w1):
            return gate_kernel.gates(inner, self.w1, self.b1, self.w2, self.b2)
        h = F.gelu(inner.unsqueeze(-1) * self.w1 + self.b1)  # (..., C, hidden)
        return einsum(h, self.w2, "... c h, c h -> ... c") + self.b2


def lower_leaky_hard_sigmoid(x: Tensor, slope: float = 0.01) -> Tensor:
    """``clamp(x, 0, 1)`` but with slope ``slope`` below 0, so closed gates still get gradient (masks)."""
    return torch.where(x < 0, slope * x, x.clamp(max=1.0))


def upper_leaky_hard_sigmoid(x: Tensor, slope: float = 0.01) -> Tensor:
    """``clamp(x, 0, 1)`` but with slope ``slope`` above 1 (importance minimality)."""
    return torch.where(x > 1, 1.0 + slope * (x - 1.0), x.clamp(min=0.0))


def hard_sigmoid(x: Tensor) -> Tensor:
    return x.clamp(0.0, 1.0)
