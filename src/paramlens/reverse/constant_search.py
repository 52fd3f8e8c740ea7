"""Known constants looked up in every layer and, one entry per repeat, at every block position.

Sources per layer (see :class:`LayerConstants`): bit vectors in stored row order (weightless rows, copy/NOT
rows), read as words by :mod:`paramlens.reverse.words`; the bias vector, one number per row; and the word
the weightless rows make by bit significance (:mod:`paramlens.reverse.significance`), which does not
depend on row order. Tables and matching: :mod:`paramlens.reverse.constants`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from paramlens.reverse.constants import TABLES, RepeatMatch, Table, entry_name, lookup, match_repeats
from paramlens.reverse.words import window_values

BY_SIGNIFICANCE = "weightless rows read by bit significance"
MIN_BYTE_RUN = 4  # consecutive 8-bit entries before a run of bytes counts in a single layer


@dataclass
class LayerConstants:
    """What one layer offers the search: ``bits`` (source name -> 0/1 per row, stored order), ``biases`` (int64
    per row), and ``word``: the significance reading ``(value, bits)`` of its weightless rows."""

    bits: dict[str, np.ndarray] = field(default_factory=dict)
    biases: np.ndarray | None = None
    word: tuple[int, int] | None = None


@cache
def _table_keys(bits: int) -> np.ndarray:
    return np.fromiter(lookup(bits), dtype=np.uint64)


@cache
def _table_pairs(bits: int) -> np.ndarray:
    """Consecutive table entries ``(a, b)`` as ``a << bits | b`` (readings of at most 32 bits)."""
    mask = (1 << bits) - 1
    return np.array(sorted({(t.values[i] & mask) << bits | (t.values[i + 1] & mask) for t in TABLES if t.bits >= bits
                            for i in range(len(t.values) - 1)}), dtype=np.uint64)


def _need(n_repeats: int, bits: int) -> int:
    return max(3 if bits < 32 else 2, int(np.ceil(0.75 * n_repeats)))


def _matrix_matches(values: np.ndarray, bits: int) -> list[tuple[int, RepeatMatch]]:
    """``values`` ``(repeats, offsets)``: per offset whose column matches a table one entry per repeat (columns
    without enough table entries, or consecutive pairs of them, are passed over)."""
    need = _need(values.shape[0], bits)
    ok = np.isin(values, _table_keys(bits)).sum(0) >= need
    if bits <= 32 and values.shape[0] > 1:
        pairs = (values[:-1] << np.uint64(bits)) | values[1:]
        ok &= np.isin(pairs, _table_pairs(bits)).sum(0) >= max(1, need // 2)
    found = []
    for offset in np.nonzero(ok)[0].tolist():
        found += [(offset, m) for m in match_repeats([int(v) for v in values[:, offset]], bits)]
    return found


Found = tuple[str, RepeatMatch]  # (where and how it was read: the match), the match


def _bit_matches(name: str, stack: list[np.ndarray]) -> list[Found]:
    """Repeat matches of one bit-vector source, widest words first (narrower ones only when none fit)."""
    n = min(len(b) for b in stack)
    bits = np.stack([b[:n] for b in stack])
    for width in (64, 32, 16, 8):
        found = [(f"{name} {o}..{o + width - 1}, {reading}: {m.describe()}", m)
                 for reading, values in window_values(bits, width) for o, m in _matrix_matches(values, width)]
        if found:
            return found
    return []


def repeat_constants(layers: list[LayerConstants]) -> list[Found]:
    """Known constants at one block position, one table entry per repeat (``layers``: the repeats in order)."""
    found = []
    for name in layers[0].bits:
        if all(name in c.bits and len(c.bits[name]) for c in layers):
            found += _bit_matches(name, [c.bits[name] for c in layers])
    if not found and any(c.word for c in layers):
        width = max(c.word[1] for c in layers if c.word)
        values = [c.word[0] if c.word and c.word[1] <= width else None for c in layers]
        found += [(f"{BY_SIGNIFICANCE}: {m.describe()}", m) for m in match_repeats(values, width)]
    if all(c.biases is not None for c in layers):
        n = min(len(c.biases) for c in layers)
        biases = np.stack([c.biases[:n] for c in layers])
        usable = ((biases >= 0) & (biases < 1 << 32)).all(0)
        values = np.where(usable, biases, 0).astype(np.uint64)
        found += [(f"bias of row {o}: {m.describe()}", m) for o, m in _matrix_matches(values, 32) if usable[o]]
    return found


Hit = tuple[int, int, Table]  # (offset, table index, table)


def _runs(hits: list[Hit], step: int) -> list[tuple[int, int, Table, int, int]]:
    """Consecutive hits (offsets ``step`` apart, indices one apart) joined: ``(first offset, last offset, table,
    first index, last index)``."""
    runs: list[list] = []
    for offset, index, table in sorted(hits, key=lambda h: (h[2].name, h[0])):
        last = runs[-1] if runs else None
        if last and last[2] is table and offset == last[1] + step and index == last[4] + 1:
            last[1], last[4] = offset, index
        else:
            runs.append([offset, offset, table, index, index])
    return [tuple(r) for r in runs]


def _aligned_hits(values: np.ndarray, width: int) -> list[Hit]:
    """Every aligned window whose word is an entry of a table as wide."""
    table_of = lookup(width)
    return [(o * width, i, t) for o, v in enumerate(values[0, ::width].tolist())
            for t, i in table_of.get(v, []) if t.bits == width]


def layer_constants(index: int, c: LayerConstants) -> list[str]:
    """Known constants stored in one layer: aligned words of its bit vectors (a run of table entries, at least
    :data:`MIN_BYTE_RUN` for bytes), its significance word, and bias runs of 32-bit entries."""
    lines = []
    for name, bits in c.bits.items():
        for width in (64, 32, 8):
            for reading, values in window_values(bits[None], width):
                for first, last, table, i, j in _runs(_aligned_hits(values, width), width):
                    if width > 8 or j - i + 1 >= MIN_BYTE_RUN:
                        lines.append(f"layer {index}, {name} {first}..{last + width - 1}: "
                                     f"{entry_name(table, i, j, width)} ({width}-bit words, {reading})")
    if c.word and any(t.bits == c.word[1] for t, _ in lookup(c.word[1]).get(c.word[0], [])):
        names = [entry_name(t, i, i, c.word[1]) for t, i in lookup(c.word[1])[c.word[0]] if t.bits == c.word[1]]
        lines.append(f"layer {index}, {BY_SIGNIFICANCE}: " + ", ".join(names))
    if c.biases is not None:
        large = np.nonzero((c.biases > 0xFFFF) & (c.biases < 1 << 32))[0]
        hits = [(int(r), i, t) for r in large for t, i in lookup(32).get(int(c.biases[r]), []) if t.bits == 32]
        lines += [f"layer {index}, biases of rows {a}..{b}: {entry_name(table, i, j, 32)}"
                  for a, b, table, i, j in _runs(hits, 1)]
    return lines
