"""The operand words of the adders found by :mod:`paramlens.reverse.circuit_words`, and the statements.

A *word bit* is ``(word, bit)``: an adder's output bit (``W1``, ``W2``, ... in order of depth) or a message bit
(``M0``, ``M1``, ...: 4 bytes each, in either byte order) of a bytes network. Signals are matched to word bits by
their values on the random inputs (a bit or its negation), so a word bit is found however the lift wrote it (a gate,
an input bit, a sum of levels).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from paramlens.reverse.circuit_words import MAX_LEAVES, Adder, Reader, function_name


@dataclass
class Group:
    """Correlated terms of one column: value ``v0 + 2^j f(leaves)``; ``layer``: the deepest of its gates."""

    terms: list[tuple[int, int]]
    leaves: list[tuple]
    layer: int


def fingerprint(v: Tensor) -> bytes:
    """The values of a 0/1 signal on the random inputs, packed."""
    return np.packbits(v.numpy().astype(np.uint8)).tobytes()


def signal_print(r: Reader, s: int) -> bytes:
    """:func:`fingerprint` of signal ``s``, kept on the reader."""
    if s not in r.prints:
        r.prints[s] = fingerprint(r.vals[s])
    return r.prints[s]


class Registry(dict):
    """Values of every word bit (and of its negation, marked by the bit ``-1 - q``) -> ``[(word, bit)]``;
    ``values``: ``(word, bit)`` -> its values."""

    def __init__(self, r: Reader, big_endian: bool):
        super().__init__()
        self.values: dict[tuple[str, int], Tensor] = {}
        if r.bytes_domain:
            for i in range(r.lf.c.n_inputs):
                byte, bit = divmod(i, 8)
                self._add(f"M{byte // 4}", 8 * (3 - byte % 4 if big_endian else byte % 4) + bit, r.vals[i])
        for adder in r.adders:
            word = r.output_word(adder)
            for q in range(adder.n):
                self._add(adder.name, q, (word >> q) & 1)

    def _add(self, word: str, q: int, v: Tensor) -> None:
        self.values[word, q] = v
        self.setdefault(fingerprint(v), []).append((word, q))
        self.setdefault(fingerprint(1 - v), []).append((word, -1 - q))


def leaves(r: Reader, reg: dict, s: int, depth: int = 3) -> set[tuple]:
    """The word bits signal ``s`` is a function of (at most :data:`MAX_LEAVES`), else ``{("sig", s)}``."""
    hit = reg.get(signal_print(r, s))
    if hit is not None:
        return {_positive(hit[0])}
    key = r.lf.level_of.get(s, (None,))[0]
    if key in r.lf.ladder_of and (hit := reg.get(fingerprint(r.bit(key)))) is not None:
        return {_positive(hit[0])}
    if depth and s >= r.lf.c.n_inputs:
        out: set[tuple] = set()
        for i in r.lf.c.gates[s - r.lf.c.n_inputs].inputs:
            out |= leaves(r, reg, i, depth - 1)
            if len(out) > MAX_LEAVES or any(t[0] == "sig" for t in out):
                return {("sig", s)}
        return out
    return {("sig", s)}


def _positive(hit: tuple[str, int]) -> tuple[str, int]:
    word, q = hit
    return (word, q if q >= 0 else -1 - q)


def groups(r: Reader, reg: dict, terms: list[tuple[int, int]]) -> list[Group]:
    """Terms joined when they share a word bit or a level key and their weights are within a factor 2."""
    marks = []
    for s, _ in terms:
        m = leaves(r, reg, s)
        if s in r.lf.level_of:
            m = m | {("key", r.lf.level_of[s][0])}
        marks.append(m)
    parent = list(range(len(terms)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in itertools.combinations(range(len(terms)), 2):
        if marks[i] & marks[j] and abs(terms[i][1]) / abs(terms[j][1]) in (0.5, 1, 2):
            parent[find(i)] = find(j)
    out: dict[int, Group] = {}
    for i, term in enumerate(terms):
        g = out.setdefault(find(i), Group([], [], -1))
        g.terms.append(term)
        g.leaves = sorted(set(g.leaves) | {t for t in marks[i] if t[0] != "key"})
        g.layer = max(g.layer, r.lf.layer_of[term[0]])
    return list(out.values())


def column_of(r: Reader, reg: Registry, g: Group) -> list[list[tuple[int, int, list[tuple], tuple[int, ...]]]]:
    """Readings of the group's value as ``v0 + sum_j 2^j f_j``, ``f_j`` 0/1 functions of word bits: per column
    ``j`` the ``(j, v0, leaves, table)`` it may be (one word bit whose values match, each such bit; or a table read
    off the random inputs over the group's leaves). Empty when a column cannot be read. A group holding several
    columns (the bits of two columns carried as forms over shared signals) is split into its binary digits."""
    value = sum(a * r.vals[s] for s, a in g.terms)
    v0, top = int(value.min()), int(value.max())
    step = top - v0
    if step <= 0:
        return []
    if not step & (step - 1) and bool(((value == v0) | (value == top)).all()):
        found = _one_column(reg, g, (value - v0) // step, step.bit_length() - 1, v0)
        return [found] if found else []
    out = []
    for j in range(step.bit_length()):
        f = ((value - v0) >> j) & 1
        if bool((f == f[0]).all()):
            continue
        hits = reg.get(fingerprint(f), [])
        if not hits:
            return []
        out.append([(j, v0, [_positive(h)], (0, 1) if h[1] >= 0 else (1, 0)) for h in hits])
    return out


def _one_column(reg: Registry, g: Group, f: Tensor, j: int, v0: int) -> list:
    """The readings of one 0/1 column ``f`` (see :func:`column_of`)."""
    hits = reg.get(fingerprint(f), [])
    if hits:
        return [(j, v0, [_positive(h)], (0, 1) if h[1] >= 0 else (1, 0)) for h in hits]
    if not g.leaves or len(g.leaves) > MAX_LEAVES or any(t[0] == "sig" for t in g.leaves):
        return []
    index = sum(reg.values[t] << i for i, t in enumerate(g.leaves))
    table = [-1] * (1 << len(g.leaves))
    for i, v in zip(index.tolist(), f.tolist()):
        if table[i] not in (-1, v):
            return []
        table[i] = v
    return [(j, v0, g.leaves, tuple(table))] if -1 not in table else []


def _signature(adder: Adder, leaves: list[tuple[str, int]], p: int, table: tuple[int, ...]) -> tuple:
    """``((word, left rotation) per leaf, table)``, leaves in a canonical order: equal in every column of one
    operand word."""
    rots = [(w, (p - q) % adder.n) for w, q in leaves]
    order = sorted(range(len(rots)), key=lambda i: rots[i])
    k = len(order)
    permuted = tuple(table[sum(((row >> new) & 1) << old for new, old in enumerate(order))] for row in range(1 << k))
    return tuple(rots[i] for i in order), permuted


def _tracks(r: Reader, adder: Adder, reg: Registry) -> tuple[list, int, list]:
    """Operand words (signature, ``{bit: (group, j, v0)}``) found in every column, the groups left over, and the
    words found in at least half the columns. A group that matches several word bits takes the one whose signature
    the most columns share."""
    readings, left, start, prev = [], 0, 0, None
    for block in adder.blocks:
        k = r.lf.keys[block.key]
        terms = [(s, k.sign * a) for s, a in k.terms if prev is None or r.lf.level_of.get(s, (None,))[0] != prev]
        for g in groups(r, reg, terms):
            columns = column_of(r, reg, g) or [[]]
            for column in columns:
                found = [(start + j, (g, j, v0), _signature(adder, leaves_, start + j, table))
                         for j, v0, leaves_, table in column if j < block.size]
                readings.append(found)
                left += not found
        start, prev = start + block.size, block.key
    votes = Counter(sig for found in readings for sig in {sig for _, _, sig in found})
    tracks: dict[tuple, dict] = {}
    for found in filter(None, readings):
        p, entry, sig = max(found, key=lambda x: votes[x[2]])
        tracks.setdefault(sig, {})[p] = entry
    full = [(sig, cols) for sig, cols in tracks.items() if len(cols) == adder.n]
    some = [(sig, cols) for sig, cols in tracks.items() if adder.n // 2 <= len(cols) < adder.n]
    return full, left + sum(len(cols) for cols in tracks.values() if len(cols) != adder.n), some


def _word_value(r: Reader, cols: dict[int, tuple[Group, int, int]]) -> Tensor:
    word = torch.zeros_like(r.vals[0])
    for p, (g, j, v0) in cols.items():
        word += (((sum(a * r.vals[s] for s, a in g.terms) - v0) >> j) & 1) << p
    return word


def describe(sig: tuple, n: int) -> str:
    leaves, table = sig
    args = [w if rot == 0 else f"rotl({w}, {rot})" if rot <= n // 2 else f"rotr({w}, {n - rot})" for w, rot in leaves]
    return function_name(table, args)


def read_operands(r: Reader, adder: Adder, registries: list[Registry]) -> None:
    """Fill ``adder.operands`` / ``constant`` / ``functions`` when the output word minus the operand words is one
    constant on every random input (message words tried in both byte orders); else ``functions`` only, from the
    bitwise functions found in at least half the columns."""
    partial = []
    for reg in registries:
        full, _, some = _tracks(r, adder, reg)
        partial = partial or some
        mod = (1 << adder.n) - 1
        rest = (r.output_word(adder) - sum((_word_value(r, cols) for _, cols in full), torch.zeros_like(r.vals[0]))) & mod
        if bool((rest == rest[0]).all()):
            adder.operands = [describe(sig, adder.n) for sig, _ in full]
            adder.constant = int(rest[0])
            adder.functions = [(max(g.layer for g, _, _ in cols.values()), describe(sig, adder.n), adder.n)
                               for sig, cols in full if len(sig[0]) > 1]
            adder.rotations = [(rot, w) for sig, _ in full for w, rot in sig[0] if rot]
            return
    adder.functions = [(max(g.layer for g, _, _ in cols.values()), describe(sig, adder.n), len(cols))
                       for sig, cols in partial if len(sig[0]) > 1]


def statements(r: Reader) -> list[str]:
    """One line per adder, bitwise function and rotation found (operands verified on random inputs)."""
    out = []
    registries = [Registry(r, False), Registry(r, True)] if r.bytes_domain else [Registry(r, False)]
    for adder in r.adders:
        read_operands(r, adder, registries)
        a, b = adder.layers
        span = f"layers {a}..{b}" if b > a else f"layer {a}"
        head = f"{span}: {adder.n}-bit adder (mod 2^{adder.n})"
        if adder.operands is None:
            out.append(f"{head} -> {adder.name}; its operands are not all read as words")
            out += [f"layer {layer}: bitwise {text} on {k} of {adder.n} bits (an operand of {adder.name})"
                    for layer, text, k in adder.functions]
            continue
        ops = adder.operands + ([f"0x{adder.constant:0{adder.n // 4}x}"] if adder.constant else [])
        out.append(f"{head} of {len(ops)} words: {adder.name} = {' + '.join(ops)}")
        out += [f"layer {layer}: bitwise {text} on {adder.n} bits (an operand of {adder.name})"
                for layer, text, _ in adder.functions]
        for rot, w in adder.rotations:
            turn = f"left by {rot}" if rot <= adder.n // 2 else f"right by {adder.n - rot}"
            out.append(f"{span}: rotation {turn} of {w} (read by {adder.name})")
    return out
