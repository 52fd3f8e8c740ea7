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
    value_counts: dict[int, int] | None = None
    bias_hash: int = 0

    def key(self) -> tuple:
        """What repeats between rounds: sizes and the row types that make up at least 5% of the rows (not
        how many: round constants change the counts; rare accidental rows are left out). Real-valued layers
        (no signatures) are keyed by sizes and value kind."""
        common = frozenset(n for n, c in self.signatures.items() if c >= 0.05 * self.shape[0])
        return self.shape, common if self.signatures else self.kind


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


MAX_COUNTED_RANGE = 1 << 16


def _integer_counts(t: Tensor) -> dict[int, int] | None:
    """``{value: count}`` of an integer tensor by bincount (fast), when its range is small."""
    if t.numel() == 0:
        return {}
    lo, hi = int(t.min()), int(t.max())
    if hi - lo > MAX_COUNTED_RANGE:
        return None
    counts = torch.bincount((t.flatten() - lo), minlength=hi - lo + 1)
    found = counts.nonzero().flatten()
    return {int(v) + lo: int(counts[v]) for v in found}


def _distinct(t: Tensor) -> list[float] | None:
    if not t.is_floating_point():
        counts = _integer_counts(t)
        if counts is not None:
            return [float(v) for v in sorted(counts)] if len(counts) <= MAX_DISTINCT else None
    u = torch.unique(t)
    return u.tolist() if len(u) <= MAX_DISTINCT else None


def _row_signatures(W: Tensor, bias: Tensor, fan_in: Tensor) -> tuple[list[str], Tensor]:
    """Signature names and, per row, the index of its signature. ``W`` integer with small fan-in."""
    rows, cols = W.nonzero(as_tuple=True)
    vals = W[rows, cols]
    order = torch.sort(rows * (2 * MAX_COUNTED_RANGE + 1) + (vals + MAX_COUNTED_RANGE)).indices  # by row, then value
    rows, vals = rows[order], vals[order]
    k = max(int(fan_in.max()), 1)
    starts = torch.cumsum(fan_in, 0) - fan_in
    slot = torch.arange(len(rows)) - starts[rows]
    sentinel = torch.iinfo(torch.int64).max
    table = torch.full((W.shape[0], k + 1), sentinel, dtype=torch.int64)
    table[rows, slot] = vals
    table[:, k] = bias
    unique, inverse = torch.unique(table, dim=0, return_inverse=True)
    names = [" ".join(_fmt(v) for v in r[:-1].tolist() if v != sentinel) + " | " + (_fmt(r[-1]) if r[-1] else "0")
             for r in unique]
    return names, inverse


def layer_stats(W: Tensor, b: Tensor | None) -> LayerStats:
    """Statistics of a weight ``(out, in)`` and optional bias ``(out,)`` (any float or integer dtype)."""
    W = W.detach()
    bias = b.detach() if b is not None else torch.zeros(W.shape[0], dtype=W.dtype)
    integer = bool(torch.equal(W, W.round()) and torch.equal(bias, bias.round())) if W.is_floating_point() else True
    if integer:
        W, bias = W.to(torch.int64), bias.to(torch.int64)
    nz = W != 0
    fan_in, fan_out = nz.sum(1), nz.sum(0)
    value_counts = _integer_counts(W) if integer else None
    values = ([float(v) for v in sorted(value_counts)] if len(value_counts) <= MAX_DISTINCT else None) \
        if value_counts is not None else _distinct(W)
    signatures: Counter[str] = Counter()
    constant_bits: list[int] = []
    if integer and int(fan_in.max()) <= MAX_SIGNATURE_FAN_IN:
        names, inverse = _row_signatures(W, bias, fan_in)
        signatures.update(Counter(names[i] for i in inverse.tolist()))
        row_names = [names[i] for i in inverse.tolist()]
        constant_bits = [int(n == NOT) for n in row_names if n in (COPY, NOT)]
    return LayerStats(
        shape=tuple(W.shape), integer=integer, values=values, kind=_kind(values, integer),
        sparsity=float(1 - nz.float().mean()), fan_in=(int(fan_in.min()), float(fan_in.float().mean()), int(fan_in.max())),
        fan_out=(int(fan_out.min()), float(fan_out.float().mean()), int(fan_out.max())),
        bias_values=_distinct(bias), signatures=dict(signatures.most_common()), constant_bits=constant_bits,
        value_counts=value_counts, bias_hash=hash(bias.contiguous().numpy().tobytes()))
