"""What one weight matrix looks like: value set, sparsity, fan-in/out, and row signatures.

A row signature is the sorted list of a row's non-zero weights and its bias, e.g. ``+1 | 0`` (a copy),
``-1 | +1`` (a NOT), ``+1 +1 | -1`` (an AND of two), ``-2 +1 +1 | 0`` (an XOR over a, b and their AND).
Signatures are computed for integer layers whose rows have at most :data:`MAX_SIGNATURE_FAN_IN` non-zeros.

A layer is integer when every weight and bias is finite, whole and within ``±2^31``
(:data:`paramlens.reverse.values.MAX_MAGNITUDE`). A layer holding NaN or infinities is of kind ``non-finite``:
its value sets, sparsity and fan-in/out are computed over its finite values only. ``problem`` says, per
tensor, how many NaN, +Inf and -Inf it holds and how many values lie beyond ``±2^31``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.reverse.values import is_integer, layer_problem, nonfinite_counts

MAX_DISTINCT = 16
MAX_SIGNATURE_FAN_IN = 16
COPY, NOT = "+1 | 0", "-1 | +1"


def _fmt(v: float) -> str:
    return f"{int(v):+d}" if float(v).is_integer() else f"{v:+.3g}"


@dataclass
class LayerStats:
    """Statistics of one layer ``(out, in)``; ``values``/``bias_values``: the distinct values when there are
    at most 16 (else None); ``signatures``: row signature -> count (empty for real-valued layers);
    ``constant_bits``: the bias bits of the copy (0) and NOT (1) rows, in row order; ``problem``: the
    non-finite or out-of-range values of the weight and bias, in words (None: none)."""

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
    problem: str | None = None


def _kind(values: list[float] | None, integer: bool, finite: bool) -> str:
    if not finite:
        return "non-finite"
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
SPARSE_AT_MOST = 0.25  # density up to which an integer layer is read from its non-zero entries alone
_PROBE = torch.rand(MAX_SIGNATURE_FAN_IN + 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 1


def _integer_counts(t: Tensor) -> dict[int, int] | None:
    """``{value: count}`` of an integer tensor by bincount (fast), when its range is small."""
    if t.numel() == 0:
        return {}
    lo, hi = int(t.min()), int(t.max())
    if hi - lo > MAX_COUNTED_RANGE:
        return None
    counts = torch.bincount(t.flatten().long() - lo, minlength=hi - lo + 1)
    found = counts.nonzero().flatten()
    return {int(v) + lo: int(counts[v]) for v in found}


def _distinct(t: Tensor) -> list[float] | None:
    """The distinct finite values of ``t`` when there are at most :data:`MAX_DISTINCT`, else None."""
    if t.is_floating_point():
        t = t[t.isfinite()]
    else:
        counts = _integer_counts(t)
        if counts is not None:
            return [float(v) for v in sorted(counts)] if len(counts) <= MAX_DISTINCT else None
    u = torch.unique(t)
    return u.tolist() if len(u) <= MAX_DISTINCT else None


def _unique_rows(table: Tensor, sentinel: int) -> tuple[Tensor, Tensor]:
    """``torch.unique(table, dim=0, return_inverse=True)`` for a signature table (non-zero values, then
    ``sentinel`` s, then the bias), by a random projection of each row (the rows of one projection checked
    equal; exact ``unique`` when different rows share one)."""
    key = torch.where(table == sentinel, 0, table).double() @ _PROBE[:table.shape[1]]
    _, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(table), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(table)), reduce="amin")
    if not torch.equal(table, table[first[inverse]]):
        return torch.unique(table, dim=0, return_inverse=True)
    return table[first], inverse


def _row_signatures(rows: Tensor, vals: Tensor, bias: Tensor, fan_in: Tensor) -> tuple[list[str], Tensor]:
    """Signature names and, per row, the index of its signature, from the non-zero entries ``(rows, vals)``
    (integers, rows in ascending order) and the bias."""
    by_value = torch.sort(vals, stable=True).indices
    order = by_value[torch.sort(rows[by_value], stable=True).indices]  # by row, then value
    rows, vals = rows[order], vals[order]
    k = max(int(fan_in.max()), 1)
    starts = torch.cumsum(fan_in, 0) - fan_in
    slot = torch.arange(len(rows)) - starts[rows]
    sentinel = torch.iinfo(torch.int64).max
    table = torch.full((len(bias), k + 1), sentinel, dtype=torch.int64)
    table[rows, slot] = vals
    table[:, k] = bias
    unique, inverse = _unique_rows(table, sentinel)
    names = [" ".join(_fmt(v) for v in r[:-1] if v != sentinel) + " | " + (_fmt(r[-1]) if r[-1] else "0")
             for r in unique.tolist()]
    return names, inverse


def _signatures(rows: Tensor, vals: Tensor, bias: Tensor, fan_in: Tensor) -> tuple[dict[str, int], list[int]]:
    """Row signature -> count, most common first, and the bias bits of the copy/NOT rows (in row order)."""
    if not len(bias) or int(fan_in.max()) > MAX_SIGNATURE_FAN_IN:
        return {}, []
    names, inverse = _row_signatures(rows, vals, bias, fan_in)
    row_names = [names[i] for i in inverse.tolist()]
    return dict(Counter(row_names).most_common()), [int(n == NOT) for n in row_names if n in (COPY, NOT)]


def _min_mean_max(counts: Tensor) -> tuple[int, float, int]:
    """Smallest, mean and largest of per-row or per-column counts (zeros for a layer without rows or columns)."""
    if counts.numel() == 0:
        return 0, 0.0, 0
    return int(counts.min()), float(counts.float().mean()), int(counts.max())


Entries = tuple[Tensor, Tensor, Tensor]  # rows, columns and values of the non-zero entries


def entries(W: Tensor) -> Entries | None:
    """The non-zero entries of ``W`` when at most :data:`SPARSE_AT_MOST` of it are non-zero (None otherwise)."""
    if not W.numel() or int(torch.count_nonzero(W)) > SPARSE_AT_MOST * W.numel():
        return None
    rows, cols = W.nonzero(as_tuple=True)
    return rows, cols, W[rows, cols]


def _sparse_integer(W: Tensor, bias: Tensor, found: Entries | None) -> LayerStats | None:
    """Statistics from the non-zero entries alone, for a sparse layer whose values are all integers (None
    otherwise: the dense reading applies)."""
    if found is None:
        return None
    rows, cols, vals = found
    if not (is_integer(vals) and is_integer(bias)):
        return None
    vals, bias = vals.to(torch.int64), bias.to(torch.int64)
    value_counts = _integer_counts(vals)
    if value_counts is not None and len(vals) < W.numel():
        value_counts = dict(sorted((value_counts | {0: W.numel() - len(vals)}).items()))
    values = [float(v) for v in value_counts] if value_counts is not None and len(value_counts) <= MAX_DISTINCT \
        else None
    fan_in = torch.bincount(rows, minlength=W.shape[0])
    signatures, constant_bits = _signatures(rows, vals, bias, fan_in)
    return LayerStats(
        shape=tuple(W.shape), integer=True, values=values, kind=_kind(values, True, True),
        sparsity=1 - len(vals) / W.numel(), fan_in=_min_mean_max(fan_in),
        fan_out=_min_mean_max(torch.bincount(cols, minlength=W.shape[1])), bias_values=_distinct(bias),
        signatures=signatures, constant_bits=constant_bits, value_counts=value_counts)


def layer_stats(W: Tensor, b: Tensor | None, names: tuple[str, str | None] = ("weight", "bias"),
                found: Entries | None = None) -> LayerStats:
    """Statistics of a weight ``(out, in)`` and optional bias ``(out,)`` (any float or integer dtype);
    ``names``: how ``problem`` calls the two tensors; ``found``: ``entries(W)``, when already read.

    Integer layers (finite, whole, within ``±2^31``) are counted and signed as int64 (sparse ones from their
    non-zero entries alone); other layers keep their dtype, and NaN/infinities are left out of value sets,
    sparsity and fan-in/out.
    """
    W = W.detach()
    bias = b.detach() if b is not None else torch.zeros(W.shape[0], dtype=W.dtype)
    sparse = _sparse_integer(W, bias, found if found is not None else entries(W))
    if sparse is not None:
        return sparse
    finite = not nonfinite_counts(W) and not nonfinite_counts(bias)
    integer = is_integer(W) and is_integer(bias)
    if integer:
        W, bias = W.to(torch.int64), bias.to(torch.int64)
    nz = (W != 0) & W.isfinite() if W.is_floating_point() else W != 0
    fan_in = nz.sum(1)
    value_counts = _integer_counts(W) if integer else None
    values = ([float(v) for v in sorted(value_counts)] if len(value_counts) <= MAX_DISTINCT else None) \
        if value_counts is not None else _distinct(W)
    rows, cols = nz.nonzero(as_tuple=True) if integer else (None, None)
    signatures, constant_bits = _signatures(rows, W[rows, cols], bias, fan_in) if integer and W.numel() else ({}, [])
    n_finite = int(W.isfinite().sum()) if W.is_floating_point() else W.numel()
    return LayerStats(
        shape=tuple(W.shape), integer=integer, values=values,
        kind=_kind(values, integer, finite) if W.numel() else "empty",
        sparsity=1 - int(nz.sum()) / max(n_finite, 1), fan_in=_min_mean_max(fan_in), fan_out=_min_mean_max(nz.sum(0)),
        bias_values=_distinct(bias), signatures=signatures, constant_bits=constant_bits, value_counts=value_counts,
        problem=layer_problem(W, b, names))
