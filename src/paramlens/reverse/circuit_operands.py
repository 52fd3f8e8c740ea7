"""The operand words of the adders found by :mod:`paramlens.reverse.circuit_words`, and the statements.

A *word bit* is ``(word, bit)``: an adder's output bit (``W1``, ``W2``, ... in order of depth) or a message bit
(``M0``, ``M1``, ...: 4 bytes each, in either byte order) of a bytes network. Signals are matched to word bits by
their values on the random inputs (a bit or its negation), so a word bit is found however the lift wrote it (a gate,
an input bit, a sum of levels).

Each block's terms split into groups; a group is one column's operand bit (``v0 + 2^j f``), or, when bits of two
columns were carried as forms over shared signals, several columns read off its binary digits. Columns reading the
same words at the same rotations make a *track*; a track stands for its function on every bit, or for a named
function with constant words (:mod:`paramlens.reverse.circuit_functions`). Candidate operands are kept only when the
output word minus their sum is one constant on every random input: at most :data:`MAX_PICKS` combinations tried.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from paramlens.reverse.circuit_functions import Operand, arg_text, track_operands
from paramlens.reverse.circuit_masks import masked_operands
from paramlens.reverse.circuit_words import MAX_LEAVES, Adder, Reader, function_name

MAX_PICKS = 4096


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


def bit_print(r: Reader, key: int) -> bytes:
    """:func:`fingerprint` of a ladder key's own bit, kept on the reader."""
    if ("bit", key) not in r.prints:
        r.prints["bit", key] = fingerprint(r.bit(key))
    return r.prints["bit", key]


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
    if key in r.lf.ladder_of and (hit := reg.get(bit_print(r, key))) is not None:
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


def _tracks(r: Reader, adder: Adder, reg: Registry) -> dict[tuple, dict[int, tuple[tuple[int, ...], int]]]:
    """Operand tracks: ``(word, left rotation)`` leaves -> ``{bit: (truth table, layer)}`` of the columns where a
    group reads as that function of those leaves. A group that matches several word bits takes the one whose
    signature the most columns share."""
    readings, start, prev = [], 0, None
    for block in adder.blocks:
        k = r.lf.keys[block.key]
        terms = [(s, k.sign * a) for s, a in k.terms if prev is None or r.lf.level_of.get(s, (None,))[0] != prev]
        for g in groups(r, reg, terms):
            for column in column_of(r, reg, g):
                readings.append([(start + j, g.layer, _signature(adder, leaves_, start + j, table))
                                 for j, _, leaves_, table in column if j < block.size])
        start, prev = start + block.size, block.key
    votes = Counter(sig for found in readings for sig in {sig for _, _, sig in found})
    tracks: dict[tuple, dict] = {}
    for found in filter(None, readings):
        p, layer, (leaves_, table) = max(found, key=lambda x: votes[x[2]])
        tracks.setdefault(leaves_, {})[p] = (table, layer)
    return tracks


def word_values(reg: Registry, n: int) -> dict[str, Tensor]:
    """Every word of the registry as ``n``-bit integers ``(samples,)``."""
    words: dict[str, Tensor] = {}
    for (w, q), v in reg.values.items():
        words[w] = words.get(w, torch.zeros_like(v)) + (v.long() << q)
    return words


def candidates(r: Reader, adder: Adder, reg: Registry) -> tuple[list[list[tuple[Operand, int]]], list, list]:
    """Per track read in enough columns (a quarter; an eighth for 2 or more words), the whole-word operands it
    may be ``[(operand, layer)]``; the bitwise functions of 2 or more words among them (``(layer, text,
    columns)``), for when none verify; and the ``(word, rotation)`` of the one-word tracks, then the words of the
    others."""
    words, found, seen, singles = word_values(reg, adder.n), [], [], []
    for leaves_, cols in sorted(_tracks(r, adder, reg).items(), key=lambda x: -len(x[1])):
        if len(cols) < adder.n // (8 if len(leaves_) > 1 else 4):
            continue
        layer = max(layer for _, layer in cols.values())
        options = track_operands(words, list(leaves_), {p: t for p, (t, _) in cols.items()}, adder.n)
        found.append([(op, layer) for op in options])
        table = Counter(t for t, _ in cols.values()).most_common(1)[0][0]
        if len(leaves_) > 1:
            seen.append((layer, options[-1].text if len(options) > 1 else options[0].text,
                         len(cols) if len(options) > 1 else sum(t == table for t, _ in cols.values())))
        else:
            singles.append(leaves_[0])
    for options in found:  # the words of the functions, unrotated, may also be read through constants
        singles += [(w, 0) for w in options[0][0].words if (w, 0) not in singles]
    return found, seen, sorted(singles, key=lambda leaf: leaf[1] != 0)  # unrotated words first


def describe(sig: tuple, n: int) -> str:
    """The text of a track's signature ``(leaves, table)`` on ``n``-bit words."""
    leaves_, table = sig
    return function_name(table, [arg_text(w, rot, n) for w, rot in leaves_])


def verify(r: Reader, adder: Adder, found: list[list[tuple[Operand, int]]]) -> tuple[list, int] | None:
    """One reading per track (or none; at most 6 tracks, :data:`MAX_PICKS` combinations), the most tracks first,
    whose operands' sum differs from the output word by one constant on every random input: ``(operands,
    constant)``."""
    mod, out = (1 << adder.n) - 1, r.output_word(adder)
    found = [list(options) for options in found[:6]]
    while np.prod([len(options) + 1 for options in found]) > MAX_PICKS:
        longest = max(found, key=len)
        del longest[max(1, len(longest) // 2):]
    choices = sorted(itertools.product(*([None, *options] for options in found)),
                     key=lambda pick: -sum(x is not None for x in pick))
    for pick in choices:
        ops = [x for x in pick if x is not None]
        if not ops:
            return None
        rest = (out - sum(op.value for op, _ in ops)) & mod
        if bool((rest == rest[0]).all()):
            return ops, int(rest[0])
    return None


def read_operands(r: Reader, adder: Adder, registries: list[Registry]) -> None:
    """Fill ``adder.operands`` / ``constant`` / ``functions`` / ``rotations`` when the output word minus some
    candidate operand words is one constant on every random input (message words tried in both byte orders; then
    words read through constants, :mod:`paramlens.reverse.circuit_masks`); else ``functions`` only, from the
    bitwise functions of 2 or more words the tracks show (with the columns they were seen in)."""
    read = [(reg, *candidates(r, adder, reg)) for reg in registries]
    hits = itertools.chain((verify(r, adder, found) for _, found, _, _ in read),
                           (masked_operands(r.output_word(adder), [opts[0] for opts in found if opts[0][0].function],
                                            singles, word_values(reg, adder.n), adder.n)
                            for reg, found, _, singles in read))
    hit = next((h for h in hits if h is not None), None)
    if hit is None:
        adder.functions = next((left for _, _, left, _ in read if left), [])
        return
    ops, adder.constant = hit
    adder.operands = [op.text for op, _ in ops]
    layers = [layer for _, layer in ops if layer >= 0] or [adder.layers[0] - 1]
    adder.functions = [(layer if layer >= 0 else max(layers), op.text, adder.n) for op, layer in ops if op.function]
    adder.rotations = [rot for op, _ in ops for rot in op.rotations]


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
