"""The local interaction basis (LIB) of an MLP, with PCA and the neuron basis behind the same interface.

The network is a chain of segments ``f_{l+1} = act_l(W_l f_l + b_l)`` (``nn.Linear`` plus an elementwise
activation). Activations get a constant 1 appended (the bias folded in), so every layer lives in
``d_l + 1`` dimensions. For each layer, from the output backwards (float64 throughout):

1. ``G = E[f f^T]`` (optionally centred) is eigendecomposed, ``G = U D U^T``; directions with
   ``D < tol * max D`` are dropped (the null space); ``R = U D^{-1/2}`` whitens, ``P = U D^{1/2}`` maps back.
2. ``M = E[J^T J]``, with ``J`` the Jacobian of the next layer's basis coordinates with respect to the
   whitened coordinates of this layer. For a segment ``act(W f)`` with an elementwise activation,
   ``J = C'^T diag(act') W P`` per row, so ``M`` needs only the second moment of the activation slopes (one
   vector-Jacobian product for the whole batch) and a few matrix products: no per-row Jacobians and no
   backward pass per output.
3. ``M = V L V^T`` (descending); the interaction basis is ``C = R V L^{1/2}`` (coordinates ``f C``); the
   directions in activation space are the columns of ``P V``.

The output layer's basis is the network's outputs themselves (the constant left out), so importance is
measured in output units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from paramlens.errors import ParamLensError

Kind = Literal["lib", "pca", "neuron"]


@dataclass
class Segment:
    """``f -> act(f W^T + b)``; ``act`` is elementwise (``torch.relu``, identity, ...)."""

    linear: nn.Linear
    act: Callable[[Tensor], Tensor]

    def weight_aug(self) -> Tensor:
        """``(d_out, d_in + 1)`` float64: the weight with the bias as the last column."""
        lin = self.linear
        b = lin.bias if lin.bias is not None else torch.zeros(lin.out_features)
        return torch.cat([lin.weight, b[:, None]], dim=1).detach().double()

    def __call__(self, f_aug: Tensor) -> Tensor:
        """Augmented input ``(..., d_in + 1)`` -> augmented output ``(..., d_out + 1)``."""
        out = self.act(f_aug @ self.weight_aug().T)
        return torch.cat([out, torch.ones_like(out[..., :1])], dim=-1)


def identity(x: Tensor) -> Tensor:
    return x


def segments_of(modules: list[nn.Module]) -> list[Segment]:
    """Segments from a flat list of ``nn.Linear`` modules each optionally followed by ``nn.ReLU`` /
    ``nn.Identity`` (e.g. the children of an ``nn.Sequential``)."""
    out: list[Segment] = []
    for m in modules:
        if isinstance(m, nn.Linear):
            out.append(Segment(m, identity))
        elif isinstance(m, nn.ReLU) and out and out[-1].act is identity:
            out[-1] = Segment(out[-1].linear, torch.relu)
        elif not isinstance(m, nn.Identity):
            raise ParamLensError(f"{type(m).__name__}: only Linear layers followed by ReLU are supported here")
    if not out:
        raise ParamLensError("no Linear layers found")
    return out


def augment(h: Tensor) -> Tensor:
    """``(..., d)`` -> ``(..., d + 1)`` float64 with the constant 1 last (the bias folded in)."""
    return torch.cat([h.double(), torch.ones(*h.shape[:-1], 1, dtype=torch.float64)], dim=-1)


def augmented_activations(segments: list[Segment], x: Tensor) -> list[Tensor]:
    """``[f_0, ..., f_L]``, each ``(N, d_l + 1)`` float64 with the constant 1 last."""
    f = augment(x)
    out = [f]
    for s in segments:
        f = s(f)
        out.append(f)
    return out


@dataclass
class LayerBasis:
    """One layer's basis of the augmented activation space ``(d + 1)``.

    ``dual`` ``(d + 1, k)``: unit-scale coordinates ``y = (f - offset) @ dual``; ``vectors`` ``(d + 1, k)``: the
    directions, ``f = offset + y @ vectors.T`` on the data's span; ``importance`` ``(k,)`` descending (LIB:
    eigenvalues of ``M``; PCA: of ``G``; neurons: mean square); ``scaled``: the basis coordinates are
    ``y * sqrt(importance)`` (LIB, ``C = R V L^{1/2}``) rather than ``y``; ``gram_eigenvalues``: all eigenvalues
    of ``G``, descending; ``offset`` ``(d + 1,)``: the mean activation of a centred basis (``None``: not centred).
    Use :meth:`coordinates` and :meth:`rebuild` rather than ``dual`` and ``vectors``, so the offset is applied.
    """

    dual: Tensor
    vectors: Tensor
    importance: Tensor
    scaled: bool
    gram_eigenvalues: Tensor
    offset: Tensor | None = None

    @property
    def size(self) -> int:
        return self.dual.shape[1]

    @property
    def coords(self) -> Tensor:
        """``(d + 1, k)``: the basis ``C``; coordinates are ``(f - offset) @ C``."""
        return self.dual * self.importance.sqrt() if self.scaled else self.dual

    def coordinates(self, f: Tensor, n: int | None = None) -> Tensor:
        """Unit-scale coordinates ``(..., n)`` (all ``k`` by default) of augmented activations ``f`` ``(..., d + 1)``."""
        g = f if self.offset is None else f - self.offset
        return g @ self.dual[:, :n]

    def rebuild(self, y: Tensor) -> Tensor:
        """Augmented activations ``(..., d + 1)`` from the first ``y.shape[-1]`` coordinates ``y``."""
        f = y @ self.vectors[:, : y.shape[-1]].T
        return f if self.offset is None else f + self.offset


def _gram(f: Tensor, centred: bool) -> Tensor:
    g = f - f.mean(0) if centred else f
    return g.T @ g / len(f)


def whiten_gram(gram: Tensor, tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(R, P, all eigenvalues descending)`` of a Gram matrix: ``R = U D^{-1/2}`` whitens, ``P = U D^{1/2}``
    maps back; directions with ``D < tol * max D`` (the null space) are dropped."""
    evals, evecs = torch.linalg.eigh(gram)
    keep = evals > tol * evals.max().clamp_min(1e-300)
    u, d = evecs[:, keep], evals[keep]
    return u / d.sqrt(), u * d.sqrt(), evals.flip(0)


def activation_slopes(seg: Segment, z: Tensor) -> Tensor:
    """``act'(z)`` elementwise ``(N, d_out)``: one vector-Jacobian product of ``sum(act(z))``."""
    z = z.detach().requires_grad_(True)
    (slopes,) = torch.autograd.grad(seg.act(z).sum(), z)
    return slopes.detach()


def jacobian_second_moment(seg: Segment, p: Tensor, c_next: Tensor, f: Tensor) -> Tensor:
    """``E[J^T J]`` ``(k, k)`` of ``y -> seg(y P^T) C_next`` over the rows of ``f`` ``(N, d + 1)``.

    Per row ``J = C'^T diag(a') W P`` (``C'``: ``C_next`` without the constant row, ``a'``: the activation's
    slopes), so ``E[J^T J] = P^T W^T [(C' C'^T) * E[a' a'^T]] W P``: one pass over the data for the slopes'
    second moment, no per-row Jacobians and no backward pass per output."""
    w = seg.weight_aug()
    slopes = activation_slopes(seg, f @ w.T)
    c = c_next[:-1]
    middle = (c @ c.T) * (slopes.T @ slopes / len(f))
    wp = w @ p
    return wp.T @ middle @ wp


def pca_of_gram(gram: Tensor, tol: float, offset: Tensor | None = None) -> LayerBasis:
    """The principal directions of a Gram matrix ``(d + 1, d + 1)`` as a basis (null directions dropped);
    ``offset``: the mean a centred Gram matrix was taken around."""
    evals, evecs = torch.linalg.eigh(gram)
    keep = evals > tol * evals.max().clamp_min(1e-300)
    u, d = evecs[:, keep].flip(1), evals[keep].flip(0)
    return LayerBasis(u, u, d, False, evals.flip(0), offset)


def _outputs(f: Tensor, centred: bool) -> LayerBasis:
    """The network's own outputs as the last layer's basis (the constant unit left out), so importance
    upstream is measured in output units."""
    d = f.shape[1] - 1
    eye = torch.eye(d + 1, d, dtype=f.dtype)
    return LayerBasis(eye, eye, (f[:, :d] ** 2).mean(0), False, torch.linalg.eigvalsh(_gram(f, centred)).flip(0))


def _neurons(f: Tensor, centred: bool) -> LayerBasis:
    offset = f.mean(0) if centred else None
    power = ((f - f.mean(0) if centred else f) ** 2).mean(0)
    order = torch.argsort(power, descending=True)
    eye = torch.eye(f.shape[1], dtype=f.dtype)[:, order]
    return LayerBasis(eye, eye, power[order], False, torch.linalg.eigvalsh(_gram(f, centred)).flip(0), offset)


def interaction_basis(segments: list[Segment], x: Tensor, kind: Kind = "lib", centred: bool = False,
                      tol: float = 1e-12) -> list[LayerBasis]:
    """Bases of every layer ``0..L`` (inputs to outputs) of the segment chain on inputs ``x`` ``(N, d_0)``."""
    if kind not in ("lib", "pca", "neuron"):
        raise ParamLensError(f"unknown basis '{kind}'; choose lib, pca or neuron")
    with torch.no_grad():
        acts = augmented_activations(segments, x)
    if kind == "pca":
        return [pca_of_gram(_gram(f, centred), tol, f.mean(0) if centred else None) for f in acts]
    if kind == "neuron":
        return [_neurons(f, centred) for f in acts]
    bases: list[LayerBasis | None] = [None] * len(acts)
    bases[-1] = _outputs(acts[-1], centred)
    for layer in reversed(range(len(segments))):
        r, p, gram_evals = whiten_gram(_gram(acts[layer], centred), tol)
        m = jacobian_second_moment(segments[layer], p, bases[layer + 1].coords, acts[layer])
        lam, v = torch.linalg.eigh(m)
        lam, v = lam.flip(0).clamp_min(0), v.flip(1)
        bases[layer] = LayerBasis(r @ v, p @ v, lam, True, gram_evals, acts[layer].mean(0) if centred else None)
    return bases
