"""The repeating block of a layer chain, found with tolerance, and how its repeats differ.

- :func:`find_period`: the block length whose repeats agree at the most positions, where a repeat counts while
  at least half of its positions equal the next repeat's (per-step constants, rotations and round functions
  change a minority of positions); the shortest such length wins among those within 10 % of the best.
- :func:`varying_positions`: per block position, which fingerprints (:mod:`paramlens.reverse.fingerprint`) differ
  between repeats, and their pattern over the repeats (a cycle, a few runs such as rounds, or each its own).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from paramlens.reverse.fingerprint import Fingerprint

AGREEMENT = 0.5
NEAR_BEST = 0.9
MAX_RUNS = 6


@dataclass
class Period:
    """``period`` layers repeat ``n_repeats`` times from layer ``start`` (0 repeats: no repetition found)."""

    period: int
    start: int
    n_repeats: int

    def layers(self, position: int) -> list[int]:
        """The layer at block ``position`` in each repeat."""
        return [self.start + k * self.period + position for k in range(self.n_repeats)]


def _longest_chain(agree: np.ndarray, p: int) -> tuple[int, int, int]:
    """``(first layer, good blocks, agreeing positions)`` of the longest chain of consecutive blocks of ``p`` layers each agreeing
    with the block after it at ``AGREEMENT`` of positions or more (``agree[i]``: layer ``i`` equals ``i + p``);
    between chains as long, the one with the most agreeing positions (that fixes where blocks start)."""
    sums = np.concatenate([[0], np.cumsum(agree)])
    n_starts = len(agree) - p + 1
    if n_starts <= 0:
        return 0, 0, 0
    block = np.zeros(-(-n_starts // p) * p, dtype=np.int64)
    block[:n_starts] = sums[p:p + n_starts] - sums[:n_starts]
    block = block.reshape(-1, p)  # column: phase; row k: the block starting at phase + k p
    weight = p * len(block) + 1  # a longer chain always wins over more agreement
    score = np.zeros(p, dtype=np.int64)
    best, best_end = 0, (0, 0)
    for k, row in enumerate(block):
        score = np.where(row >= AGREEMENT * p, score + weight + row, 0)
        phase = int(score.argmax())
        if score[phase] > best:
            best, best_end = int(score[phase]), (k, phase)
    k, phase = best_end
    length = best // weight
    return phase + (k - length + 1) * p, length, best % weight


def find_period(keys: Sequence[Hashable], min_repeats: int = 2) -> Period:
    """The repeating block of ``keys`` (one per layer), with tolerance (see the module docstring)."""
    ids = {}
    codes = np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)
    n = len(codes)
    found: list[tuple[int, Period]] = []
    for p in range(1, n // min_repeats + 1):
        start, chain, agreeing = _longest_chain(codes[:-p] == codes[p:], p)
        if chain + 1 >= min_repeats:
            found.append((agreeing, Period(p, start, chain + 1)))
    if not found:
        return Period(0, 0, 0)
    best = max(agreeing for agreeing, _ in found)
    return next(period for agreeing, period in found if agreeing >= NEAR_BEST * best)


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    """``(first, last)`` repeat of each run of equal values."""
    out = []
    for k, v in enumerate(ids):
        if out and ids[out[-1][0]] == v:
            out[-1] = (out[-1][0], k)
        else:
            out.append((k, k))
    return out


def pattern(values: list) -> str:
    """How values vary over the repeats: ``"cycle of 4"``, ``"runs 0 | 1..31 | 32..47"``, ``"12 variants"``."""
    index = {v: i for i, v in enumerate(dict.fromkeys(values))}
    ids = [index[v] for v in values]
    n, codes = len(ids), np.array(ids)
    if len(set(ids)) == n:
        return "a different one at every repeat"
    cycle = next((c for c in range(2, n // 2 + 1) if np.array_equal(codes[c:], codes[:-c]) and len(set(ids[:c])) > 1),
                 None)
    if cycle:
        return f"cycle of {cycle} repeats"
    runs = _runs(ids)
    if len(runs) <= MAX_RUNS:
        return "runs " + " | ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)
    return f"{len(set(ids))} variants"


FIELDS = (("widths", "widths"), ("loose", "row-kind sets"), ("kinds", "row kinds"), ("weights", "weights"),
          ("wiring", "wiring"), ("biases", "biases"))


@dataclass
class VaryingPosition:
    """Block position ``position`` (its ``layers``, one per repeat) whose fingerprints differ between repeats:
    ``varies`` names them (widths, row-kind sets, row kinds, weights, wiring, biases) with their pattern;
    ``constants``: known constants read there, one entry per repeat."""

    position: int
    layers: list[int]
    varies: dict[str, str]
    constants: list[str] = field(default_factory=list)


def _width_pattern(outs: list[int]) -> str:
    counts = {w: outs.count(w) for w in dict.fromkeys(outs)}
    return ", ".join(f"{w} x{c}" for w, c in list(counts.items())[:6]) + "; " + pattern(outs)


def varying_positions(prints: Sequence[Fingerprint], period: Period) -> list[VaryingPosition]:
    """The block positions whose fingerprints differ between repeats."""
    out = []
    for pos in range(period.period):
        idx = [i for i in period.layers(pos) if i < len(prints)]
        varies = {}
        for attr, name in FIELDS:
            values = [getattr(prints[i], attr) for i in idx]
            values = [w[0] for w in values] if attr == "widths" else values  # the widths it writes
            if len(set(values)) > 1:
                varies[name] = _width_pattern(values) if attr == "widths" else pattern(values)
        if varies:
            out.append(VaryingPosition(pos, idx, varies))
    return out
