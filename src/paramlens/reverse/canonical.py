"""Undo, one layer at a time, the disguises that leave an integer ReLU chain's function unchanged.

- rows that are always 0 (no weights, bias below 0) are dropped, and so are the next layer's reads of them;
- identical rows (same weights, same bias) are one row: the next layer's reads of the copies are summed;
- a weightless row (a constant) whose reads were split with a copy of itself (reads ``w - s`` and ``s``) is
  joined with that copy: the pair whose summed reads are one positive power of two on every reader;
- the order of rows is never used: every reading of the canonical layer is a multiset or a trace.

Canonical rows keep the stored order of their first copy, so an undisguised chain comes out unchanged. Layers are
held as their non-zero entries (the chains read here are mostly zeros).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_GEN = torch.Generator().manual_seed(7)
_PROBES = torch.rand(2, 1 << 16, generator=_GEN, dtype=torch.float64) + 1.0


@dataclass
class Canonical:
    """One layer without its disguises, as entries ``vals`` at ``(rows, cols)`` (rows ascending) of an
    ``(n_rows, n_cols)`` int64 matrix over the canonical rows of the layer before; ``b`` ``(n_rows,)``; ``raw``:
    the stored index of each row's first copy; ``weightless`` per row; ``dead``, ``duplicates``: stored rows
    dropped and merged; ``paired``: constants of the layer before joined."""

    rows: Tensor
    cols: Tensor
    vals: Tensor
    n_cols: int
    b: Tensor
    raw: Tensor
    weightless: Tensor
    dead: int
    duplicates: int
    paired: int

    def columns(self, which: Tensor) -> Tensor:
        """The dense columns ``which`` ``(n_rows, len(which))`` (a column may be asked for more than once)."""
        slot = torch.full((self.n_cols,), -1, dtype=torch.long)
        unique, back = torch.unique(which, return_inverse=True)
        slot[unique] = torch.arange(len(unique))
        hit = slot[self.cols] >= 0
        dense = torch.zeros(len(self.b), len(unique), dtype=torch.int64)
        dense[self.rows[hit], slot[self.cols[hit]]] = self.vals[hit]
        return dense[:, back]


def _combine(rows: Tensor, cols: Tensor, vals: Tensor, n_cols: int) -> tuple[Tensor, Tensor, Tensor]:
    """Entries at the same position summed, zero sums dropped, sorted by row then column."""
    key, back = torch.unique(rows * n_cols + cols, return_inverse=True)
    total = torch.zeros(len(key), dtype=torch.int64).index_add_(0, back, vals)
    keep = total != 0
    return key[keep] // n_cols, key[keep] % n_cols, total[keep]


def _is_clean(columns: Tensor) -> Tensor:
    """Per column: its non-zero entries are one positive power of two (and there is at least one)."""
    nonzero = columns != 0
    top = columns.max(0).values
    low = torch.where(nonzero, columns, torch.full_like(columns, torch.iinfo(torch.int64).max)).min(0).values
    return nonzero.any(0) & (top == low) & (top > 0) & ((top & (top - 1)) == 0)


def _pair_constants(V: Tensor, bias: Tensor) -> int:
    """Join split constants in place (``V``: the reads of the constants, one column each): each unclean
    column with the first same-bias column that makes the sum clean (that column becomes 0). Returns how many."""
    joined = 0
    for i in (~_is_clean(V) & (V != 0).any(0)).nonzero().flatten().tolist():
        fits = _is_clean(V[:, i:i + 1] + V) & (bias == bias[i])
        fits[i] = False
        partner = fits.nonzero().flatten()
        if len(partner):
            V[:, i] += V[:, int(partner[0])]
            V[:, int(partner[0])] = 0
            joined += 1
    return joined


def _row_keys(rows: Tensor, cols: Tensor, vals: Tensor, b: Tensor) -> Tensor:
    """Two independent random projections of each row (weights and bias), ``(n_rows, 2)``."""
    probe = _PROBES[:, cols % _PROBES.shape[1]] + (cols // _PROBES.shape[1]) * 1e-6
    keys = b.double()[:, None] * torch.tensor([0.7548776662466927, 0.5698402909980532], dtype=torch.float64)
    return keys.index_add_(0, rows, (vals.double() * probe).T)


def _first_copies(keys: Tensor, candidates: Tensor) -> Tensor:
    """Per row: the first row among ``candidates`` with the same keys (itself when none)."""
    first = torch.arange(len(keys))
    if len(candidates) < 2:
        return first
    _, inverse = torch.unique(keys[candidates, 0], return_inverse=True)
    lowest = torch.full((int(inverse.max()) + 1,), len(keys), dtype=torch.long)
    lowest.scatter_reduce_(0, inverse, candidates, reduce="amin")
    rep = lowest[inverse]
    same = keys[candidates, 1] == keys[rep, 1]  # the second projection confirms the first
    first[candidates[same]] = rep[same]
    return first


class Canonicalizer:
    """Feeds integer layers in chain order through :meth:`step`; :meth:`reset` after a layer that is not."""

    def __init__(self) -> None:
        self._map: Tensor | None = None  # stored row of the layer before -> canonical column (-1: dropped)
        self._n_cols = 0
        self._constants = torch.zeros(0, dtype=torch.long)  # canonical constants of the layer before
        self._constant_bias = torch.zeros(0, dtype=torch.long)

    def reset(self) -> None:
        self.__init__()

    def _columns(self, rows: Tensor, cols: Tensor, vals: Tensor, n_rows: int) -> tuple[Tensor, Tensor, Tensor, int]:
        """Entries over the canonical rows of the layer before (copies summed, dead dropped, constants joined)."""
        if self._map is None:
            return rows, cols, vals, 0
        cols = self._map[cols]
        keep = cols >= 0
        rows, cols, vals = _combine(rows[keep], cols[keep], vals[keep], max(self._n_cols, 1))
        if len(self._constants) < 2:
            return rows, cols, vals, 0
        slot = torch.full((self._n_cols,), -1, dtype=torch.long)
        slot[self._constants] = torch.arange(len(self._constants))
        mine = slot[cols] >= 0
        V = torch.zeros(n_rows, len(self._constants), dtype=torch.int64)
        V[rows[mine], slot[cols[mine]]] = vals[mine]
        joined = _pair_constants(V, self._constant_bias)
        if joined:
            r, k = V.nonzero(as_tuple=True)
            rows, cols, vals = _combine(torch.cat([rows[~mine], r]), torch.cat([cols[~mine], self._constants[k]]),
                                        torch.cat([vals[~mine], V[r, k]]), self._n_cols)
        return rows, cols, vals, joined

    def step(self, rows: Tensor, cols: Tensor, vals: Tensor, b: Tensor, n_in: int) -> Canonical:
        """The canonical form of a stored layer of ``n_in`` columns: the non-zero entries ``vals`` at ``(rows,
        cols)`` (row-major order) and bias ``b`` (integers, any dtype)."""
        vals, b = vals.to(torch.int64), b.to(torch.int64)
        rows, cols, vals, paired = self._columns(rows, cols, vals, len(b))
        weightless = torch.bincount(rows, minlength=len(b)) == 0
        dead = weightless & (b < 0)
        first = _first_copies(_row_keys(rows, cols, vals, b), (~weightless).nonzero().flatten())
        keep = (first == torch.arange(len(b))) & ~dead
        index = torch.cumsum(keep, 0) - 1
        n_cols = self._n_cols if self._map is not None else n_in
        self._map = torch.where(dead, torch.full_like(index, -1), index[first])
        self._n_cols = int(keep.sum())
        kept = keep.nonzero().flatten()
        self._constants = (weightless & ~dead)[kept].nonzero().flatten()
        self._constant_bias = b[kept][self._constants]
        entry = keep[rows]
        return Canonical(index[rows[entry]], cols[entry], vals[entry], n_cols, b[kept], kept, weightless[kept],
                         int(dead.sum()), int((~keep & ~dead).sum()), paired)
