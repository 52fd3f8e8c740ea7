"""Operand words as expressions over whole words, evaluated on the random inputs: a track's bitwise function of
rotated words, and named 3-input functions (choice, majority, parity) some of whose arguments are constant words
(what a hash step computes while part of its state is still the constant initial value).

A *track* is ``(leaves, tables)``: ``leaves`` the ``(word, left rotation)`` arguments, ``tables`` ``{bit: truth
table}`` (row ``r`` of a table: bit ``i`` of ``r`` is argument ``i``). Words are int64 tensors ``(samples,)``
holding ``n``-bit values.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_MISSING = 4  # columns a track may miss and still be completed with either constant bit
NAMED = {  # 3-input functions by name: value of (x, y, z)
    "choice": lambda x, y, z: y if x else z,
    "majority": lambda x, y, z: int(x + y + z >= 2),
    "parity": lambda x, y, z: (x + y + z) % 2,
}


@dataclass
class Operand:
    """One operand word: its text and its values ``(samples,)``; ``function``: a bitwise function of 2 or more
    words (or of words and constants), for the statements."""

    text: str
    value: Tensor
    function: bool
    rotations: list[tuple[int, str]]
    words: list[str] = dataclasses.field(default_factory=list)  # the words it reads


def rotl(v: Tensor, s: int, n: int) -> Tensor:
    """``v`` rotated left by ``s`` within ``n`` bits."""
    mod = (1 << n) - 1
    s %= n
    return ((v << s) | (v >> (n - s))) & mod if s else v & mod


def arg_text(word: str, rot: int, n: int) -> str:
    return word if rot == 0 else f"rotl({word}, {rot})" if rot <= n // 2 else f"rotr({word}, {n - rot})"


def table_value(args: list[Tensor], table: tuple[int, ...], n: int) -> Tensor:
    """The bitwise function ``table`` of the ``n``-bit words ``args``."""
    mod = (1 << n) - 1
    out = torch.zeros_like(args[0])
    for row, v in enumerate(table):
        if v:
            term = torch.full_like(args[0], mod)
            for i, a in enumerate(args):
                term &= a if (row >> i) & 1 else ~a & mod
            out |= term
    return out


def fit_named(leaves: list[tuple[str, int]], tables: dict[int, tuple[int, ...]], n: int
              ) -> tuple[str, list[int | None], list[int]] | None:
    """A named 3-input function and argument order (``None``: a constant argument) whose restriction to the
    constants ``consts`` (one ``n``-bit word per constant argument) is each column's table; ``None`` when none
    fits. Columns without a table get constant bits 0."""
    k = len(leaves)
    for name, f in NAMED.items():
        for slots in itertools.permutations(range(3), k):
            consts = [0] * (3 - k)
            free = [i for i in range(3) if i not in slots]
            if all(_fits(f, slots, free, table, consts, p) for p, table in tables.items()):
                order: list[int | None] = [None] * 3
                for leaf, slot in enumerate(slots):
                    order[slot] = leaf
                return name, order, consts
    return None


def _fits(f, slots: tuple[int, ...], free: list[int], table: tuple[int, ...], consts: list[int], p: int) -> bool:
    """Does some constant assignment of the ``free`` arguments make ``f`` equal ``table`` (setting bit ``p`` of
    ``consts``)?"""
    for bits in itertools.product((0, 1), repeat=len(free)):
        ok = True
        for row in range(len(table)):
            args = [0, 0, 0]
            for leaf, slot in enumerate(slots):
                args[slot] = (row >> leaf) & 1
            for c, slot in zip(bits, free):
                args[slot] = c
            if f(*args) != table[row]:
                ok = False
                break
        if ok:
            for i, c in enumerate(bits):
                consts[i] |= c << p
            return True
    return False


def track_operands(words: dict[str, Tensor], leaves: list[tuple[str, int]], tables: dict[int, tuple[int, ...]],
                   n: int) -> list[Operand]:
    """The operands a track may stand for: its most common table on all ``n`` bits (columns the groups did not
    show taken alike), and a named function with constant words fitted to every column's table."""
    from paramlens.reverse.circuit_words import function_name

    args = [rotl(words[w], rot, n) for w, rot in leaves]
    texts = [arg_text(w, rot, n) for w, rot in leaves]
    rotations = [(rot, w) for w, rot in leaves if rot]
    table = Counter(tables.values()).most_common(1)[0][0]
    out = [Operand(function_name(table, texts), table_value(args, table, n), len(leaves) > 1, rotations,
                   sorted({w for w, _ in leaves}))]
    fit = fit_named(leaves, tables, n) if len(leaves) < 3 and len(set(tables.values())) > 1 else None
    if fit is None:
        return out
    name, order, consts = fit
    missing = [p for p in range(n) if p not in tables]
    for flips in itertools.product(*[(0, 1 << p) for p in missing] if len(missing) <= MAX_MISSING else []):
        chosen = [consts[0] | sum(flips), *consts[1:]]  # unseen columns: either bit of the first constant
        out.append(named_operand(name, order, chosen, args, texts, n, rotations))
    return out


def named_operand(name: str, order: list[int | None], consts: list[int], args: list[Tensor], texts: list[str],
                  n: int, rotations: list[tuple[int, str]]) -> Operand:
    """``name(...)`` of the track's words (``order``: argument -> leaf, ``None`` the next constant word)."""
    it = iter(consts)
    full = [args[i] if i is not None else torch.full_like(args[0], next(it)) for i in order]
    it = iter(consts)
    shown = [texts[i] if i is not None else f"0x{next(it):0{n // 4}x}" for i in order]
    x, y, z = full
    mod = (1 << n) - 1
    value = {"choice": (x & y) | (~x & mod & z), "majority": (x & y) | (x & z) | (y & z), "parity": x ^ y ^ z}[name]
    return Operand(f"{name}({', '.join(shown)})", value, True, rotations)
