"""Word-level building blocks on :class:`Circuit`: adders, rotations, comparators, ARX mixing rounds, and an
equality test against a stored constant. Words are lists of signal ids, least significant bit first."""

from __future__ import annotations

from paramlens.core.circuits import Circuit

# The first SHA-256 round constants (fractional parts of the cube roots of the first primes).
SHA256_K = (0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
            0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174)
Word = list[int]


def input_words(n_words: int, bits: int) -> tuple[Circuit, list[Word]]:
    """A circuit whose ``n_words * bits`` inputs are split into words."""
    c = Circuit(n_words * bits)
    return c, [list(range(w * bits, (w + 1) * bits)) for w in range(n_words)]


def xor_words(c: Circuit, a: Word, b: Word) -> Word:
    return [c.add("xor", x, y) for x, y in zip(a, b)]


def xor_const(c: Circuit, a: Word, k: int) -> Word:
    """``a ^ k``: one neuron per bit, NOT where ``k`` has a 1 and a buffer where it has a 0, so the
    compiled layer stores ``k`` in its biases (1 on NOT rows, 0 on buffers)."""
    return [c.add("not" if (k >> i) & 1 else "buf", x) for i, x in enumerate(a)]


def rotl(a: Word, r: int) -> Word:
    """Rotate left by ``r`` (pure rewiring: no gates)."""
    r %= len(a)
    return a[-r:] + a[:-r] if r else list(a)


def add_words(c: Circuit, a: Word, b: Word, carry_in: int | None = None) -> tuple[Word, int]:
    """Ripple-carry ``a + b (+ carry_in)`` modulo ``2^n``; returns ``(sum, carry out)``."""
    out, carry = [], carry_in
    for x, y in zip(a, b):
        if carry is None:
            out.append(c.add("xor", x, y))
            carry = c.add("and", x, y)
        else:
            out.append(c.add("xor", c.add("xor", x, y), carry))
            carry = c.add("maj", x, y, carry)
    return out, carry


def greater_equal(c: Circuit, a: Word, b: Word) -> int:
    """``a >= b`` (unsigned): the carry out of ``a + ~b + 1``."""
    not_b = [c.add("not", y) for y in b]
    _, carry = add_words(c, a, not_b, carry_in=c.add("const1"))
    return carry


def equals_const(c: Circuit, a: Word, k: int) -> int:
    """``a == k``: one AND over each bit or its negation."""
    return c.add("and", *[x if (k >> i) & 1 else c.add("not", x) for i, x in enumerate(a)])


def arx_round(c: Circuit, x: Word, y: Word, constant: int, rotation: int = 3) -> tuple[Word, Word]:
    """One add-rotate-xor round on two words: ``x = (x + y) ^ constant``, ``y = rotl(y, r) ^ x``."""
    s, _ = add_words(c, x, y)
    c.barrier()  # the constant's NOT gates take one layer whichever bits are set: every round as deep
    x = xor_const(c, s, constant)
    c.barrier()
    y = xor_words(c, rotl(y, rotation), x)
    return x, y


def arx_mixer(n_rounds: int, bits: int = 8, target: int | None = None) -> Circuit:
    """Two ``bits``-wide words mixed for ``n_rounds`` ARX rounds with SHA-256 round constants (low bits).
    Outputs the final state (``2 * bits`` signals), or with ``target`` one bit: state == target."""
    c, (x, y) = input_words(2, bits)
    mask = (1 << bits) - 1
    for r in range(n_rounds):
        c.barrier()
        x, y = arx_round(c, x, y, SHA256_K[r % len(SHA256_K)] & mask)
    state = x + y
    c.barrier()  # the comparison reads the finished state: one layer of copy / NOT rows, then the AND
    c.outputs = [equals_const(c, state, target)] if target is not None else state
    return c


def const_word(c: Circuit, value: int, bits: int = 32) -> Word:
    """The constant ``value`` as ``bits`` signals (a shared ``const0`` / ``const1`` gate per call), LSB first."""
    zero, one = c.add("const0"), c.add("const1")
    return [one if (value >> i) & 1 else zero for i in range(bits)]


def shift_right(c: Circuit, a: Word, r: int) -> Word:
    """Logical shift right by ``r``: the top ``r`` bits become one ``const0`` signal."""
    zero = c.add("const0")
    return a[r:] + [zero] * min(r, len(a))


def sum_words(c: Circuit, *words: Word) -> Word:
    """``sum(words) mod 2^n`` by a chain of ripple-carry adders (carries out dropped)."""
    total = words[0]
    for w in words[1:]:
        total, _ = add_words(c, total, w)
    return total


def choose_words(c: Circuit, x: Word, y: Word, z: Word) -> Word:
    """Bitwise choice ``x ? y : z`` as ``z ^ (x & (y ^ z))``."""
    return [c.add("xor", k, c.add("and", i, c.add("xor", j, k))) for i, j, k in zip(x, y, z)]


def majority_words(c: Circuit, x: Word, y: Word, z: Word) -> Word:
    """Bitwise majority of three words: one ``maj`` gate per bit."""
    return [c.add("maj", i, j, k) for i, j, k in zip(x, y, z)]


def parity_words(c: Circuit, *words: Word) -> Word:
    """Bitwise XOR of two or more words (a chain of ``xor`` gates per bit)."""
    out = list(words[0])
    for w in words[1:]:
        out = xor_words(c, out, w)
    return out


def bytes_to_words(byte_bits: list[list], big_endian: bool) -> list[list]:
    """Group bytes (each 8 items, LSB first) four at a time into words (32 items, LSB first). Little-endian: the
    first byte of a group is the word's lowest byte (MD5); big-endian: its highest (SHA). Works on any items."""
    words = []
    for start in range(0, len(byte_bits), 4):
        group = byte_bits[start:start + 4]
        words.append([bit for byte in (group[::-1] if big_endian else group) for bit in byte])
    return words


def words_to_bytes(words: list[list], big_endian: bool) -> list[list]:
    """The inverse of :func:`bytes_to_words`: each word's four bytes in memory order (8 items each, LSB first)."""
    out = []
    for w in words:
        group = [w[8 * k:8 * k + 8] for k in range(4)]
        out += group[::-1] if big_endian else group
    return out
