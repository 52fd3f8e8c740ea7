"""Order-free fingerprints of a canonical layer, to tell which layers repeat and how repeats differ.

Each row gets hashes of the multiset of its weights (its *shape*), of that and its bias (its *kind*), and of
its weights paired with the shapes of the rows they read (its *wiring*). A layer's fingerprints are multiset
hashes over its rows, so shuffled rows give the same numbers:

- ``widths``: the stored ``(out, in)``;
- ``kinds``: the row kinds with their counts (a per-step constant in weightless-row biases changes them);
- ``weights``: the row shapes with their counts;
- ``wiring``: the wirings (a rotation, which moves reads between rows of other shapes, changes them);
- ``biases``: the bias values with their counts (a constant folded into biases changes them);
- ``loose``: the set of kinds of at least 5 % of the rows that compute (rows with weights, but for pass rows
  ``+1 | 0`` that carry a value on), what two repeats share despite those.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.reverse.canonical import Canonical

_ODD = (0x9E3779B97F4A7C15 - (1 << 64), 0xBF58476D1CE4E5B9 - (1 << 64), 0x94D049BB133111EB - (1 << 64))
COMMON = 0.05


def mix(x: Tensor) -> Tensor:
    """A 64-bit integer hash of each entry (splitmix64's finaliser on int64, wrapping)."""
    x = x * _ODD[0]
    x = x ^ ((x >> 31) & ((1 << 33) - 1))
    x = x * _ODD[1]
    x = x ^ ((x >> 29) & ((1 << 35) - 1))
    return x * _ODD[2]


def _row_sums(rows: Tensor, values: Tensor, n_rows: int) -> Tensor:
    return torch.zeros(n_rows, dtype=torch.int64).index_add_(0, rows, values)


@dataclass(frozen=True)
class Fingerprint:
    """A layer's order-free hashes (see the module docstring); ``real``: not an integer layer."""

    widths: tuple[int, int]
    kinds: int
    weights: int
    wiring: int
    biases: int
    loose: int
    real: bool = False

    def key(self) -> tuple:
        """What repeats share: the common row kinds (integer layers), or sizes (real-valued ones)."""
        return ("real", self.widths) if self.real else ("integer", self.loose)


def fingerprint(c: Canonical, widths: tuple[int, int], column_shapes: Tensor | None) -> tuple[Fingerprint, Tensor]:
    """The fingerprint of canonical layer ``c`` (stored sizes ``widths``), and its rows' shapes, which the next
    layer reads as ``column_shapes`` (None: the columns are inputs, all of one shape)."""
    rows, cols = c.rows, c.cols
    values = mix(c.vals)
    n = len(c.b)
    shape = _row_sums(rows, values, n)
    kind = mix(shape + mix(c.b + 12345))
    read = column_shapes[cols] if column_shapes is not None else torch.zeros_like(cols)
    wiring = _row_sums(rows, mix(values + mix(read)), n)
    fan_in = torch.bincount(rows, minlength=n)
    passing = (fan_in == 1) & (_row_sums(rows, c.vals, n) == 1) & (c.b == 0)
    weighted = kind[~c.weightless & ~passing]
    common = [] if not len(weighted) else torch.unique(weighted, return_counts=True)
    loose = hash(tuple(common[0][common[1] >= COMMON * len(weighted)].tolist())) if len(weighted) else 0
    total = lambda t: int(mix(t).sum())  # an order-free multiset hash
    return Fingerprint(widths, total(kind), total(shape), total(wiring), total(c.b + 777), loose), shape


def real_fingerprint(widths: tuple[int, int], kind: str) -> Fingerprint:
    """Layers that are not integer: sizes and value kind only."""
    h = hash((widths, kind))
    return Fingerprint(widths, h, h, h, h, h, real=True)
