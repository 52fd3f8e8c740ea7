"""One layer of the streamed lift: pre-activations from the previous layer's unit values, then each unit's value.

A unit value is ``(form, ramp)``: the affine :data:`~paramlens.reverse.circuit_lift.Form` plus, when not None,
``ramp = (key, c)`` standing for ``ReLU(K - c)`` (see :mod:`paramlens.reverse.circuit_lift`).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

from torch import Tensor

from paramlens.errors import ParamLensError
from paramlens.reverse.circuit_lift import MAX_LEVELS, ONE, Form, Lifter, add_into, const, linear, refuse
from paramlens.reverse.circuit_peak import peak_unit

Value = tuple[Form, tuple[int, int] | None]


def input_values(kind: str, n: int) -> list[Value]:
    """The network's inputs: ``n`` bits (signal ``i``), or ``n`` byte codes (``sum_j 2^j`` signal ``8k + j``)."""
    if kind == "bits":
        return [({i: 1}, None) for i in range(n)]
    return [({8 * k + j: 1 << j for j in range(8)}, None) for k in range(n)]


def sparse_rows(W: Tensor) -> list[list[tuple[int, int]]]:
    """``(out, in)`` integer-valued weight -> per row ``[(column, weight)]`` of the non-zero entries."""
    rows: list[list[tuple[int, int]]] = [[] for _ in range(W.shape[0])]
    r, c = W.nonzero(as_tuple=True)
    for i, j, w in zip(r.tolist(), c.tolist(), W[r, c].round().long().tolist()):
        rows[i].append((j, w))
    return rows


def pre_activation(lf: Lifter, row: list[tuple[int, int]], bias: int, prev: list[Value], unit: int) -> Form:
    """``sum_j w_j value_j + bias`` as an affine form over signals, ramps resolved into level gates."""
    acc: Form = {ONE: bias}
    ramps: dict[int, dict[int, int]] = defaultdict(dict)
    for j, w in row:
        form, ramp = prev[j]
        add_into(acc, form, w)
        if ramp is not None:
            key, c = ramp
            ramps[key][c] = ramps[key].get(c, 0) + w
    for key, by_c in ramps.items():
        _resolve(lf, key, by_c, acc, unit)
    return {s: a for s, a in acc.items() if a or s == ONE}


def _resolve(lf: Lifter, key: int, by_c: dict[int, int], acc: Form, unit: int) -> None:
    """Add ``f(K) = sum_c a_c ReLU(K - c)`` to ``acc``. On K's range ``[lo, hi]``, ``f(K) = f(lo) + sum_T d_T
    [K >= T]`` with ``d_T = sum_{c < T} a_c``; written either so (levels where ``d_T != 0``) or as
    ``S (K - lo)`` plus levels where ``d_T != S`` (``S`` the top slope), whichever needs fewer level gates; sums
    of threshold steps (``sum_c a_c = 0``) always take the first form."""
    k = lf.keys[key]
    runs, slope = [], sum(a for c, a in by_c.items() if c <= k.lo)  # (first T, last T, d_T)
    start = k.lo + 1
    for c in sorted(c for c in by_c if k.lo < c < k.hi):
        runs.append((start, c, slope))
        slope, start = slope + by_c[c], c + 1
    runs.append((start, k.hi, slope))
    runs = [r for r in runs if r[0] <= r[1]]
    top = runs[-1][2] if runs and sum(by_c.values()) else 0  # steps (slope 0 beyond every c) stay levels
    count = {s: sum(b - a + 1 for a, b, d in runs if d != s) for s in {0, top}}
    top = min(count, key=lambda s: (count[s], s != 0))
    if count[top] > MAX_LEVELS:
        raise refuse(lf.layer, unit, f"reads ReLU of an integer ranging over [{k.lo}, {k.hi}] (layer {k.layer}) as a "
                     f"value; lifting it needs {count[top]} threshold levels, at most {MAX_LEVELS}")
    acc[ONE] = acc.get(ONE, 0) + sum(a * max(k.lo - c, 0) for c, a in by_c.items()) - top * k.lo
    if top:
        add_into(acc, dict(k.terms), top)
    levels = [(t, d - top) for first, last, d in runs if d != top for t in range(first, last + 1)]
    for t, a in levels:
        add_into(acc, lf.level(key, t), a)
    if top and k.hi - k.lo <= 4 * MAX_LEVELS:  # the read's own steps: the slope's at every T, plus the levels
        extra = dict(levels)
        levels = [(t, top + extra.get(t, 0)) for t in range(k.lo + 1, k.hi + 1) if top + extra.get(t, 0)]
    elif top:
        return
    note_ladder(lf, key, levels)


def note_ladder(lf: Lifter, key: int, levels: list[tuple[int, int]]) -> None:
    """Record ``key`` as a ladder when it is read as an alternating sum of equal levels ``+-a [K >= T]`` at ``T``
    spaced ``2^m`` apart: bit ``m`` of ``K + c``, ``c`` putting the positive levels at odd multiples of ``2^m``.
    A read of the negated bit (``1 - bit``, as a bitwise function's ``ReLU(z - x)`` reads it) gives ``c + 2^m``;
    the reading most reads agree on is kept (adders and pass-through rows read the bit itself)."""
    if len(levels) == 1:
        lf.single.setdefault(key, levels[0])
    if len(levels) < 2:
        return
    (t0, a0), (t1, _) = levels[0], levels[1]
    d = t1 - t0
    on = [(t, a) for t, a in levels if (t - t0) % d == 0] if d > 0 else []
    if d <= 0 or d & (d - 1) or any(t - s != d or a != -b or abs(a) != abs(a0) for (s, b), (t, a) in pairwise(on)):
        return
    positive = t0 if a0 > 0 else t1
    votes = lf.ladder_votes.setdefault(key, {})
    read = (d.bit_length() - 1, (d - positive) % (2 * d))
    votes[read] = votes.get(read, 0) + 1
    lf.ladder_of[key] = max(votes, key=votes.get)


def unit_value(lf: Lifter, p: Form, seen: int | None = None) -> Value:
    """``ReLU(p)``: 0, the gate ``[p >= 1]``, or a ramp on ``p``'s linear part (``p`` itself when ``p >= 0``, which
    the next layer reads as linear). ``seen`` (bit inputs only): the unit's largest value on the random inputs;
    one not proven 0/1 that was never above 1 there is taken as the gate, as lifting Boolean networks always did,
    and counted in ``lf.sampled``."""
    lo, hi = lf.bound(p)
    if lo < 0 < hi and hi > 1:
        lo, hi = lf.tight(p)
    if hi <= 0:
        return {}, None
    if hi > 1 and lo < 0 and seen is not None and seen <= 1:
        lf.sampled += 1
        hi = 1
    if hi <= 1:
        return lf.materialise(p), None
    terms, c = linear(p), const(p)
    if not terms:  # a constant neuron
        return {ONE: c}, None
    if terms[0][1] > 0:
        key = lf.intern(terms, *_key_range(lf, terms))
        return {}, (key, -c)
    flipped = tuple((s, -a) for s, a in terms)  # ReLU(p) = ReLU(-p) + p
    key = lf.intern(flipped, *_key_range(lf, flipped), sign=-1)
    return dict(p), (key, c)


def _key_range(lf: Lifter, terms: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    return lf.tight(dict(terms))


def layer_values(lf: Lifter, W: Tensor, b: Tensor, prev: list[Value], seen: list[int] | None = None) -> list[Value]:
    """The unit values of one layer (``W`` ``(out, in)``, ``b`` ``(out,)``, integer-valued) from ``prev``;
    ``seen``: each unit's largest activation on the random inputs."""
    rows, bias = sparse_rows(W), b.round().long().tolist()
    values = []
    for r, row in enumerate(rows):
        p, value = _unit(lf, row, bias[r], prev, r, seen[r] if seen is not None else None)
        values.append(value)
        if len(p) == 1:
            lf.folded += 1
    return values


def _unit(lf: Lifter, row: list[tuple[int, int]], bias: int, prev: list[Value], r: int,
          seen: int | None) -> tuple[Form, Value]:
    """The unit's pre-activation and value; a unit the usual lift refuses, or leaves a ramp, is read as an
    equality test (:func:`~paramlens.reverse.circuit_peak.peak_unit`) where it is one."""
    try:
        p = pre_activation(lf, row, bias, prev, r)
    except ParamLensError:
        p = peak_unit(lf, row, bias, prev)
        if p is None:
            raise
        return p, unit_value(lf, p, seen)
    value = unit_value(lf, p, seen)
    if value[1] is not None:
        q = peak_unit(lf, row, bias, prev)
        if q is not None:
            return q, unit_value(lf, q, seen)
    return p, value


def outputs(lf: Lifter, values: list[Value], seen: list[int] | None = None) -> list[int]:
    """The last layer's units as signals; each must be 0 or 1 (proven, or with ``seen`` as in :func:`unit_value`)."""
    out = []
    for r in range(len(values)):
        form = pre_activation(lf, [(r, 1)], 0, values, r)
        lo, hi = lf.tight(form)
        if (lo < 0 or hi > 1) and seen is not None and seen[r] <= 1:
            lf.sampled += 1
        elif lo < 0 or hi > 1:
            raise refuse(lf.layer, r, f"is an output ranging over [{max(lo, 0)}, {hi}], not 0/1; the circuit needs "
                         "Boolean outputs")
        form = lf.materialise(form)
        terms = linear(form)
        if not terms:
            out.append(lf.constant_signal(bool(const(form))))
        elif terms == ((terms[0][0], 1),) and not const(form):
            out.append(terms[0][0])
        else:  # 1 - s
            out.append(_negation(lf, terms[0][0]))
    return out


def _negation(lf: Lifter, s: int) -> int:
    """A gate ``NOT s`` (``[-s >= 0]``)."""
    key = (((s, -1),), 0)
    if key not in lf.gates:
        lf.gates[key] = lf.c.add("threshold", s, weights=(-1,), threshold=0)
        lf.layer_of.append(lf.layer)
        lf.support.append(None)
        lf.table.append(None)
    return lf.gates[key]
