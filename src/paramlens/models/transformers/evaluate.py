"""Reference semantics of RASP-style programs: evaluation on one input, and the finite value set of every SOp.

``None`` is "no value": a map of ``None`` is ``None``, a ``None`` key or query selects nothing, a categorical
aggregate that selects nothing is ``None``, a numerical aggregate reads ``None`` as 0. Knocking an SOp out
(``knockout``) replaces its values by ``None`` (numerical: by 0), which is what zeroing the weights that compute
it does to the compiled model.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

from paramlens.errors import ParamLensError
from paramlens.models.transformers.rasp import (
    Aggregate,
    Indices,
    Map,
    Select,
    SelectorWidth,
    SequenceMap,
    SOp,
    Tokens,
    names,
    topological,
)

#: numerical values closer than this are the same value
TOLERANCE = 1e-6


def ordered(values: Collection[Any]) -> tuple[Any, ...]:
    """``values`` sorted (by ``repr`` when they do not compare), without ``None``: a deterministic order."""
    try:
        values = [v for v in set(values) if v is not None]
    except TypeError as e:
        raise ParamLensError(f"a categorical SOp takes an unhashable value ({e}); return tuples, not lists") from None
    try:
        return tuple(sorted(values))
    except TypeError:
        return tuple(sorted(values, key=repr))


def _apply(fn: Any, args: tuple, label: str) -> Any:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - a user function: report which SOp and value broke it
        raise ParamLensError(f"{label} fails on {args!r}: {type(e).__name__}: {e}; make it total on its "
                             "input values") from None


def value_sets(program: SOp, vocab: Sequence[Any], max_len: int) -> dict[SOp, tuple[Any, ...]]:
    """``{sop: values}``: every value each SOp can take on inputs of length ``1 .. max_len`` over ``vocab``
    (categorical: ordered as :func:`ordered`; numerical: sorted floats)."""
    label = names(program)
    sets: dict[SOp, tuple[Any, ...]] = {}
    for sop in topological(program):
        if isinstance(sop, Tokens):
            sets[sop] = ordered(vocab)
        elif isinstance(sop, Indices):
            sets[sop] = tuple(range(max_len))
        elif isinstance(sop, Map):
            sets[sop] = ordered(_apply(sop.fn, (v,), f"Map {label[sop]!r}") for v in sets[sop.sop])
        elif isinstance(sop, SequenceMap):
            sets[sop] = ordered(_apply(sop.fn, (a, b), f"SequenceMap {label[sop]!r}")
                                for a in sets[sop.first] for b in sets[sop.second])
        elif isinstance(sop, SelectorWidth):
            sets[sop] = tuple(range(max_len + 1))
        elif isinstance(sop, Aggregate) and sop.numerical:
            sets[sop] = ordered({j / k for k in range(1, max_len + 1) for j in range(k + 1)})
        elif isinstance(sop, Aggregate):
            sets[sop] = sets[sop.sop]
        else:
            raise ParamLensError(f"unknown SOp type {type(sop).__name__}; build programs from paramlens RASP SOps")
    return sets


class _Mixed:
    """A value the program leaves undefined: a categorical aggregate over keys with different values, which
    only a knockout can cause (the compiled model holds a blend of their one-hots there)."""

    def __repr__(self) -> str:
        return "MIXED"


MIXED = _Mixed()


def _lift(fn: Any, args: tuple, label: str) -> Any:
    """``fn(*args)``, ``MIXED`` if an argument is, ``None`` if an argument is."""
    if any(a is MIXED for a in args):
        return MIXED
    return None if any(a is None for a in args) else _apply(fn, args, label)


def _select(selector: Select, keys: list[Any], queries: list[Any]) -> list[list[int] | None]:
    """Per query position, the selected key positions (``None``: undefined, a key or the query is ``MIXED``)."""
    if any(k is MIXED for k in keys):
        return [None] * len(queries)
    pred = selector.predicate
    return [None if q is MIXED else [k for k, key in enumerate(keys) if key is not None and q is not None
                                     and pred(key, q)] for q in queries]


def _aggregate(sop: Aggregate, chosen: list[list[int] | None], values: list[Any], label: str,
               strict: bool) -> list[Any]:
    out: list[Any] = []
    for q, ks in enumerate(chosen):
        if ks is None or any(values[k] is MIXED for k in ks):
            out.append(MIXED)
        elif sop.numerical:
            out.append(sum(0.0 if values[k] is None else values[k] for k in ks) / len(ks) if ks else 0.0)
        else:
            found = {repr(values[k]): values[k] for k in ks}
            if len(found) > 1 and strict:
                raise ParamLensError(f"categorical Aggregate {label!r} selects keys with different values "
                                     f"{sorted(found)} at position {q}; it needs one selected key (or equal values)")
            out.append(MIXED if len(found) > 1 else next(iter(found.values()), None))
    return out


def _numeric_lookup(sop: Map, x: Any, inputs: tuple[float, ...], label: str) -> Any:
    """A numerical -> categorical map reads only the values its input can take (else ``None``)."""
    if x is MIXED:
        return MIXED
    for v in inputs:
        if abs(x - v) < TOLERANCE:
            return _apply(sop.fn, (v,), f"Map {label!r}")
    return None


def _step(sop: SOp, env: dict[SOp, list], seq: Sequence[Any], sets: dict, label: str, strict: bool) -> list[Any]:
    """The values of ``sop`` on ``seq`` given those of the SOps it reads (``env``)."""
    if isinstance(sop, Tokens):
        return list(seq)
    if isinstance(sop, Indices):
        return list(range(len(seq)))
    if isinstance(sop, Map) and sop.sop.numerical:
        return [_numeric_lookup(sop, x, sets[sop.sop], label) for x in env[sop.sop]]
    if isinstance(sop, Map):
        return [_lift(sop.fn, (v,), f"Map {label!r}") for v in env[sop.sop]]
    if isinstance(sop, SequenceMap):
        return [_lift(sop.fn, ab, f"SequenceMap {label!r}") for ab in zip(env[sop.first], env[sop.second])]
    chosen = _select(sop.selector, env[sop.selector.keys], env[sop.selector.queries])  # type: ignore[attr-defined]
    if isinstance(sop, SelectorWidth):
        return [MIXED if ks is None else len(ks) for ks in chosen]
    return _aggregate(sop, chosen, env[sop.sop], label, strict)  # type: ignore[arg-type]


class Reference:
    """The program's own semantics on inputs of ``1 .. max_len`` tokens over ``vocab`` (value sets, order and
    names computed once)."""

    def __init__(self, program: SOp, vocab: Sequence[Any], max_len: int):
        self.program, self.vocab, self.max_len = program, tuple(vocab), max_len
        self.order, self.labels = topological(program), names(program)
        self.sets = value_sets(program, vocab, max_len)
        self._allowed = set(self.vocab)

    def run(self, seq: Sequence[Any], knockout: Collection[SOp] = ()) -> dict[SOp, list[Any]]:
        """``{sop: values}`` of every SOp on ``seq`` (one value or ``None`` per position), with the SOps in
        ``knockout`` replaced by ``None`` (numerical: 0); values a knockout leaves undefined are :data:`MIXED`."""
        if not 1 <= len(seq) <= self.max_len:
            raise ParamLensError(f"input of length {len(seq)}: the program runs on 1 .. {self.max_len} tokens")
        bad = [t for t in seq if t not in self._allowed]
        if bad:
            raise ParamLensError(f"token {bad[0]!r} is not in the vocabulary {list(self.vocab)}")
        dead = {id(s) for s in knockout}
        env: dict[SOp, list[Any]] = {}
        for sop in self.order:
            if id(sop) in dead:
                env[sop] = [0.0 if sop.numerical else None] * len(seq)
            else:
                env[sop] = _step(sop, env, seq, self.sets, self.labels[sop], strict=not dead)
            if sop.numerical and any(isinstance(v, float) and not math.isfinite(v) for v in env[sop]):
                raise ParamLensError(f"numerical SOp {self.labels[sop]!r} is not finite on {list(seq)!r}")
        return env


def evaluate(program: SOp, seq: Sequence[Any], max_len: int, vocab: Sequence[Any],
             knockout: Collection[SOp] = ()) -> list[Any]:
    """The program's output on ``seq``: one value (or ``None``) per position (see :meth:`Reference.run`)."""
    return Reference(program, vocab, max_len).run(seq, knockout)[program]
