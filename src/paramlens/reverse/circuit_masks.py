"""Words an adder reads bit by bit through constants: ``choice(W, Y, Z)`` with constant ``Y``, ``Z`` (what
``Ch(e, f, g)``, ``Maj(a, b, c)`` or MD5's ``F`` leave of a word while the other arguments are still constant).

As an integer, ``choice(W, Y, Z) = Z + sum_p D_p W_p 2^p`` with ``D_p = Y_p - Z_p`` in ``{-1, 0, 1}``. Given the
rest ``R`` of an adder's output (the other operands subtracted, ``(samples,)`` ``n``-bit integers) and candidate
words, :func:`solve` finds ``D`` per word and a constant ``C`` with ``R = C + sum_k sum_p D_kp W_kp 2^p (mod
2^n)`` on every sample, bit by bit from the lowest: at bit ``p`` the choices that keep ``R - partial sum`` one
constant modulo ``2^(p + 1)`` survive (at most :data:`BEAM` kept; ``+1`` and ``-1`` part at the bit above).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

BEAM = 16


def solve(rest: Tensor, words: list[Tensor], n: int) -> list[list[int]] | None:
    """``D`` (per word, per bit, in ``{-1, 0, 1}``) with ``rest - sum D W 2^p`` one constant mod ``2^n``, or None."""
    bits = [[(w >> p) & 1 for p in range(n)] for w in words]
    beams: list[tuple[list[list[int]], Tensor]] = [([[] for _ in words], torch.zeros_like(rest))]
    for p in range(n):
        mod = (1 << (p + 1)) - 1
        grown = []
        for ds, partial in beams:
            for pick in itertools.product((1, 0, -1), repeat=len(words)):
                total = partial + sum((d * bits[k][p] << p for k, d in enumerate(pick) if d),
                                      torch.zeros_like(rest))
                gap = (rest - total) & mod
                if bool((gap == gap[0]).all()):
                    grown.append(([d + [x] for d, x in zip(ds, pick)], total))
        if not grown:
            return None
        beams = grown[:BEAM]
    return beams[0][0]


def masked_text(word: str, ds: list[int], n: int) -> tuple[str, int]:
    """The text of ``choice(word, Y, Z)`` for ``D`` (``word`` itself when every ``D_p`` is 1) and the constant
    ``Z`` it adds."""
    y = sum(1 << p for p, d in enumerate(ds) if d == 1)
    z = sum(1 << p for p, d in enumerate(ds) if d == -1)
    if y == (1 << n) - 1:
        return word, 0
    return f"choice({word}, 0x{y:0{n // 4}x}, 0x{z:0{n // 4}x})", z


def masked_operands(out: Tensor, functions: list, singles: list[tuple[str, int]], words: dict[str, Tensor],
                    n: int) -> tuple[list, int] | None:
    """Operands of an adder whose output is ``out``: some of the bitwise ``functions`` (``(Operand, layer)``, the
    most first) plus ``choice(W, Y, Z)`` of the ``singles`` (``(word, left rotation)``, at most 3), verified:
    ``(operands, constant)`` or None."""
    from paramlens.reverse.circuit_functions import Operand, arg_text, rotl

    mod = (1 << n) - 1
    args = [(arg_text(w, rot, n), rotl(words[w], rot, n), rot, w) for w, rot in singles[:3]]
    for size in range(len(functions[:4]), -1, -1):
        for subset in itertools.combinations(functions[:4], size):
            rest = (out - sum((op.value for op, _ in subset), torch.zeros_like(out))) & mod
            ds = solve(rest, [v for _, v, _, _ in args], n) if args else None
            if ds is None:
                continue
            ops = list(subset)
            for (text, value, rot, w), d in zip(args, ds):
                if any(d):
                    shown, z = masked_text(text, d, n)
                    y = sum(1 << p for p, x in enumerate(d) if x == 1)
                    masked = (value & y) | (~value & mod & z)
                    ops.append((Operand(shown, masked, shown != text, [(rot, w)] if rot else []), -1))
            left = (out - sum(op.value for op, _ in ops)) & mod
            if ops and bool((left == left[0]).all()):
                return ops, int(left[0])
    return None
