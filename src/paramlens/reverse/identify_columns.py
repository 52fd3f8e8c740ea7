"""The catalogue evaluated on the random inputs: every entry's bits, bytes, value and comparisons as columns, one
value per input.

Bit columns (0/1) are compared with units' activations, integer columns with their pre-activations. Columns that
carry little information are left out (bit columns whose rarer value occurs on fewer than ``min_minority`` inputs,
integer columns with fewer than 3 distinct values), and of columns that are equal (bits: or negations of each
other; integers: up to a shift or a sign) the first one named is kept: entries in catalogue order; within one, its
bits, then its value and bytes, then comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paramlens.errors import ParamLensError
from paramlens.reverse.catalogue import Catalogue, Entry

MAX_BYTES = 1024  # longest entry output
MAX_COMPARED = 64  # thresholds and pairwise comparisons for outputs up to this many bytes
EXACT = 2**52  # integer columns beyond this are not exact in float64 activations


@dataclass(frozen=True)
class Column:
    """One function of the input: ``view`` ("bits", "bytes" or "value") of ``entry`` at ``position`` (bit
    ``8 k + j`` = bit ``j`` of byte ``k``; byte ``k``; 0 for the value); with ``test`` ">=", ``[that >= operand]``,
    with "<", ``[byte position < byte operand]``. ``spelling``: how bit inputs spell bytes ("" for byte inputs)."""

    entry: str
    spelling: str
    view: str
    position: int
    test: str = ""
    operand: int = 0

    def subject(self) -> str:
        """``md5(input)``, ``input``, with how bit inputs were read as bytes where that matters."""
        if self.entry == "input":
            return f"input (as bytes, {self.spelling})" if self.spelling and self.view != "bits" else "input"
        return f"{self.entry}(input as bytes, {self.spelling})" if self.spelling else f"{self.entry}(input)"

    def describe(self, negated: bool = False) -> str:
        """This one column (or its negation) in words: ``md5(input) bit 5``, ``[input byte 3 >= 17]``."""
        base = self.subject() if self.view == "value" else f"{self.subject()} {self.view[:-1]} {self.position}"
        if self.test == ">=":
            return f"[{base} {'<' if negated else '>='} {self.operand}]"
        if self.test == "<":
            return f"[{base} {'>=' if negated else '<'} byte {self.operand}]"
        return f"NOT {base}" if negated else base


@dataclass
class Columns:
    """``bits`` ``(samples, m)`` uint8 and ``ints`` ``(samples, k)`` int64 with their columns; ``sizes``: how many
    positions each ``(entry, spelling, view)`` has."""

    bits: np.ndarray
    bit_columns: list[Column]
    ints: np.ndarray
    int_columns: list[Column]
    sizes: dict[tuple[str, str, str], int]


def evaluate(catalogue: Catalogue, messages: dict[str, list[bytes]], min_minority: int) -> Columns:
    """Every entry of ``catalogue`` on every message (per spelling), as columns."""
    bits: list[tuple[np.ndarray, list[Column]]] = []
    ints: list[tuple[np.ndarray, list[Column]]] = []
    sizes: dict[tuple[str, str, str], int] = {}
    for entry in catalogue:
        for spelling, group in messages.items():
            codes, width, value = _outputs(entry, group)
            name = (entry.name, spelling)
            unpacked = np.unpackbits(codes, axis=1, bitorder="little")[:, :width]
            bits.append((unpacked, [Column(*name, "bits", p) for p in range(width)]))
            if value is not None:
                ints.append((value[:, None], [Column(*name, "value", 0)]))
                sizes[(*name, "value")] = 1
                bits.append(_thresholds(value, Column(*name, "value", 0)))
            ints.append((codes.astype(np.int64), [Column(*name, "bytes", k) for k in range(codes.shape[1])]))
            sizes[(*name, "bits")], sizes[(*name, "bytes")] = width, codes.shape[1]
            if codes.shape[1] <= MAX_COMPARED:
                bits += [_thresholds(codes[:, k].astype(np.int64), Column(*name, "bytes", k))
                         for k in range(codes.shape[1])]
                if entry.name == "input":
                    bits.append(_pairs(codes, name))
    bit_values, bit_names = _distinct_bits(bits, min_minority)
    int_values, int_names = _distinct_ints(ints)
    return Columns(bit_values, bit_names, int_values, int_names, sizes)


def _outputs(entry: Entry, messages: list[bytes]) -> tuple[np.ndarray, int, np.ndarray | None]:
    """``entry`` on each message: its bytes ``(samples, L)`` uint8 (an int: little-endian), how many of their bits
    it has, and (ints within float64's exact range) the values ``(samples,)`` int64."""
    outs = []
    for m in messages:
        try:
            outs.append(entry.fn(m))
        except Exception as e:  # noqa: BLE001 - a user's function: whatever it raises is reported as one line
            raise ParamLensError(f"catalogue entry '{entry.name}' failed on input {m.hex()}: "
                                 f"{type(e).__name__}: {e}") from None
    if all(isinstance(o, (bytes, bytearray)) for o in outs):
        lengths = {len(o) for o in outs}
        if len(lengths) > 1 or not 1 <= max(lengths) <= MAX_BYTES:
            raise ParamLensError(f"catalogue entry '{entry.name}' must return bytes of one length (1..{MAX_BYTES}); "
                                 f"got lengths {sorted(lengths)[:4]}")
        codes = np.frombuffer(b"".join(outs), dtype=np.uint8).reshape(len(outs), -1)
        return codes, 8 * codes.shape[1], None
    if all(isinstance(o, int) and 0 <= o for o in outs):
        width = max(1, max(int(o).bit_length() for o in outs))
        if width > 8 * MAX_BYTES:
            raise ParamLensError(f"catalogue entry '{entry.name}' returned a {width}-bit int; at most {8 * MAX_BYTES}")
        size = -(-width // 8)
        codes = np.frombuffer(b"".join(int(o).to_bytes(size, "little") for o in outs), dtype=np.uint8)
        value = np.array(outs, dtype=np.int64) if max(outs) < EXACT else None
        return codes.reshape(len(outs), size), width, value
    kinds = sorted({type(o).__name__ if not isinstance(o, int) or o >= 0 else "negative int" for o in outs})
    raise ParamLensError(f"catalogue entry '{entry.name}' must return bytes of one length or a non-negative int on "
                         f"every input; got {', '.join(kinds)}")


def _thresholds(v: np.ndarray, column: Column) -> tuple[np.ndarray, list[Column]]:
    """``[v >= c]`` for every value ``c`` of ``v`` whose predecessor ``c - 1`` occurs too (elsewhere the inputs
    cannot tell ``c`` from the values between it and the next smaller one)."""
    seen = np.unique(v)
    cuts = seen[1:][np.diff(seen) == 1]
    names = [Column(column.entry, column.spelling, column.view, column.position, ">=", int(c)) for c in cuts]
    return (v[:, None] >= cuts[None, :]).astype(np.uint8), names


def _pairs(codes: np.ndarray, name: tuple[str, str]) -> tuple[np.ndarray, list[Column]]:
    """``[byte i < byte j]`` for every ordered pair ``i != j`` that is equal on some input (elsewhere the inputs
    cannot tell ``<`` from ``<=``)."""
    n = codes.shape[1]
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and (codes[:, i] == codes[:, j]).any()]
    values = np.stack([codes[:, i] < codes[:, j] for i, j in pairs], axis=1) if pairs else codes[:, :0]
    return values.astype(np.uint8), [Column(*name, "bytes", i, "<", j) for i, j in pairs]


def _distinct_bits(parts: list[tuple[np.ndarray, list[Column]]], min_minority: int) -> tuple[np.ndarray, list]:
    """The informative bit columns, the first of each set that are equal or negations of each other."""
    values = np.concatenate([v for v, _ in parts], axis=1)
    names = [c for _, cs in parts for c in cs]
    ones = values.sum(0, dtype=np.int64)
    informative = np.minimum(ones, values.shape[0] - ones) >= min_minority
    canonical = values ^ values[:1]  # the same column for a bit and its negation
    keys = np.packbits(canonical, axis=0).T
    return _first_of_each(values, names, informative, keys)


def _distinct_ints(parts: list[tuple[np.ndarray, list[Column]]]) -> tuple[np.ndarray, list]:
    """The integer columns with 3 or more values, the first of each set equal up to a shift and a sign."""
    values = np.concatenate([v for v, _ in parts], axis=1)
    names = [c for _, cs in parts for c in cs]
    informative = (np.diff(np.sort(values, axis=0), axis=0) != 0).sum(0) >= 2
    shifted = values - values[:1]
    first = np.argmax(shifted != 0, axis=0)
    sign = np.sign(shifted[first, np.arange(values.shape[1])])
    return _first_of_each(values, names, informative, (shifted * np.where(sign < 0, -1, 1)).T)


def _first_of_each(values: np.ndarray, names: list[Column], keep: np.ndarray, keys: np.ndarray) -> tuple:
    """The columns where ``keep``, dropping any whose ``keys`` row repeats an earlier one."""
    seen, chosen = set(), []
    for i in np.flatnonzero(keep):
        key = keys[i].tobytes()
        if key not in seen:
            seen.add(key)
            chosen.append(i)
    return values[:, chosen], [names[i] for i in chosen]
