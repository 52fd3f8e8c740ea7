"""Interaction edges between the basis directions of consecutive layers, and ablations that keep only some.

Edge ``(j -> i)`` from direction ``j`` of layer ``l`` to direction ``i`` of layer ``l + 1``:
``E[(d c_i / d y_j * y_j)^2]`` over the data, where ``y`` are the unit-scale coordinates of layer ``l`` and
``c`` the basis coordinates of layer ``l + 1`` (gradient times activation, squared: the first-order share of
``c_i`` carried by ``y_j``; invariant to how ``y_j`` is scaled). Per-row Jacobians come from
``vmap(jacrev)``.

Ablation: direction ``i`` of layer ``l + 1`` is recomputed from layer ``l``'s activation rebuilt from only the
coordinates ``j`` whose edge ``(j -> i)`` is kept (a centred basis keeps the mean activation: the ablated
coordinates are set to their mean, 0); layers are chained, so ablations compound like in the network.
"""

from __future__ import annotations

import torch
from torch import Tensor

from paramlens.interaction.basis import LayerBasis, Segment, augment, augmented_activations


def edges(segments: list[Segment], bases: list[LayerBasis], x: Tensor, chunk: int = 256) -> list[Tensor]:
    """Per layer pair ``l``: ``(k_{l+1}, k_l)`` edge weights, float64."""
    acts = augmented_activations(segments, x)
    out = []
    for layer, seg in enumerate(segments):
        b, nxt = bases[layer], bases[layer + 1]

        def fn(y: Tensor, seg: Segment = seg, b: LayerBasis = b, c: Tensor = nxt.coords) -> Tensor:
            return seg(b.rebuild(y)) @ c

        jac = torch.func.vmap(torch.func.jacrev(fn))
        y_all = b.coordinates(acts[layer])
        total = torch.zeros(nxt.size, b.size, dtype=torch.float64)
        for s in range(0, len(x), chunk):
            y = y_all[s: s + chunk]
            total += ((jac(y) * y[:, None, :]) ** 2).sum(0)
        out.append(total / len(x))
    return out


def ablated_output(segments: list[Segment], bases: list[LayerBasis], x: Tensor, keep: list[Tensor],
                   chunk: int = 128) -> Tensor:
    """Network output ``(N, d_L)`` when only the edges in ``keep`` (bool, shaped like :func:`edges`) carry
    signal."""
    y = bases[0].coordinates(augment(x))
    for layer, seg in enumerate(segments):
        b, nxt = bases[layer], bases[layer + 1]
        mask = keep[layer].double()  # (k_next, k)
        parts = []
        for s in range(0, len(y), chunk):
            yy = y[s: s + chunk]
            f = b.rebuild(yy[:, None, :] * mask[None])  # (n, k_next, d + 1): one input per output direction
            out = seg(f) if nxt.offset is None else seg(f) - nxt.offset
            parts.append(torch.einsum("nio,oi->ni", out, nxt.dual))
        y = torch.cat(parts)
    return bases[-1].rebuild(y)[:, :-1]


def _keep_strongest(weights: list[Tensor], order: Tensor, n: int) -> list[Tensor]:
    """Boolean masks shaped like ``weights`` keeping the first ``n`` edges of ``order`` (flat indices)."""
    chosen = torch.zeros(len(order), dtype=torch.bool)
    chosen[order[:n]] = True
    keep, start = [], 0
    for w in weights:
        keep.append(chosen[start: start + w.numel()].view(w.shape))
        start += w.numel()
    return keep


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(-1) == labels).double().mean())


def _strongest_first(weights: list[Tensor]) -> Tensor:
    return torch.argsort(torch.cat([w.flatten() for w in weights]), descending=True)


def _accuracy_keeping(segments: list[Segment], bases: list[LayerBasis], x: Tensor, labels: Tensor,
                      weights: list[Tensor], order: Tensor, n: int) -> float:
    return _accuracy(ablated_output(segments, bases, x, _keep_strongest(weights, order, n)), labels)


def edge_curve(segments: list[Segment], bases: list[LayerBasis], x: Tensor, labels: Tensor, weights: list[Tensor],
               counts: list[int]) -> list[float]:
    """Accuracy when only the ``n`` strongest edges (over all layers) are kept, for each ``n`` in ``counts``."""
    order = _strongest_first(weights)
    return [_accuracy_keeping(segments, bases, x, labels, weights, order, n) for n in counts]


def direction_curve(segments: list[Segment], bases: list[LayerBasis], x: Tensor, labels: Tensor, layer: int,
                    counts: list[int]) -> list[float]:
    """Accuracy when layer ``layer``'s activation is rebuilt from its ``n`` most important basis directions
    (the rest set to zero), for each ``n`` in ``counts``."""
    acts = augmented_activations(segments, x)
    b = bases[layer]
    y = b.coordinates(acts[layer])
    out = []
    for n in counts:
        f = b.rebuild(y[:, :n])
        for seg in segments[layer:]:
            f = seg(f)
        out.append(_accuracy(f[:, :-1], labels))
    return out


def edges_needed(segments: list[Segment], bases: list[LayerBasis], x: Tensor, labels: Tensor,
                 weights: list[Tensor], tolerance: float = 0.001) -> tuple[int, int, float]:
    """Fewest strongest edges (ranked over all layers) that keep accuracy within ``tolerance`` of the full
    network's: ``(edges kept, total edges, accuracy reached)``; found by bisection over the count."""
    order = _strongest_first(weights)

    def accuracy(n: int) -> float:
        return _accuracy_keeping(segments, bases, x, labels, weights, order, n)

    full = accuracy(len(order))
    lo, hi = 0, len(order)
    while lo < hi:
        mid = (lo + hi) // 2
        if accuracy(mid) >= full - tolerance:
            hi = mid
        else:
            lo = mid + 1
    return lo, len(order), accuracy(lo)
