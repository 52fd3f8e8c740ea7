"""How units are laid out: the encoding (bit order within bytes, byte order within 4-byte words) under which the
units of a layer carry a value's positions in increasing order, and lists of numbers written as ranges."""

from __future__ import annotations

from itertools import pairwise

WORD = 4  # bytes per word for the byte-order encodings
MIN_POSITIONS = 5  # fewer positions fit some order by chance too often (1 in 60 at 5) to claim one
ENCODINGS = {"bits": [(False, False), (True, False), (False, True), (True, True)],  # (highest bit first,
             "bytes": [(False, False), (False, True)]}                                # bytes reversed in words)


def _index(position: int, view: str, high_first: bool, reversed_words: bool) -> int:
    """Where ``position`` (bit ``8 k + j`` or byte ``k``) falls in the encoding's order."""
    k, j = divmod(position, 8) if view == "bits" else (position, 0)
    if reversed_words:
        k = WORD * (k // WORD) + WORD - 1 - k % WORD
    return 8 * k + (7 - j if high_first else j) if view == "bits" else k


def order_of(pairs: list[tuple[int, int]], view: str) -> str:
    """``(unit, position)`` pairs -> the encoding under which increasing units carry increasing positions
    ("lowest bit first", "highest bit first", "bytes reversed within 4-byte words", "in order"), "in no fixed
    order" when none fits, "" when the positions cannot tell (fewer than :data:`MIN_POSITIONS`, or a value)."""
    first: dict[int, int] = {}
    for unit, position in pairs:
        first[position] = min(unit, first.get(position, unit))
    if len(first) < MIN_POSITIONS or view not in ENCODINGS:
        return ""
    by_unit = sorted(first, key=first.get)
    fits = [e for e in ENCODINGS[view] if all(_index(a, view, *e) < _index(b, view, *e)
                                              for a, b in pairwise(by_unit))]
    if not fits:
        return "in no fixed order"
    parts = []
    if view == "bits" and len({high for high, _ in fits}) == 1:
        parts.append("highest bit first" if fits[0][0] else "lowest bit first")
    if len({rev for _, rev in fits}) == 1:
        if fits[0][1]:
            parts.append(f"bytes reversed within {WORD}-byte words")
        elif view == "bytes":
            parts.append("in order")
    return ", ".join(parts)


def ranges(values: list[int], limit: int = 8) -> str:
    """``[0, 1, 2, 7, 9, 10]`` -> ``0..2, 7, 9..10`` (runs in the given order), cut after ``limit`` pieces."""
    pieces: list[list[int]] = []
    for v in values:
        if pieces and v == pieces[-1][1] + 1:
            pieces[-1][1] = v
        else:
            pieces.append([v, v])
    texts = [str(a) if a == b else f"{a}..{b}" for a, b in pieces]
    if len(texts) > limit:
        return ", ".join(texts[:limit]) + f", ... ({len(values)} in all)"
    return ", ".join(texts)
