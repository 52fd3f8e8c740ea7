"""Match each unit of a layer with a catalogue column, on the random inputs.

A unit matches a bit column ``v`` when its activation is ``v`` (or ``1 - v``), and an integer column ``v`` when its
pre-activation is ``v - c`` (or ``c - v``) for an integer ``c`` solved for, so that it is ``relu(±(v - c))``. Both
read as ``unit = relu(sign * (v - c))`` (a bit: sign +1 and c = 0, its negation: sign -1 and c = 1).

Candidates come from hashing: the inputs are cut into blocks of :data:`BLOCK`; in each block a column is hashed to
one 64-bit number (a fixed random linear combination of its values; integers first shifted to start at 0, so the
hash ignores ``c``) and looked up among the catalogue's. A unit that hashes like a column in any one block is then
compared on every input, and kept when it disagrees on at most 1/16 of them; a statement built on it reports the
first disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paramlens.reverse.identify_columns import EXACT, Column, Columns

BLOCK = 32
CHUNK = 2048  # candidates compared at a time
BITS, INTS = 0, 1  # candidate kinds, in the order ties are broken (then by catalogue order)


@dataclass
class Match:
    """``unit = relu(sign * (v - c))`` for the column ``v``; ``values`` and ``got`` (the unit's activation): one per
    input; ``agreed``: on how many inputs the two agree."""

    unit: int
    column: Column
    is_bit: bool
    sign: int
    c: int
    values: np.ndarray
    got: np.ndarray
    agreed: int

    def expected(self) -> np.ndarray:
        """What the unit should be on each input."""
        return np.maximum(self.sign * (self.values - self.c), 0)

    def claim(self) -> str:
        """This unit's statement in words: ``md5(input) bit 5``, ``relu(input byte 3 - 127)``."""
        text = self.column.describe(negated=self.is_bit and self.sign < 0)
        if self.is_bit or (self.sign > 0 and self.c == 0):
            return text
        return f"relu({text} - {self.c})" if self.sign > 0 else f"relu({self.c} - {text})"


class Lookup:
    """The catalogue's columns hashed per block (each block's hashes salted apart), sorted for lookups."""

    def __init__(self, columns: Columns, seed: int):
        self.columns = columns
        self.samples = columns.bits.shape[0]
        rng = np.random.default_rng([seed, 1])
        self.weights = rng.integers(-2**62, 2**62, size=BLOCK, dtype=np.int64) | 1
        self.salts = rng.integers(-2**62, 2**62, size=self.blocks, dtype=np.int64)
        self.tables = {BITS: self._table(columns.bits, BITS), INTS: self._table(columns.ints, INTS)}

    @property
    def blocks(self) -> int:
        return self.samples // BLOCK

    def _hash(self, values: np.ndarray, blocks: np.ndarray, kind: int) -> tuple[np.ndarray, np.ndarray]:
        """The hash of each column of ``values`` ``(samples, n)`` in each of ``blocks`` (integers shifted to start at
        0 there), ``(len(blocks), n)`` int64, and where it can be looked up: it varies in the block (bits: and is 0 or
        1 there)."""
        part = np.stack([values[b * BLOCK:(b + 1) * BLOCK] for b in blocks]).astype(np.int64)
        if kind == INTS:
            part = part - part[:, :1]
        usable = (part != part[:, :1]).any(1)
        if kind == BITS:
            usable &= ((part == 0) | (part == 1)).all(1)
        return self.weights @ part, usable

    def _table(self, values: np.ndarray, kind: int) -> tuple[np.ndarray, ...]:
        """Sorted ``(keys, column ids, signs, blocks)`` over every block: each varying column and its negation (bits:
        ``1 - v``, integers ``-v``)."""
        blocks = np.arange(self.blocks)
        keys, varies = self._hash(values, blocks, kind)
        block, ids = np.nonzero(varies)
        plain = keys[block, ids]
        negated = self.weights.sum() - plain if kind == BITS else -plain
        salt = np.tile(self.salts[block], 2)
        all_keys = np.concatenate([plain, negated]) ^ salt
        order = np.argsort(all_keys, kind="stable")
        signs = np.repeat(np.array([1, -1]), len(ids))
        return all_keys[order], np.tile(ids, 2)[order], signs[order], np.tile(block, 2)[order]

    def match(self, pre: np.ndarray, post: np.ndarray) -> list[Match]:
        """The best match of each unit of a layer (``pre`` / ``post`` activations ``(samples, units)`` float64).

        The first block is looked up for every unit, the others only for units that did not match on every input."""
        integral = np.all((pre == np.rint(pre)) & (np.abs(pre) < EXACT), axis=0)
        whole = np.where(integral, np.rint(np.nan_to_num(pre)), 0).astype(np.int64)
        bits = np.where(integral, whole.clip(0), 0)
        best: dict[int, Match] = {}
        todo = np.ones(pre.shape[1], dtype=bool)
        for blocks in (np.arange(1), np.arange(1, self.blocks)):
            if not len(blocks) or not todo.any():
                break
            found = np.concatenate([self._candidates(bits, integral & todo, blocks, BITS),
                                    self._candidates(whole, integral & todo, blocks, INTS)])
            for m in self._verify(np.unique(found, axis=0), post):
                if m.unit not in best or m.agreed > best[m.unit].agreed:
                    best[m.unit] = m
                    todo[m.unit] = m.agreed < self.samples
        return [best[u] for u in sorted(best)]

    def _candidates(self, values: np.ndarray, usable: np.ndarray, blocks: np.ndarray, kind: int) -> np.ndarray:
        """Rows ``(unit, kind, column id, sign, c)`` for the units whose hash in one of ``blocks`` is a column's."""
        keys, ids, signs, at_block = self.tables[kind]
        q, varies = self._hash(values, blocks, kind)
        q = (q ^ self.salts[blocks][:, None]).ravel()
        usable = (varies & usable[None]).ravel()
        lo, hi = np.searchsorted(keys, q, "left"), np.searchsorted(keys, q, "right")
        counts = np.where(usable, hi - lo, 0)
        which = np.repeat(np.arange(len(q)), counts)
        at = np.repeat(lo, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        units, col, sign, block = which % values.shape[1], ids[at], signs[at], at_block[at]
        if kind == BITS:
            c = (sign < 0).astype(np.int64)
        else:
            first, start = self.columns.ints[block * BLOCK, col], values[block * BLOCK, units]
            c = np.where(sign > 0, first - start, start + first)
        return np.stack([units, np.full(len(units), kind), col, sign, c], axis=1).astype(np.int64)

    def _verify(self, candidates: np.ndarray, post: np.ndarray) -> list[Match]:
        """The candidates compared on every input, kept when they disagree on at most 1/16 of them."""
        kept = []
        for start in range(0, len(candidates), CHUNK):
            part = candidates[start:start + CHUNK]
            units, kind, col, sign, c = part.T
            is_bit = kind == BITS
            values = np.empty((self.samples, len(part)), dtype=np.int64)
            values[:, is_bit] = self.columns.bits[:, col[is_bit]]
            values[:, ~is_bit] = self.columns.ints[:, col[~is_bit]]
            score = (np.maximum(sign * (values - c), 0) == post[:, units]).sum(0)
            for i in np.flatnonzero(score >= self.samples - self.samples // 16):
                names = self.columns.bit_columns if is_bit[i] else self.columns.int_columns
                kept.append(Match(int(units[i]), names[col[i]], bool(is_bit[i]), int(sign[i]), int(c[i]),
                                  values[:, i], post[:, units[i]], int(score[i])))
        return kept
