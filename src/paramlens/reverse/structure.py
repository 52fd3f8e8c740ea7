"""Repeating structure in a layer chain, and what its last layers test.

- :func:`find_period`: the shortest period of the per-layer keys (sizes, value kind, row types) that
  covers the most layers, with where the repeats start and how many there are.
- :func:`differing_positions`: inside a block, the positions whose biases change from repeat to repeat
  (round constants live there), and per repeat the constants they hold.
- :func:`read_output`: the last layer read backwards (an AND of n activations against constants stored in
  the biases of the layer before, a threshold, a count, or a linear readout).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from paramlens.reverse.constants import describe_value, match_sequence
from paramlens.reverse.layer_stats import LayerStats


@dataclass
class Period:
    """``period`` layers repeat ``n_repeats`` times from layer ``start`` (0 repeats: no repetition found)."""

    period: int
    start: int
    n_repeats: int


def find_period(keys: Sequence[Hashable], min_repeats: int = 2) -> Period:
    """Smallest period whose longest run of ``keys[i] == keys[i + p]`` covers the most layers."""
    n = len(keys)
    best = Period(0, 0, 0)
    best_cover = 0
    for p in range(1, n // min_repeats + 1):
        run, run_start, longest, longest_start = 0, 0, 0, 0
        for i in range(n - p):
            if keys[i] == keys[i + p]:
                if run == 0:
                    run_start = i
                run += 1
                if run > longest:
                    longest, longest_start = run, run_start
            else:
                run = 0
        repeats = (longest + p) // p
        cover = repeats * p
        if repeats >= min_repeats and cover > best_cover:
            best, best_cover = Period(p, longest_start, repeats), cover
    return best


@dataclass
class DifferingPosition:
    """Block position ``position`` (layers ``layers``, one per repeat) whose biases change between repeats;
    ``constants``: windows of its copy/NOT rows whose bias bits, read per repeat, match known constants."""

    position: int
    layers: list[int]
    constants: list[str]


def differing_positions(stats: Sequence[LayerStats], period: Period) -> list[DifferingPosition]:
    out = []
    for pos in range(period.period):
        idx = [period.start + r * period.period + pos for r in range(period.n_repeats)]
        idx = [i for i in idx if i < len(stats)]
        if len({stats[i].bias_hash for i in idx}) > 1:  # same structure (period key), other constants
            out.append(DifferingPosition(pos, idx, _repeat_constants([stats[i].constant_bits for i in idx])))
    return out


def _repeat_constants(bits: list[list[int]]) -> list[str]:
    """Slide 8/16/32-bit windows over each repeat's copy/NOT bias bits (row order = bit order, low bit
    first) and keep windows whose values across repeats form a known sequence."""
    n = min(len(b) for b in bits)
    found = []
    for width in (32, 16, 8):
        for start in range(n - width + 1):
            values = [sum(bit << k for k, bit in enumerate(b[start:start + width])) for b in bits]
            for hit in match_sequence(values, width):
                found.append(f"rows {start}..{start + width - 1}: {hit}")
        if found:
            break
    return found


@dataclass
class OutputReading:
    """What the last layer computes, in words, and the constant it compares with (if any)."""

    description: list[str]
    constant_bits: list[int]
    constant_hex: str | None
    constant_matches: list[str]


Row = tuple[dict[int, int], int]


def read_output(last: LayerStats, last_rows: list[Row], before_row: Callable[[int], Row] | None) -> OutputReading:
    """Read the output layer backwards.

    Args:
        last: statistics of the output layer.
        last_rows: its rows as ``({input index: weight}, bias)`` (integer layers).
        before_row: row ``j`` of the layer before, in the same form.
    """
    lines: list[str] = []
    bits: list[int] = []
    if not last.integer:
        return OutputReading([f"linear readout of {last.shape[1]} activations into {last.shape[0]} outputs "
                              f"({last.problem or 'real-valued weights'})"], [], None, [])
    for o, (weights, bias) in enumerate(last_rows):
        n = len(weights)
        positive = all(w == 1 for w in weights.values())
        if positive and bias == -(n - 1) and n > 1:
            lines.append(f"output {o}: AND of {n} activations (fires only when all {n} are 1)")
            if before_row is not None:
                expect = {}
                for j in weights:
                    w_in, b_in = before_row(j)
                    if len(w_in) == 1:
                        (src, w), = w_in.items()
                        if (w, b_in) == (1, 0):
                            expect[src] = 1
                        elif (w, b_in) == (-1, 1):
                            expect[src] = 0
                if len(expect) == n:
                    bits = [expect[s] for s in sorted(expect)]
                    lines.append(f"  = equality test: each of {n} activations two layers back is compared with a "
                                 "constant bit stored in the biases of the layer before (+1|0 rows expect 1, "
                                 "-1|+1 rows expect 0)")
        elif positive and bias < 0:
            lines.append(f"output {o}: threshold, at least {1 - bias} of {n} activations")
        elif positive and bias == 0:
            lines.append(f"output {o}: count of {n} activations (their sum)")
        else:
            lines.append(f"output {o}: integer linear function of {n} activations, bias {bias}")
    if not bits:
        return OutputReading(lines, [], None, [])
    value = sum(bit << k for k, bit in enumerate(bits))
    width = len(bits)
    matches = describe_value(value, width) + (match_sequence([value], 32) if width == 32 else [])
    hex_value = f"0x{value:0{(width + 3) // 4}x}"
    lines.append(f"  constant (low bit = lowest activation index): {hex_value}")
    return OutputReading(lines, bits, hex_value, matches)
