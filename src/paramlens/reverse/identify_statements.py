"""Statements: the matched units of one layer grouped by what they carry, put in words and checked on the random
inputs, and runs of consecutive layers that carry the same thing merged into one statement."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np

from paramlens.reverse.identify_match import Match
from paramlens.reverse.identify_order import order_of, ranges

MIN_GROUP = 8  # matches that hold everywhere a near one must join


@dataclasses.dataclass
class Statement:
    """A claim about units of layers ``first..last`` (``units``: those of layer ``first``), checked on ``samples``
    random inputs, ``confirmed`` of which agree; ``counterexample``: the first that does not (``layer``, ``input``
    hex, ``unit``, ``what`` it should be, ``expected``, ``got``), or None.

    ``kind`` is "units" (``unit = <claim>``) or "equality" (``unit <claim>``: "is 1 iff ... equals ..."). ``entry``,
    ``view`` and ``positions`` name what the units carry; ``constant``: the offsets ``c`` or the compared value (hex
    where they are bytes); ``sizes``: the fewest and most units in one layer; ``output``: ``last`` is the output
    layer; ``met``: inputs that met an equality.
    """

    kind: str
    first: int
    last: int
    units: list[int]
    claim: str
    order: str
    sizes: list[int]
    duplicated: int
    entry: str
    view: str
    positions: list[int]
    constant: str | None
    samples: int
    confirmed: int
    counterexample: dict | None
    output: bool
    met: int = 0

    def line(self) -> str:
        """One line: where, which units, the claim, and how the random inputs bear it out."""
        where = f"layer {self.first}" if self.first == self.last else f"layers {self.first}..{self.last}"
        where = f"output {where}" if self.output and self.first == self.last else where
        who = f"unit{'s' if len(self.units) > 1 else ''} {ranges(self.units)}"
        if self.kind == "equality":
            return f"{where}: {who} {self.claim}; {self._check()}"
        who = who if self.first == self.last else "units"
        count = f"{self.sizes[0]}" if self.sizes[0] == self.sizes[1] else f"{self.sizes[0]}..{self.sizes[1]}"
        count += " unit" + ("s" if self.sizes[1] > 1 else "") + (" per layer" if self.first != self.last else "")
        count += f", {self.duplicated} duplicated" if self.duplicated else ""
        return f"{where}: {who} = {self.claim}{', ' + self.order if self.order else ''} ({count}); {self._check()}"

    def _check(self) -> str:
        some = " at least" if self.first < self.last and self.confirmed < self.samples else ""
        text = f"confirmed on{some} {self.confirmed}/{self.samples} inputs"
        text += " in each layer" if self.first < self.last else ""
        if self.kind == "equality" and not self.met:
            text += " (none meets it: they check the 0 side; the 1 side is read from the weights)"
        elif self.kind == "equality":
            text += f" ({self.met} meet{'s' if self.met == 1 else ''} it)"
        return text + (f"; first counterexample: {self.counterexample_text()}" if self.counterexample else "")

    def counterexample_text(self) -> str:
        """The first counterexample in words ("" when there is none)."""
        cex = self.counterexample
        if not cex:
            return ""
        return (f"layer {cex['layer']}, input {cex['input']}: unit {cex['unit']} should be {cex['what']} = "
                f"{cex['expected']}, got {cex['got']}")


def checked(layer: int, units: list[int], what: Callable[[int], str], expected: np.ndarray, got: np.ndarray,
            inputs: list[str]) -> tuple[int, dict | None]:
    """How many inputs (rows of ``expected`` / ``got``, ``(samples, units)``) agree on every unit, and the first
    counterexample (``what(i)``: what unit ``i`` should be)."""
    wrong = expected != got
    bad = np.flatnonzero(wrong.any(1))
    if not len(bad):
        return len(inputs), None
    s = int(bad[0])
    i = int(np.flatnonzero(wrong[s])[0])
    return len(inputs) - len(bad), {"layer": layer, "input": inputs[s], "unit": units[i], "what": what(i),
                                    "expected": _number(expected[s, i]), "got": _number(got[s, i])}


def _number(x: float) -> int | float:
    """An activation for JSON: an int when it is whole."""
    return int(x) if float(x).is_integer() else float(x)


def _key(m: Match) -> tuple:
    col = m.column
    return col.entry, col.spelling, col.view, col.test, m.is_bit, m.sign


def accepted(matches: list[Match], samples: int) -> list[Match]:
    """The matches that hold on every input, and those (bits, bytes or values, not comparisons) that fail on a few
    where they complete a group of at least :data:`MIN_GROUP` that hold (same value, same form) at a position it
    lacks: a broken unit among many that hold is reported with its counterexample, while a unit merely correlated
    with some value is not."""
    exact = [m for m in matches if m.agreed == samples]
    sizes = Counter(_key(m) for m in exact)
    covered = {(_key(m), m.column.position, m.column.operand) for m in exact}
    near = [m for m in matches if m.agreed < samples and not m.column.test and sizes[_key(m)] >= MIN_GROUP
            and (_key(m), m.column.position, m.column.operand) not in covered]
    return sorted(exact + near, key=lambda m: m.unit)


def layer_statements(layer: int, matches: list[Match], inputs: list[str], output: bool) -> list[Statement]:
    """The statements about one layer's (accepted) matches (``inputs``: the random inputs in hex); units
    ``relu(±(v - c))`` that are 0 on every input are left to the equality tests that read them."""
    groups: dict[tuple, list[Match]] = defaultdict(list)
    for m in matches:  # units that fail on some inputs get statements of their own
        if m.is_bit or m.got.any():  # relu(v - c) that is 0 on every input says nothing worth a line
            groups[(*_key(m), m.agreed == len(inputs))].append(m)
    found = []
    for group in groups.values():
        for part in _split_by_offset(group):
            part.sort(key=lambda m: (m.column.position, m.column.operand, m.c, m.unit))
            found.append(_statement(layer, part, inputs, output))
    return sorted(found, key=lambda s: (s.entry != "input", s.claim))


def _split_by_offset(group: list[Match]) -> list[list[Match]]:
    """One group when each position has one offset ``c`` (``relu(D_k - c_k)``), else one per offset or one per
    position, whichever makes fewer."""
    offsets: dict[int, set[int]] = defaultdict(set)
    for m in group:
        offsets[m.column.position].add(m.c)
    if all(len(cs) == 1 for cs in offsets.values()):
        return [group]
    by_c: dict[int, list[Match]] = defaultdict(list)
    by_position: dict[int, list[Match]] = defaultdict(list)
    for m in group:
        by_c[m.c].append(m)
        by_position[m.column.position].append(m)
    return list(min(by_c, by_position, key=len).values())


def _statement(layer: int, part: list[Match], inputs: list[str], output: bool) -> Statement:
    col = part[0].column
    units = [m.unit for m in part]
    positions = sorted({m.column.position for m in part})
    claim, constant = _claim(part, positions)
    order = order_of([(m.unit, m.column.position) for m in part], col.view) if not col.test else ""
    confirmed, cex = len(inputs), None
    if any(m.agreed < len(inputs) for m in part):
        confirmed, cex = checked(layer, units, lambda i: part[i].claim(), np.stack([m.expected() for m in part], 1),
                                 np.stack([m.got for m in part], 1), inputs)
    duplicated = len(units) - len({(m.column.position, m.column.operand, m.c) for m in part})
    return Statement(kind="units", first=layer, last=layer, units=units, claim=claim, order=order,
                     sizes=[len(units)] * 2, duplicated=duplicated, entry=col.entry, view=col.view, positions=positions,
                     constant=constant, samples=len(inputs), confirmed=confirmed, counterexample=cex, output=output)


def _claim(part: list[Match], positions: list[int]) -> tuple[str, str | None]:
    """What the units carry, in words, and the offsets (hex when they are bytes, one per position)."""
    m, col = part[0], part[0].column
    if col.test:
        claims = list(dict.fromkeys(x.claim() for x in part))
        return "; ".join(claims[:4]) + (f"; ... ({len(claims)} comparisons)" if len(claims) > 4 else ""), None
    view = col.view if len(positions) > 1 else col.view[:-1]
    what = col.subject() if col.view == "value" else f"{col.subject()} {view} {ranges(positions)}"
    if m.is_bit:
        return ("NOT " if m.sign < 0 else "") + what, None
    cs = sorted({x.c for x in part})
    if len(cs) == 1:
        c = cs[0]
        if c == 0 and m.sign > 0:
            return what, None
        shifted = f"{what} - {c}" if c > 0 else f"{what} + {-c}"
        return (f"relu({shifted})" if m.sign > 0 else f"relu({c} - {what})"), str(c)
    if len(positions) > 1:  # one offset per position, in position order
        offsets = list({x.column.position: x.c for x in part}.values())
        constant = bytes(offsets).hex() if all(0 <= c <= 255 for c in offsets) else ", ".join(map(str, offsets))
    else:
        constant = ranges(cs)
    return (f"relu({what} - c)" if m.sign > 0 else f"relu(c - {what})") + f", c = {constant}", constant


def merge_runs(statements: list[Statement]) -> list[Statement]:
    """Statements about units that say the same of consecutive layers, merged (in order of their first layer);
    the order is kept where every layer of the run has the same."""
    merged: list[Statement] = []
    open_runs: dict[tuple[str, str], Statement] = {}
    for s in sorted(statements, key=lambda s: s.first):
        run = open_runs.get((s.kind, s.claim))
        if s.kind == "units" and run is not None and run.last == s.first - 1:
            run.last, run.output = s.first, s.output
            run.order = run.order if run.order == s.order else "order varies by layer"
            run.sizes = [min(run.sizes[0], s.sizes[0]), max(run.sizes[1], s.sizes[1])]
            run.duplicated = max(run.duplicated, s.duplicated)
            run.confirmed = min(run.confirmed, s.confirmed)
            run.counterexample = run.counterexample or s.counterexample
            continue
        open_runs[(s.kind, s.claim)] = s
        merged.append(s)
    return merged
