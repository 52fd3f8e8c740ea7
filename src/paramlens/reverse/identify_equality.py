"""Units that test a function of the input for equality with a constant, read from the weights.

A unit ``relu(b + sum_u w_u a_u)`` over matched units ``a_u = relu(±(v_k - c_k))`` of the layer before (a digest
byte ``v_k`` and a constant ``c_k``; every other unit it reads constant on the random inputs, folded into ``b``) is

- a gap test when every ``w_u <= -b < 0``: each ``a_u`` is 0 when ``v_k = c_k`` and at least 1 otherwise, so the
  unit is ``b`` iff every ``v_k = c_k`` (both sides of each ``v_k`` covered, or ``c_k`` at the end of its range);
- an AND test when the ``a_u`` are bits or negated bits and every ``w_u >= P = b + sum w_u > 0``: ``P`` iff all of
  them are 1.

Such a unit is an *indicator*: ``P`` when the equality holds, 0 otherwise. Rows that read only indicators of one
test (and constants) with ``relu(b') = 0 < relu(b' + sum w P)`` carry it to the next layer. Tests over less than a
byte's worth of positions (an AND of two bits) are left out. The random inputs almost never meet a hash equality,
so for those the samples check the 0 side; the 1 side follows from the weights.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from paramlens.reverse.identify_columns import Column
from paramlens.reverse.identify_match import Match
from paramlens.reverse.identify_order import ranges
from paramlens.reverse.identify_statements import Statement, checked

BOUNDS = {"bits": (0, 1), "bytes": (0, 255), "value": (0, None)}
MIN_BITS = 8  # smallest test reported: a byte's worth of positions


@dataclass
class Indicator:
    """A unit that is ``value`` where ``target`` holds and 0 elsewhere; ``met``: the inputs where it holds."""

    target: str
    value: float
    origin: int
    column: Column
    positions: list[int]
    constant: str
    met: np.ndarray


class Equalities:
    """Equality tests found layer by layer; holds the indicators of the newest layer."""

    def __init__(self, sizes: dict[tuple[str, str, str], int], inputs: list[str]):
        self.sizes, self.inputs = sizes, inputs
        self.indicators: dict[int, Indicator] = {}

    def step(self, layer: int, W: Tensor, b: Tensor, before: np.ndarray, matches: list[Match], post: np.ndarray,
             output: bool) -> list[Statement]:
        """Read layer ``layer`` (weight ``W`` ``(out, in)``, bias ``b``, activations ``post`` ``(samples, out)``)
        over the layer before (``before`` ``(samples, in)`` and its ``matches``); the statements it makes."""
        found = {m.unit: m for m in matches if not m.column.test}
        marked, matched = np.zeros((2, before.shape[1]), dtype=bool)
        marked[list(self.indicators)] = True
        matched[list(found)] = True
        fold = np.all(before == before[:1], axis=0) & ~marked & ~matched  # constants, read as part of the bias
        nz = (W != 0).numpy()
        weights, bias = W.double().numpy(), b.double().numpy()
        new: dict[int, Indicator] = {}
        for o in np.flatnonzero(~nz[:, ~(marked | fold)].any(1) & nz[:, marked].any(1)):
            carried = self._carry(weights[o], bias[o], before, fold)
            if carried is not None:
                new[int(o)] = carried
        tests = {}
        for o in np.flatnonzero(~nz[:, ~(matched | fold)].any(1) & (nz[:, matched].sum(1) >= 2)):
            test = _test(np.where(fold, 0, weights[o]), bias[o] + weights[o][fold] @ before[0, fold], found, layer,
                         self.sizes)
            if test is not None:
                tests[int(o)] = test
        new.update(tests)
        self.indicators = new
        shown = new if output else tests
        return self._statements(layer, shown, post, output)

    def _carry(self, w: np.ndarray, b: float, before: np.ndarray, fold: np.ndarray) -> Indicator | None:
        """The indicator a row over indicators of one test (and constants) carries, or None."""
        read = [self.indicators[u] for u in np.flatnonzero(w) if u in self.indicators]
        if len({i.target for i in read}) != 1:
            return None
        rest = b + w[fold] @ before[0, fold]
        value = rest + sum(w[u] * i.value for u, i in self.indicators.items() if w[u])
        if rest > 0 or value <= 0:
            return None
        first = read[0]
        return Indicator(first.target, float(value), first.origin, first.column, first.positions, first.constant,
                         first.met)

    def _statements(self, layer: int, shown: dict[int, Indicator], post: np.ndarray, output: bool) -> list[Statement]:
        groups: dict[tuple[str, float, int], list[int]] = defaultdict(list)
        for u, ind in shown.items():
            groups[(ind.target, ind.value, ind.origin)].append(u)
        statements = []
        for (target, value, origin), units in groups.items():
            ind = shown[units[0]]
            claim = (f"{'is' if len(units) == 1 else 'are each'} {value:g} iff {target}"
                     + (f" (carried from layer {origin})" if origin != layer else ""))
            expected = np.repeat((value * ind.met)[:, None], len(units), 1)
            what = f"{value:g} * [{target}]"
            confirmed, cex = checked(layer, units, lambda i, what=what: what, expected, post[:, units], self.inputs)
            statements.append(Statement(
                kind="equality", first=layer, last=layer, units=units, claim=claim, order="", sizes=[len(units)] * 2,
                duplicated=0, entry=ind.column.entry, view=ind.column.view, positions=ind.positions,
                constant=ind.constant, samples=len(self.inputs), confirmed=confirmed, counterexample=cex,
                output=output, met=int(ind.met.sum())))
        return statements


def _sides(w: np.ndarray, found: dict[int, Match]) -> dict[tuple[int, int], list] | None:
    """Per ``(position, sign)`` of the matched units a row reads: ``[c, summed weight, values]``; None when they
    are of different values or one side has two offsets."""
    sides: dict[tuple[int, int], list] = {}
    first = None
    for u in np.flatnonzero(w):
        m = found[int(u)]
        key = (m.column.entry, m.column.spelling, m.column.view, m.is_bit)
        if first not in (None, key):
            return None
        first = key
        side = sides.setdefault((m.column.position, m.sign), [m.c, 0.0, m.values])
        if side[0] != m.c:
            return None
        side[1] += w[u]
    return sides


def _test(w: np.ndarray, bias: float, found: dict[int, Match], layer: int,
          sizes: dict[tuple[str, str, str], int]) -> Indicator | None:
    """The equality a row tests (``w``: its weights on matched units; ``bias``: with the constants it reads folded
    in), or None."""
    sides = _sides(w, found)
    if sides is None:
        return None
    column = found[int(np.flatnonzero(w)[0])].column
    weights = [s[1] for s in sides.values()]
    targets: dict[int, int] = {}
    if all(x < 0 for x in weights) and bias > 0 and all(x <= -bias for x in weights):
        value = bias
        low, high = BOUNDS[column.view]
        for (p, sign), (c, _, _) in sides.items():
            if targets.setdefault(p, c) != c:
                return None
        for p, c in targets.items():
            if not ((p, 1) in sides or c <= low) or not ((p, -1) in sides or (high is not None and c >= high)):
                return None
    elif column.view == "bits" and all(x > 0 for x in weights) and 0 < bias + sum(weights) <= min(weights):
        value = bias + sum(weights)
        for (p, sign) in sides:
            if targets.setdefault(p, int(sign > 0)) != int(sign > 0):
                return None
    else:
        return None
    positions = sorted(targets)
    if len(positions) * (1 if column.view == "bits" else 8) < MIN_BITS:
        return None
    values = {p: v for (p, _), (_, _, v) in sides.items()}
    met = np.all([values[p] == targets[p] for p in positions], axis=0)
    target, constant = _target(column, positions, [targets[p] for p in positions], sizes)
    return Indicator(target, float(value), layer, column, positions, constant, met)


def _target(column: Column, positions: list[int], cs: list[int], sizes: dict) -> tuple[str, str]:
    """``md5(input) equals <hex>`` (or which positions equal what) and the constant as text."""
    subject, view = column.subject(), column.view
    low, high = BOUNDS[view]
    out = [(p, c) for p, c in zip(positions, cs) if c < low or (high is not None and c > high)]
    if out:
        p, c = out[0]
        named = subject if view == "value" else f"{subject} {view[:-1]} {p}"
        return f"{named} equals {c}, which it never does", str(c)
    if view == "value":
        return f"{subject} equals {cs[0]}", str(cs[0])
    if view == "bits" and len(positions) % 8 == 0 and positions == sorted(
            8 * k + j for k in {p // 8 for p in positions} for j in range(8)):
        view, positions = "bytes", sorted({p // 8 for p in positions})
        cs = [sum(cs[8 * i + j] << j for j in range(8)) for i in range(len(positions))]
    text = bytes(cs).hex() if view == "bytes" else "".join(map(str, cs))
    if len(positions) == sizes[(column.entry, column.spelling, view)]:
        return f"{subject} equals {text}", text
    some = f"{view} {ranges(positions)} equal" if len(positions) > 1 else f"{view[:-1]} {positions[0]} equals"
    return f"{subject} {some} {text}", text
