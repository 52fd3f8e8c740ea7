"""What one weight matrix looks like: value set, sparsity, fan-in/out, and row signatures.

A row signature is the sorted list of a row's non-zero weights and its bias, e.g. ``+1 | 0`` (a copy),
``-1 | +1`` (a NOT), ``+1 +1 | -1`` (an AND of two), ``-2 +1 +1 | 0`` (an XOR over a, b and their AND).
Signatures are computed for integer layers whose rows have at most :data:`MAX_SIGNATURE_FAN_IN` non-zeros.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_DISTINCT = 16
MAX_SIGNATURE_FAN_IN = 16
COPY, NOT = "+1 | 0", "-1 | +1"


def _fmt(v: float) -> str:
    return f"{int(v):+d}" if float(v).is_integer() else f"{v:+.3g}"


@dataclass
class LayerStats:
    """Statistics of one layer ``(out, in)``; ``values``/``bias_values``: the distinct values when there are
    at most 16 (else None); ``signatures``: row signature -> count (empty for real-valued layers)."""

    shape: tuple[int, int]
    integer: bool
    values: list[float] | None
    kind: str
    sparsity: float
    fan_in: tuple[int, float, int]
    fan_out: tuple[int, float, int]
    bias_values: list[float] | None
    signatures: dict[str, int]
    constant_bits: list[int]

    def key(self) -> tuple:
        """What repeats between rounds: sizes, value kind and which row types occur (not how many)."""
        return self.shape, self.kind, frozenset(self.signatures)


def _kind(values: list[float] | None, integer: bool) -> str:
    if values is not None:
        s = set(values)
        if s <= {0.0, 1.0}:
            return "binary"
        if s <= {-1.0, 0.0, 1.0}:
            return "ternary"
    if integer:
        return "integer"
    return "few values" if values is not None else "real"


def _distinct(t: Tensor) -> list[float] | None:
    u = torch.unique(t)
    return u.tolist() if len(u) <= MAX_DISTINCT else None


def layer_stats(W: Tensor, b: Tensor | None) -> LayerStats:
    """Statistics of a weight ``(out, in)`` and optional bias ``(out,)`` (any float or integer dtype)."""
    W = W.detach()
    bias = b.detach() if b is not None else torch.zeros(W.shape[0], dtype=W.dtype)
    integer = bool(torch.equal(W, W.round()) and torch.equal(bias, bias.round())) if W.is_floating_point() else True
    if integer:
        W, bias = W.to(torch.int64), bias.to(torch.int64)
    nz = W != 0
    fan_in, fan_out = nz.sum(1), nz.sum(0)
    values = _distinct(W)
    signatures: Counter[str] = Counter()
    constant_bits: list[int] = []
    if integer and int(fan_in.max()) <= MAX_SIGNATURE_FAN_IN:
        k = max(int(fan_in.max()), 1)
        big = torch.iinfo(torch.int64).max
        rows = torch.where(nz, W, torch.full_like(W, big)).sort(dim=1).values[:, :k]
        rows = torch.cat([rows, bias[:, None]], dim=1)
        unique, inverse, counts = torch.unique(rows, dim=0, return_inverse=True, return_counts=True)
        names = [" ".join(_fmt(v) for v in r[:-1].tolist() if v != big) + " | " + (_fmt(r[-1]) if r[-1] else "0")
                 for r in unique]
        signatures.update({n: int(c) for n, c in zip(names, counts)})
        row_names = [names[i] for i in inverse.tolist()]
        constant_bits = [int(n == NOT) for n in row_names if n in (COPY, NOT)]
    return LayerStats(
        shape=tuple(W.shape), integer=integer, values=values, kind=_kind(values, integer),
        sparsity=float(1 - nz.float().mean()), fan_in=(int(fan_in.min()), float(fan_in.float().mean()), int(fan_in.max())),
        fan_out=(int(fan_out.min()), float(fan_out.float().mean()), int(fan_out.max())),
        bias_values=_distinct(bias), signatures=dict(signatures.most_common()), constant_bits=constant_bits)
