"""RASP-style programs: sequence operations (SOps) built from a few primitives.

A program is a graph of SOps ending in one output SOp. Every SOp gives one value per position of the input
sequence, or ``None`` (no value) there:

- :data:`tokens`, :data:`indices`: the input tokens and the positions ``0 .. length - 1``;
- :class:`Map` ``(fn, sop)``: ``fn`` applied at each position (categorical -> categorical, categorical ->
  numerical, or numerical -> categorical);
- :class:`SequenceMap` ``(fn, a, b)``: ``fn(a[i], b[i])`` of two categorical SOps;
- :class:`Select` ``(keys, queries, predicate)``: query position ``q`` selects key position ``k`` where
  ``predicate(keys[k], queries[q])`` holds;
- :class:`Aggregate` ``(selector, sop)``: categorical: the value of the one selected key (all selected keys
  must agree); numerical: the mean of a 0/1-valued numerical SOp over the selected keys (0 when none);
- :class:`SelectorWidth` ``(selector)``: how many keys each query selects.

Categorical SOps take finitely many values (any hashable values); numerical SOps are real numbers. The
reference semantics are in :mod:`paramlens.models.transformers.evaluate`, the weights in
:mod:`paramlens.models.transformers.compile`. The primitives and the residual layout follow tracr (Lindner et
al., 2023), compiled here by a small self-contained torch compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paramlens.errors import ParamLensError


@dataclass(frozen=True)
class Predicate:
    """A selector predicate ``fn(key, query) -> bool``, with a short name for descriptions (``"=="``)."""

    name: str
    fn: Callable[[Any, Any], bool]

    def __call__(self, key: Any, query: Any) -> bool:
        return bool(self.fn(key, query))


EQ = Predicate("==", lambda k, q: k == q)
NEQ = Predicate("!=", lambda k, q: k != q)
LT = Predicate("<", lambda k, q: k < q)
LEQ = Predicate("<=", lambda k, q: k <= q)
GT = Predicate(">", lambda k, q: k > q)
GEQ = Predicate(">=", lambda k, q: k >= q)
TRUE = Predicate("true", lambda k, q: True)


class SOp:
    """A sequence operation: one value per position. ``name`` labels its residual subspace when compiled."""

    kind = "sop"

    def __init__(self, name: str | None = None, numerical: bool = False):
        self.name = name
        self.numerical = numerical

    def named(self, name: str) -> SOp:
        """Set the name (used for the residual subspace and the mechanism descriptions); returns ``self``."""
        self.name = name
        return self

    def children(self) -> tuple[SOp, ...]:
        """The SOps this one reads."""
        return ()


class Tokens(SOp):
    kind = "tokens"


class Indices(SOp):
    kind = "indices"


tokens = Tokens("tokens")
indices = Indices("indices")


def _sop(x: Any, role: str) -> SOp:
    if not isinstance(x, SOp):
        raise ParamLensError(f"{role} must be an SOp (tokens, indices, Map, ...), got {type(x).__name__}")
    return x


def _fn(fn: Any, role: str) -> Callable:
    if not callable(fn):
        raise ParamLensError(f"{role} must be a function, got {type(fn).__name__}")
    return fn


class Map(SOp):
    """``fn(sop[i])`` at each position; ``numerical=True`` makes the result a number (its input categorical)."""

    kind = "map"

    def __init__(self, fn: Callable[[Any], Any], sop: SOp, numerical: bool = False, name: str | None = None):
        super().__init__(name, numerical)
        self.fn, self.sop = _fn(fn, "Map fn"), _sop(sop, "Map input")

    def children(self) -> tuple[SOp, ...]:
        return (self.sop,)


class SequenceMap(SOp):
    """``fn(first[i], second[i])`` at each position, of two categorical SOps; categorical."""

    kind = "sequence_map"

    def __init__(self, fn: Callable[[Any, Any], Any], first: SOp, second: SOp, name: str | None = None):
        super().__init__(name)
        self.fn = _fn(fn, "SequenceMap fn")
        self.first, self.second = _sop(first, "SequenceMap first"), _sop(second, "SequenceMap second")

    def children(self) -> tuple[SOp, ...]:
        return (self.first, self.second)


@dataclass(frozen=True, eq=False)
class Select:
    """Query position ``q`` selects key position ``k`` where ``predicate(keys[k], queries[q])``; a ``None`` key or
    query selects nothing."""

    keys: SOp
    queries: SOp
    predicate: Predicate

    def __post_init__(self) -> None:
        _sop(self.keys, "Select keys")
        _sop(self.queries, "Select queries")
        if not isinstance(self.predicate, Predicate):
            raise ParamLensError(f"Select predicate must be a Predicate (EQ, LT, ...), got {self.predicate!r}")


class Aggregate(SOp):
    """Categorical: the value of the selected key (``None`` when none is selected). Numerical: the mean of a
    0/1-valued numerical SOp over the selected keys (0 when none is)."""

    kind = "aggregate"

    def __init__(self, selector: Select, sop: SOp, numerical: bool = False, name: str | None = None):
        super().__init__(name, numerical)
        if not isinstance(selector, Select):
            raise ParamLensError(f"Aggregate selector must be a Select, got {type(selector).__name__}")
        self.selector, self.sop = selector, _sop(sop, "Aggregate input")

    def children(self) -> tuple[SOp, ...]:
        return (self.selector.keys, self.selector.queries, self.sop)


class SelectorWidth(SOp):
    """How many keys each query position selects: categorical, ``0 .. max_len``."""

    kind = "selector_width"

    def __init__(self, selector: Select, name: str | None = None):
        super().__init__(name)
        if not isinstance(selector, Select):
            raise ParamLensError(f"SelectorWidth selector must be a Select, got {type(selector).__name__}")
        self.selector = selector

    def children(self) -> tuple[SOp, ...]:
        return (self.selector.keys, self.selector.queries)


def topological(program: SOp) -> list[SOp]:
    """Every SOp the program reads, each after the SOps it reads; the program last."""
    order: list[SOp] = []
    seen: set[int] = set()
    stack: list[tuple[SOp, bool]] = [(_sop(program, "the program"), False)]
    while stack:
        sop, expanded = stack.pop()
        if expanded:
            order.append(sop)
            continue
        if id(sop) in seen:
            continue
        seen.add(id(sop))
        stack.append((sop, True))
        stack.extend((c, False) for c in reversed(sop.children()) if id(c) not in seen)
    return order


def names(program: SOp) -> dict[SOp, str]:
    """``{sop: name}``: given names, else ``"{kind}_{k}"`` in topological order; raises on a repeated name."""
    out: dict[SOp, str] = {}
    taken: dict[str, SOp] = {}
    for k, sop in enumerate(topological(program)):
        name = sop.name or f"{sop.kind}_{k}"
        if name in taken or name in ("one", "bos"):
            raise ParamLensError(f"two SOps of the program are named {name!r} ('one' and 'bos' are reserved); "
                                 "give each a unique name with .named()")
        taken[name] = sop
        out[sop] = name
    return out
