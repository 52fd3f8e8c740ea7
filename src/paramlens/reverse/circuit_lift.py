"""Lift an integer ReLU network, streamed one layer at a time, to a threshold-gate circuit over input bits.

Every unit's value is kept exactly, as an affine form ``c + sum_s a_s s`` over Boolean signals (circuit inputs and
gates, integer ``a_s``), or as such a form plus one ramp ``ReLU(K - c)`` of an integer key ``K`` (a linear form):

- inputs: a bit is a signal; a byte code (0..255) is the form ``sum_j 2^j b_{8k+j}`` over its 8 bits;
- a unit ``ReLU(p)`` with ``p`` provably ``>= 0`` is ``p`` itself (pass-through rows, carry sums), ``<= 0`` is 0
  (dead rows), within ``[.., 1]`` is the threshold gate ``[p >= 1]``; anything else stays a ramp;
- constants fold: a row with no weights, or reading only constants, is its bias (clamped at 0) in every form that
  reads it;
- ramps are resolved when the next layer reads them: on integer ``K``, ``sum_i a_i ReLU(K - c_i)`` is
  ``sum_T s_T [K >= T]`` plus a linear part, with ``s_T = sum_{c_i < T} a_i``; so a threshold step
  ``ReLU(K - t + 1) - ReLU(K - t)`` becomes the one level gate ``[K >= t]`` and an adder bit (an alternating sum
  of steps) a few of them. A read needing more than :data:`MAX_LEVELS` levels is refused (layer and unit named),
  unless the unit is an equality test ``ReLU(1 - sum_k |K_k - c_k|)`` or alike, read as an AND of per-key interval
  tests (:mod:`paramlens.reverse.circuit_peak`), as is such a unit that would otherwise stay a ramp.

Ranges are proven: intervals, where level gates of one key count as a chain
(``[K >= T2]`` implies ``[K >= T1]`` for ``T1 < T2``), and when those are inconclusive, exact enumeration of each
group of correlated terms (small gates opened to their inputs, at most :data:`MAX_LEAVES` leaves per group).
Gates are hash-consed, and a gate over at most :data:`MAX_SUPPORT` input bits is compared by truth table with
every earlier one: the bit extraction of a byte (``[x >= 128]`` ...) becomes the input bits themselves. Only a
unit whose proven range is wider than :data:`MAX_LEVELS` yet that stays 0/1 on the random inputs the network runs
on meanwhile is taken as a gate without proof (counted and reported, as for Boolean networks before).

Memory: one dense layer ``(out, in)`` float64 at a time, the current layer's unit values, and the circuit (one
:class:`~paramlens.core.circuits.Gate` per distinct gate, its inputs and weights as tuples), level keys and truth
tables of at most ``2^MAX_SUPPORT`` booleans for gates of small support, each signal's closure (the small gates
under it) and at most :data:`RANGE_CACHE` exact ranges of term groups (the same sums recur in every layer that
passes them on): independent of depth except for what grows with the gates themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

from paramlens.core.circuits import Circuit
from paramlens.errors import ParamLensError

ONE = -1  # key of a form's constant term
MAX_LEVELS = 64
MAX_LEAVES = 12
MAX_SUPPORT = 12
SMALL_FAN_IN = 4
RANGE_CACHE = 20_000

Form = dict  # {signal: coefficient, ONE: constant}


def const(form: Form) -> int:
    return form.get(ONE, 0)


def linear(form: Form) -> tuple[tuple[int, int], ...]:
    """The non-constant terms of ``form``, sorted by signal."""
    return tuple(sorted((s, a) for s, a in form.items() if s != ONE and a))


def add_into(acc: Form, form: Form, w: int) -> None:
    for s, a in form.items():
        acc[s] = acc.get(s, 0) + w * a


@dataclass
class Key:
    """A ramp key: the linear form ``terms`` (first coefficient positive), its proven range and the layer of the
    units ramped on it."""

    terms: tuple[tuple[int, int], ...]
    lo: int
    hi: int
    layer: int
    sign: int = 1  # -1: the units read ReLU(o - K), the network's own orientation is -K


class Lifter:
    """The circuit being built: gates, their layers, level keys and small truth tables."""

    def __init__(self, n_bits: int):
        self.c = Circuit(n_bits)
        self.layer_of: list[int] = [-1] * n_bits
        self.keys: list[Key] = []
        self.key_ids: dict[tuple, int] = {}  # (terms, layer) -> key: one key per layer that ramps on the terms
        self.latest_key: dict[tuple, int] = {}  # terms -> the newest key on them
        self.level_of: dict[int, tuple[int, int]] = {}  # level gate -> (key, threshold)
        self.bit_of: dict[int, int] = {}  # gate materialising a function of one key's levels -> that key
        self.gates: dict[tuple, int] = {}  # (terms, threshold) -> gate
        self.by_terms: dict[tuple, list[tuple[int, int]]] = {}  # terms -> [(threshold, gate)]
        self.support: list[tuple[int, ...] | None] = [(i,) for i in range(n_bits)]
        self.table: list[Tensor | None] = [torch.tensor([False, True]) for _ in range(n_bits)]
        self.canon: dict[tuple, int] = {((i,), b"\x00\x01"): i for i in range(n_bits)}
        self.consts: dict[bool, int] = {}
        self.ladder_of: dict[int, tuple[int, int]] = {}  # key read as bit m of K + c -> (m, c)
        self.single: dict[int, tuple[int, int]] = {}  # key read as one level a [K >= t] -> (t, a)
        self.ladder_votes: dict[int, dict[tuple[int, int], int]] = {}  # key -> {(m, c): reads}
        self.peaks: dict[int, tuple[int, list, bool]] = {}  # equality gate -> (layer, [(Key, u, v)], rest)
        self.folded = 0  # units found constant
        self.sampled = 0  # units taken as gates from the random inputs, not proven
        self.layer = 0
        self.ranges: dict[tuple, tuple[int, int]] = {}  # exact ranges of term groups, at most RANGE_CACHE kept
        self.closures: dict[int, tuple[frozenset[int], frozenset[int]]] = {}  # signal -> (opened gates, leaves)

    # gates ----------------------------------------------------------------------------------------------------
    def threshold(self, terms: tuple[tuple[int, int], ...], t: int) -> Form:
        """``[sum a_s s >= t]`` as a form: a constant, an earlier signal (or its negation ``1 - s``), or a new
        threshold gate."""
        lo, hi = self.bound(dict(terms))
        if lo < t <= hi and len(terms) <= MAX_LEAVES:
            lo, hi = self.tight(dict(terms))
        if lo >= t or hi < t:
            return {ONE: 1} if lo >= t else {}
        if len(terms) == 1:
            (s, a), = terms
            return {s: 1} if a > 0 else {s: -1, ONE: 1}
        if (terms, t) in self.gates:
            return {self.gates[terms, t]: 1}
        support, table = self._table(terms, t)
        if table is not None:
            found = self._known(support, table)
            if found is not None:
                return found
        s = self.c.add("threshold", *(s for s, _ in terms), weights=tuple(a for _, a in terms), threshold=t)
        self.gates[terms, t] = s
        self.by_terms.setdefault(terms, []).append((t, s))
        if terms in self.latest_key:
            self.level_of[s] = (self.latest_key[terms], t)
        self.layer_of.append(self.layer)
        self.support.append(support)
        self.table.append(table)
        if table is not None:
            self.canon[support, table.numpy().tobytes()] = s
        return {s: 1}

    def _known(self, support: tuple[int, ...], table: Tensor) -> Form | None:
        """The constant or earlier signal (possibly negated) with this truth table over ``support``."""
        if bool(table.all()) or not bool(table.any()):
            return {ONE: 1} if bool(table.all()) else {}
        if (support, table.numpy().tobytes()) in self.canon:
            return {self.canon[support, table.numpy().tobytes()]: 1}
        negated = (~table).numpy().tobytes()
        if (support, negated) in self.canon:
            return {self.canon[support, negated]: -1, ONE: 1}
        return None

    def _table(self, terms: tuple[tuple[int, int], ...], t: int) -> tuple[tuple[int, ...] | None, Tensor | None]:
        """Support (input bits) and truth table of ``[sum a_s s >= t]``, when the support is small."""
        sup: set[int] = set()
        for s, _ in terms:
            if self.support[s] is None:
                return None, None
            sup.update(self.support[s])
            if len(sup) > MAX_SUPPORT:
                return None, None
        support = tuple(sorted(sup))
        grid = _grid(len(support))
        pos = {x: i for i, x in enumerate(support)}
        total = torch.zeros(len(grid), dtype=torch.long)
        for s, a in terms:
            idx = sum(grid[:, pos[x]] << m for m, x in enumerate(self.support[s]))
            total += a * self.table[s][idx].long()
        return _reduce(support, total >= t)

    def constant_signal(self, value: bool) -> int:
        """A ``const0`` / ``const1`` gate (outputs that are constant)."""
        if value not in self.consts:
            self.consts[value] = self.c.add("const1" if value else "const0")
            self.layer_of.append(self.layer)
            self.support.append(())
            self.table.append(torch.tensor([value]))
        return self.consts[value]

    def materialise(self, p: Form) -> Form:
        """A form known to be 0 or 1 as one signal (or constant): ``[p >= 1]``."""
        terms = linear(p)
        out = self.threshold(terms, 1 - const(p))
        keys = {self.level_of[s][0] for s, _ in terms if s in self.level_of}
        if len(keys) == 1 and all(s in self.level_of for s, _ in terms):
            for s in out:
                if s != ONE and s >= self.c.n_inputs:
                    self.bit_of.setdefault(s, keys.pop())
        return out

    def level(self, key: int, t: int) -> Form:
        """The level gate ``[K >= t]`` of key ``key``."""
        k = self.keys[key]
        out = self.threshold(k.terms, t)
        for s in out:
            if self.level_of.get(s, (None,))[0] == key:
                self.layer_of[s] = min(self.layer_of[s], k.layer)
        return out

    def intern(self, terms: tuple[tuple[int, int], ...], lo: int, hi: int, sign: int = 1) -> int:
        if (terms, self.layer) not in self.key_ids:
            key = self.key_ids[terms, self.layer] = self.latest_key[terms] = len(self.keys)
            self.keys.append(Key(terms, lo, hi, self.layer, sign))
            for t, s in self.by_terms.get(terms, ()):
                self.level_of[s] = (key, t)
        return self.key_ids[terms, self.layer]

    # ranges ---------------------------------------------------------------------------------------------------
    def bound(self, form: Form) -> tuple[int, int]:
        """Proven ``(min, max)`` of ``form``: signals independent, except level gates of one key (a chain)."""
        lo = hi = const(form)
        chains: dict[int, list[tuple[int, int]]] = {}
        for s, a in form.items():
            if s == ONE:
                continue
            if s in self.level_of:
                key, t = self.level_of[s]
                chains.setdefault(key, []).append((t, a))
            else:
                lo, hi = lo + min(a, 0), hi + max(a, 0)
        for chain in chains.values():
            chain.sort()
            run = low = high = 0
            for _, a in chain:
                run += a
                low, high = min(low, run), max(high, run)
            lo, hi = lo + low, hi + high
        return lo, hi

    def tight(self, form: Form) -> tuple[int, int]:
        """As :meth:`bound`, with each group of correlated terms enumerated exactly over its leaves."""
        groups = _groups(self, [(s, a) for s, a in form.items() if s != ONE])
        lo = hi = const(form)
        for terms, opened, leaves in groups:
            if len(leaves) > MAX_LEAVES:
                low, high = self.bound(dict(terms))
            else:
                low, high = self._exact(terms, opened, leaves)
            lo, hi = lo + low, hi + high
        return lo, hi

    def _exact(self, terms: list[tuple[int, int]], opened: set[int], leaves: list[int]) -> tuple[int, int]:
        """:func:`_enumerate`, remembered by the group's terms (the same sums recur in every layer that passes
        them on); the memory is dropped whole when it holds :data:`RANGE_CACHE` groups."""
        key = tuple(sorted(terms))
        if key not in self.ranges:
            if len(self.ranges) >= RANGE_CACHE:
                self.ranges.clear()
            self.ranges[key] = _enumerate(self, terms, opened, leaves)
        return self.ranges[key]

    def gate_inputs(self, s: int) -> tuple[tuple[int, ...], tuple[int, ...], int] | None:
        """``(inputs, weights, threshold)`` of a threshold gate with at most :data:`SMALL_FAN_IN` inputs."""
        if s < self.c.n_inputs:
            return None
        g = self.c.gates[s - self.c.n_inputs]
        if g.op != "threshold" or len(g.inputs) > SMALL_FAN_IN:
            return None
        return g.inputs, g.weights, g.threshold


_GRIDS: dict[int, Tensor] = {}


def _grid(k: int) -> Tensor:
    """``(2^k, k)`` int64: row ``r`` holds the bits of ``r``, lowest first."""
    if k not in _GRIDS:
        _GRIDS[k] = (torch.arange(1 << k)[:, None] >> torch.arange(k)) & 1
    return _GRIDS[k]


def _reduce(support: tuple[int, ...], table: Tensor) -> tuple[tuple[int, ...], Tensor]:
    """Drop the support bits ``table`` does not depend on (row ``r`` of a table holds bit ``m`` of ``r`` as the
    value of ``support[m]``)."""
    k = len(support)
    t = table.reshape((2,) * k) if k else table
    kept = []
    for m in range(k):
        axis = k - 1 - m
        if torch.equal(t.select(axis, 0), t.select(axis, 1)):
            t = t.select(axis, 0).unsqueeze(axis)
        else:
            kept.append(m)
    t = t.reshape(-1)
    if len(kept) == k:
        return support, table
    rows = sum(_grid(len(kept))[:, i] << m for i, m in enumerate(kept)) if kept else torch.zeros(1, dtype=torch.long)
    return tuple(support[m] for m in kept), table[rows]


def _closure(lf: Lifter, s: int) -> tuple[set[int], set[int]]:
    """Small gates under ``s`` opened to their inputs, latest first, while at most :data:`MAX_LEAVES` leaves remain:
    ``(opened gates, leaves)``, remembered per signal (a gate's inputs never change)."""
    if s not in lf.closures:
        lf.closures[s] = tuple(map(frozenset, _open(lf, s)))
    return lf.closures[s]


def _open(lf: Lifter, s: int) -> tuple[set[int], set[int]]:
    opened: set[int] = set()
    leaves, tried = {s}, set()
    while True:
        todo = [x for x in leaves if x not in tried and lf.gate_inputs(x)]
        if not todo:
            return opened, leaves
        g = max(todo)
        tried.add(g)
        grown = (leaves - {g}) | set(lf.gate_inputs(g)[0])
        if len(grown) <= MAX_LEAVES:
            opened.add(g)
            leaves = grown - opened


def _groups(lf: Lifter, terms: list[tuple[int, int]]) -> list[tuple[list[tuple[int, int]], set[int], list[int]]]:
    """Terms split into groups of correlated ones (sharing a gate or leaf when opened, or levels of one key):
    ``(terms, opened gates, leaves)`` per group."""
    parent = list(range(len(terms)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[object, int] = {}
    closures = [_closure(lf, s) for s, _ in terms]
    for i, (s, _) in enumerate(terms):
        opened, leaves = closures[i]
        marks = list(opened | leaves) + [("key", lf.level_of[x][0]) for x in leaves if x in lf.level_of]
        for m in marks:
            if m in owner:
                parent[find(i)] = find(owner[m])
            else:
                owner[m] = i
    out: dict[int, tuple[list, set, set]] = {}
    for i, term in enumerate(terms):
        group = out.setdefault(find(i), ([], set(), set()))
        group[0].append(term)
        group[1].update(closures[i][0])
        group[2].update(closures[i][1])
    return [(t, opened, sorted(leaves - opened)) for t, opened, leaves in out.values()]


def _enumerate(lf: Lifter, terms: list[tuple[int, int]], opened: set[int], leaves: list[int]) -> tuple[int, int]:
    """Exact ``(min, max)`` of ``sum a_s s`` over every assignment of ``leaves`` that respects level chains, the
    ``opened`` gates computed from their inputs."""
    grid = _grid(len(leaves))
    pos = {x: i for i, x in enumerate(leaves)}
    keep = torch.ones(len(grid), dtype=torch.bool)
    chained: dict[int, list[tuple[int, int]]] = {}
    for x in leaves:
        if x in lf.level_of:
            key, t = lf.level_of[x]
            chained.setdefault(key, []).append((t, pos[x]))
    for chain in chained.values():
        chain.sort()
        for (_, i), (_, j) in pairwise(chain):
            keep &= grid[:, i] >= grid[:, j]
    grid = grid[keep]
    values = {x: grid[:, i] for x, i in pos.items()}
    for g in sorted(opened):
        ins, ws, t = lf.gate_inputs(g)
        values[g] = (sum(w * values[i] for i, w in zip(ins, ws)) >= t).long()
    total = sum(a * values[s] for s, a in terms)
    return int(total.min()), int(total.max())


def check_integer_layer(index: int, W: Tensor, b: Tensor, names: tuple[str, str | None]) -> None:
    """Refuse a layer with non-finite, out-of-range or non-integer values (one line, tensors named)."""
    from paramlens.reverse.values import RANGE, in_range, is_integer, layer_problem

    if not (in_range(W) and in_range(b)):
        raise ParamLensError(f"layer {index}: {layer_problem(W, b, names)}; circuit lifting needs finite weights "
                             f"and biases with {RANGE}")
    if not (is_integer(W) and is_integer(b)):
        raise ParamLensError(f"layer {index} ({names[0]}) has non-integer weights or biases; lifting needs an "
                             "integer network")


def refuse(layer: int, unit: int, what: str) -> ParamLensError:
    return ParamLensError(f"layer {layer} unit {unit}: {what}")
