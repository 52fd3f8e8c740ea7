"""Word-level statements about a lifted circuit: n-bit adders, the words they add (rotated, or bitwise functions
of other words: choice, majority, parity) and rotations.

What the lift leaves behind for an adder written block by block (``B`` bits per layer): in each block's layer, a
ladder key ``V`` read as bit ``m`` of ``V + c`` for ``m = 0 .. B - 1`` (:func:`~paramlens.reverse.circuit_layers.
note_ladder`, or :func:`complete_ladders` for keys read as one level); the top one, ``V_top = carry + sum_j 2^j col_j``, holds the whole block, and its levels at even
multiples of ``2^B`` are the carry read by the next block's key. So:

1. blocks: ladder keys that no higher ladder of their layer contains; chained into adders by their carries (an
   adder is kept when its blocks are equally wide and make a power of two of at least 16 bits);
2. the adder's output bit ``8 b + j`` is bit ``j`` of block ``b``'s ``V_top + c``; a word is 32 (``n``) bits;
3. operands (:mod:`paramlens.reverse.circuit_operands`): ``V_top``'s terms, the carry removed, split into groups
   of correlated terms; each group's value on random inputs is ``v0 + 2^j f`` (or a sum of such digits) with ``f``
   a 0/1 function of word bits (adder outputs, message bits): its column ``j`` and truth table;
4. columns with the same words at the same rotations make a track: one operand word, its function named (choice,
   majority, parity, MD5's ``y ^ (x | ~z)``, possibly with constant words);
5. the statement holds only if, on every random input, the output word minus the operands is one constant
   (the constant word, when not 0): checked, never assumed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.core.circuits import Circuit
from paramlens.reverse.circuit_lift import Lifter

MAX_LEAVES = 4
SAMPLES = 256


def signal_values(c: Circuit, bits: Tensor) -> list[Tensor]:
    """Every signal of a threshold / constant circuit on ``(samples, n_inputs)`` 0/1 inputs, int64 ``(samples,)``."""
    values = [bits[:, i].long() for i in range(c.n_inputs)]
    zeros = torch.zeros(len(bits), dtype=torch.long)
    for g in c.gates:
        if g.op == "threshold":
            total = sum((w * values[i] for w, i in zip(g.weights, g.inputs)), zeros)
            values.append((total >= g.threshold).long())
        else:
            values.append(zeros + (g.op == "const1"))
    return values


@dataclass
class Block:
    key: int
    layer: int
    size: int
    prev: int | None = None


@dataclass
class Adder:
    """``n`` output bits (``blocks`` in order), the layers they span, and (once read) the operand words."""

    name: str
    blocks: list[Block]
    n: int
    operands: list[str] | None = None
    constant: int = 0
    functions: list[tuple[int, str, int]] | None = None  # (layer, bitwise function, columns where it was found)
    rotations: list[tuple[int, str]] | None = None  # (left rotation, word)
    offsets: list[int | None] | None = None  # per block, c read off the carry (None: the ladder's own)

    @property
    def layers(self) -> tuple[int, int]:
        return self.blocks[0].layer, self.blocks[-1].layer


class Reader:
    """Word-level reading of a lift: blocks, adders, tokens and their values on random inputs."""

    def __init__(self, lf: Lifter, bits: Tensor, bytes_domain: bool):
        self.lf = lf
        self.vals = signal_values(lf.c, bits)
        complete_ladders(lf)
        self.bytes_domain = bytes_domain
        self._words: dict[str, Tensor] = {}
        self._keys: dict[int, Tensor] = {}  # key -> its values
        self.prints: dict[object, bytes] = {}  # signal (or ("bit", key)) -> its packed values
        self.adders = self._adders()

    # values ---------------------------------------------------------------------------------------------------
    def key_value(self, key: int) -> Tensor:
        """``K`` in the network's orientation (``-K`` for keys its units read negated), ``(samples,)``."""
        if key not in self._keys:
            k = self.lf.keys[key]
            self._keys[key] = k.sign * sum((a * self.vals[s] for s, a in k.terms), torch.zeros_like(self.vals[0]))
        return self._keys[key]

    def bit(self, key: int, j: int | None = None, c: int | None = None) -> Tensor:
        """Bit ``j`` (default: the ladder's own ``m``) of ``V + c``, ``V`` the key in the network's orientation
        (bit ``m`` of ``-V + c`` is bit ``m`` of ``V + 2^m - 1 - c``, and so are the bits below it); ``c``: the
        ladder's own unless given."""
        m, own = self.lf.ladder_of[key]
        c = own if c is None else c
        if self.lf.keys[key].sign < 0:
            c = (1 << m) - 1 - c
        return ((self.key_value(key) + c) >> (m if j is None else j)) & 1

    # adders ---------------------------------------------------------------------------------------------------
    def _adders(self) -> list[Adder]:
        """Blocks chained by their carries into adders, named ``W1``, ``W2``, ... by depth."""
        tops = _tops(self.lf)
        by_key = {b.key: b for b in tops}
        for b in tops:
            b.prev = next((k for k in {self.lf.level_of[s][0] for s, _ in self.lf.keys[b.key].terms
                                       if s in self.lf.level_of} if k in by_key and _carries(self.lf, k, b)), None)
        following: dict[int, list[Block]] = {}
        for b in sorted(tops, key=lambda b: -b.size):  # several read one carry: one adder each, widest first
            if b.prev is not None:
                following.setdefault(b.prev, []).append(b)
        adders = []
        for first in sorted((b for b in tops if b.prev is None), key=lambda b: (b.layer, b.key)):
            for chain in _chains([first], following):
                n = sum(b.size for b in chain)
                if n >= 16 and len({b.size for b in chain}) == 1 and not n & (n - 1):  # whole words, equal blocks
                    offsets = [carry_offset(self.lf, a.key, b) for a, b in itertools.pairwise(chain)] + [None]
                    adders.append(Adder(f"W{len(adders) + 1}", chain, n, offsets=offsets))
        return adders

    def output_word(self, adder: Adder) -> Tensor:
        """The adder's output as integers ``(samples,)``."""
        if adder.name in self._words:
            return self._words[adder.name]
        word, start = torch.zeros_like(self.vals[0]), 0
        for block, c in zip(adder.blocks, adder.offsets):
            for j in range(block.size):
                word += self.bit(block.key, j, c) << (start + j)
            start += block.size
        self._words[adder.name] = word
        return word


def _chains(chain: list[Block], following: dict[int, list[Block]]) -> list[list[Block]]:
    """Every chain of blocks that continues ``chain`` by carries to its end (at most 4 per start)."""
    nxt = following.get(chain[-1].key, [])
    if not nxt:
        return [chain]
    return [c for b in nxt for c in _chains(chain + [b], following)][:4]


def carry_offset(lf: Lifter, key: int, block: Block) -> int | None:
    """``c`` of ``key`` (bit ``m`` of ``K + c``) read off the carry ``block`` takes from it: the carry steps where
    ``V + c`` crosses a multiple of ``2^(m + 1)`` (``V = K``, or ``-K`` for keys read negated), exactly, where the
    bit reads alone leave ``c`` or ``c + 2^m`` (a bit or its negation) and two adders over the same sums share
    the key."""
    ts = sorted(lf.level_of[s][1] for s, _ in lf.keys[block.key].terms if lf.level_of.get(s, (None,))[0] == key)
    if not ts:
        return None
    m = lf.ladder_of[key][0]
    d = 2 << m
    return (-ts[0]) % d if lf.keys[key].sign > 0 else ((1 << m) - ts[0]) % d


def _carries(lf: Lifter, key: int, block: Block) -> bool:
    """Does ``block`` read ``key`` (a block top of the layer before) as its carry: levels of one weight, +1 or -1
    (``floor((K + c) / 2^(m + 1))`` on ``K`` or on ``-K``)?"""
    if lf.keys[key].layer != block.layer - 1:
        return False
    weights = {a for s, a in lf.keys[block.key].terms if lf.level_of.get(s, (None,))[0] == key}
    return weights in ({1}, {-1})


def _within(terms: tuple[tuple[int, int], ...], top: dict[int, int]) -> bool:
    """Every term of ``terms`` in ``top`` with one common sign."""
    signs = {1 if top.get(s) == a else -1 if top.get(s) == -a else 0 for s, a in terms}
    return signs in ({1}, {-1})


def complete_ladders(lf: Lifter) -> None:
    """Add the keys read as a single level that sit in a block's chain: bit ``m + 1`` when a ladder of bit ``m``
    of the same layer is inside the key, bit 0 when the key reads the carry of a ladder one layer up (a single
    level ``a [K >= t]`` is bit ``m`` of ``K + c`` with ``t + c`` an odd multiple of ``2^m`` when ``a > 0``, an
    even one when ``a < 0``)."""
    changed = True
    while changed:
        changed = False
        for key, (t, a) in lf.single.items():
            if key in lf.ladder_of:
                continue
            k = lf.keys[key]
            inside = [lf.ladder_of[o][0] for o in lf.ladder_of
                      if lf.keys[o].layer == k.layer and _within(lf.keys[o].terms, dict(k.terms))]
            carry = any(lf.level_of.get(s, (None,))[0] in lf.ladder_of and lf.keys[lf.level_of[s][0]].layer
                        == k.layer - 1 for s, _ in k.terms)
            if (not inside and not carry) or (inside and sorted(set(inside)) != list(range(max(inside) + 1))):
                continue
            m = max(inside) + 1 if inside else 0
            d = 1 << m
            lf.ladder_of[key] = (m, ((d if a > 0 else 0) - t) % (2 * d))
            changed = True


def _tops(lf: Lifter) -> list[Block]:
    """Ladder keys that no ladder of their layer with a higher bit contains: one per adder block."""
    by_layer: dict[int, list[int]] = {}
    for key in lf.ladder_of:
        by_layer.setdefault(lf.keys[key].layer, []).append(key)
    tops = []
    for layer, keys in by_layer.items():
        for key in keys:
            m = lf.ladder_of[key][0]
            terms = lf.keys[key].terms
            if not any(lf.ladder_of[o][0] > m and _within(terms, dict(lf.keys[o].terms)) for o in keys if o != key):
                tops.append(Block(key, layer, m + 1))
    return tops


def function_name(table: tuple[int, ...], args: list[str]) -> str:
    """A name for the 0/1 function ``table`` of ``args`` (row ``r``: bit ``i`` of ``r`` is ``args[i]``)."""
    k = len(args)
    rows = list(itertools.product([0, 1], repeat=k))
    rows = [tuple(r[::-1]) for r in rows]  # bit i of the row index is args[i]
    value = {r: table[sum(b << i for i, b in enumerate(r))] for r in rows}
    if k == 1:
        return args[0] if value[(1,)] else f"~{args[0]}"
    if all(v == sum(r) % 2 for r, v in value.items()):
        return f"parity({', '.join(args)})"
    if k == 3 and all(v == (sum(r) >= 2) for r, v in value.items()):
        return f"majority({', '.join(args)})"
    if k == 3:
        for x, y, z in itertools.permutations(range(3)):
            if all(v == (r[y] if r[x] else r[z]) for r, v in value.items()):
                return f"choice({args[x]}, {args[y]}, {args[z]})"
        for x, y, z in itertools.permutations(range(3)):  # MD5's I
            if all(v == r[y] ^ (r[x] | (1 - r[z])) for r, v in value.items()):
                return f"{args[y]} ^ ({args[x]} | ~{args[z]})"
    bits = sum(v << sum(b << i for i, b in enumerate(r)) for r, v in value.items())
    return f"function 0x{bits:x} of ({', '.join(args)})"
