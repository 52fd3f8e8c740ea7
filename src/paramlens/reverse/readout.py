"""The output layer read backwards (canonical layers, :mod:`paramlens.reverse.canonical`): what it tests, and the
constant it compares with.

- AND of ``n`` rows (weights +1, bias ``-(n - 1)``) that copy (``+1 | 0``) or negate (``-1 | +1``) one source
  each: 1 iff the sources equal the constant bits (1 where copied, 0 where negated); an AND over other rows
  tests bits whose constant is folded into the gates before it (left for the check against known functions);
- "all ``n`` rows are 0" (one negative weight on each, bias in ``(0, |weight|]``) over pairs ``ReLU(D - c)``,
  ``ReLU(c - D)`` (opposite weights, opposite biases): 1 iff each ``D`` equals its ``c``, the negated bias; ``D``
  reads the layer before with weights up to ``2^(w - 1)``: a ``w``-bit value (a byte; a bit: weights up to 2);
- otherwise a threshold, a count, or an integer linear function.

Compared values are listed in the stored order of the rows that hold them (a shuffled layer shuffles them; see
:mod:`paramlens.reverse.reference` for putting them in a known function's order).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from paramlens.reverse.canonical import Canonical

Row = tuple[dict[int, int], int]  # ({column: weight}, bias)
MAX_OUTPUT_LINES = 16


@dataclass
class Comparison:
    """An equality test: ``constants`` (``bits`` wide each; None: folded into the gates, unknown) compared with
    values of layer ``layer``; value ``k`` is the pre-activation of stored row ``probe_rows[k]`` of layer
    ``probe_layer`` plus ``shift[k]`` (through a ReLU when ``relu``)."""

    layer: int
    bits: int
    constants: list[int] | None
    probe_layer: int
    probe_rows: list[int]
    shift: list[int]
    relu: bool

    def packed(self) -> bytes | None:
        """The constants as bytes in their order (bits: 8 per byte, lowest first); None for other widths."""
        if self.constants is None:
            return None
        if self.bits == 8:
            return bytes(self.constants)
        if self.bits == 1 and len(self.constants) % 8 == 0:
            c = self.constants
            return bytes(sum(c[8 * k + j] << j for j in range(8)) for k in range(len(c) // 8))
        return None


def rows_of(c: Canonical) -> list[Row]:
    """The rows of a canonical layer as ``({column: weight}, bias)``."""
    rows: list[Row] = [({}, int(b)) for b in c.b.tolist()]
    for i, j, w in zip(c.rows.tolist(), c.cols.tolist(), c.vals.tolist()):
        rows[i][0][j] = w
    return rows


def read_and(weights: dict[int, int], hidden: list[Row], hidden_c: Canonical, source: Canonical,
             index: int) -> Comparison:
    """An AND (output of layer ``index``) over copy/NOT rows of ``hidden``, each of one source in layer
    ``index - 2``: the bits they expect, in the stored order of the sources. Over other rows: the rows of
    layer ``index - 1`` that must all be 1, their constant unknown."""
    expect = {}
    for j in weights:
        (w_in, b_in) = hidden[j]
        if len(w_in) == 1 and (next(iter(w_in.values())), b_in) in ((1, 0), (-1, 1)):
            expect[int(source.raw[next(iter(w_in))])] = int(b_in == 0)
    if len(expect) != len(weights):
        rows = sorted(int(hidden_c.raw[j]) for j in weights)
        return Comparison(index - 1, 1, None, index - 1, rows, [0] * len(rows), True)
    order = sorted(expect)
    return Comparison(index - 2, 1, [expect[s] for s in order], index - 2, order, [0] * len(order), True)


def _width(top: int) -> int:
    """Bits of a value read with largest weight ``top``: ``2^(w - 1)`` for the top bit, and 2 at most for a lone
    bit (a bit written as a sum of threshold steps shares rows between steps: weights +-2)."""
    return 1 if top <= 2 else top.bit_length()


def read_pairs(weights: dict[int, int], hidden: list[Row], hidden_c: Canonical, index: int) -> Comparison | None:
    """"All zero" (output of layer ``index``) over pairs ``ReLU(D - c)``, ``ReLU(c - D)`` of ``hidden``."""
    key = {(tuple(sorted(w.items())), b): j for j, (w, b) in enumerate(hidden)}
    found = []
    for j in weights:
        w, b = hidden[j]
        partner = key.get((tuple(sorted((c, -v) for c, v in w.items())), -b))
        if partner is None or partner not in weights or not w:
            return None
        if b <= 0 and (b < 0 or j < partner):
            found.append((int(hidden_c.raw[j]), -b, _width(max(abs(v) for v in w.values()))))
    if 2 * len(found) != len(weights) or len({bits for *_, bits in found}) != 1:
        return None
    found.sort()
    return Comparison(index - 2, found[0][2], [c for _, c, _ in found], index - 1, [r for r, *_ in found],
                      [c for _, c, _ in found], False)


def describe_row(o: int, weights: dict[int, int], bias: int) -> str:
    """One output row that is no equality test, in words."""
    n, values = len(weights), set(weights.values())
    if values == {1} and bias == -(n - 1) and n > 1:
        return f"output {o}: AND of {n} activations (fires only when all {n} are 1)"
    if len(values) == 1 and (w := values.pop()) < 0 < bias <= -w:
        return f"output {o}: 1 iff all {n} activations are 0"
    if values == {1} and bias < 0:
        return f"output {o}: threshold, at least {1 - bias} of {n} activations"
    if values == {1} and bias == 0:
        return f"output {o}: count of {n} activations (their sum)"
    return f"output {o}: integer linear function of {n} activations, bias {bias}"


def read_output(layers: list[Canonical], index: int) -> tuple[list[str], Comparison | None]:
    """Lines describing the output layer ``index`` (``layers``: its canonical form and up to two before it),
    and the equality test it performs, if it is one."""
    last = rows_of(layers[-1])
    lines = [describe_row(o, w, b) for o, (w, b) in enumerate(last)]
    if len(lines) > MAX_OUTPUT_LINES:
        kinds = Counter(line.split(": ", 1)[1] for line in lines)
        lines = [f"{len(last)} outputs: " + "; ".join(f"{n} x {text}" for text, n in kinds.most_common(8))]
    if len(last) != 1 or len(layers) < 3:
        return lines, None
    hidden = rows_of(layers[-2])
    weights, _ = last[0]
    if lines[0].startswith("output 0: AND"):
        return lines, read_and(weights, hidden, layers[-2], layers[-3], index)
    if "are 0" in lines[0]:
        return lines, read_pairs(weights, hidden, layers[-2], index)
    return lines, None
