"""MD5, SHA-1 and SHA-256 of one short message: constants, pure-Python references with a ``steps`` argument, and
the same functions as :class:`Circuit` s for :func:`~paramlens.models.compiled.compile_circuit`.

A message of ``n_bytes <= 55`` bytes fills one 64-byte block together with its padding (``0x80``, zeros, the
length in bits as 8 bytes: little-endian for MD5, big-endian for SHA). ``steps`` runs the first that many
compression steps (full: MD5 64, SHA-1 80, SHA-256 64; the message schedule as far as those steps read it) and
then adds the initial state as usual, so at full steps the digest is hashlib's.

Circuit inputs: ``8 * n_bytes`` bits, input ``8 i + j`` = bit ``j`` (value ``2^j``) of message byte ``i``.
Circuit outputs: the digest bits in the same order (output ``8 k + j`` = bit ``j`` of digest byte ``k``), or,
given ``target``, one bit: digest == target. Words inside are 32 signals, least significant bit first.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from paramlens.core.circuits import Circuit
from paramlens.errors import ParamLensError
from paramlens.models.compiled.builders import (
    Word,
    bytes_to_words,
    choose_words,
    const_word,
    equals_const,
    majority_words,
    parity_words,
    rotl,
    shift_right,
    sum_words,
    words_to_bytes,
    xor_words,
)

M32 = 0xFFFFFFFF
MAX_BYTES = 55  # the longest message whose padding fits the same 64-byte block
FULL_STEPS = {"md5": 64, "sha1": 80, "sha256": 64}
BIG_ENDIAN = {"md5": False, "sha1": True, "sha256": True}


def _primes(n: int) -> list[int]:
    found: list[int] = []
    k = 2
    while len(found) < n:
        if all(k % p for p in found):
            found.append(k)
        k += 1
    return found


def _root_fraction(p: int, k: int) -> int:
    """The first 32 bits of the fractional part of ``p ** (1 / k)``, exactly (integer Newton iteration)."""
    n = p << (32 * k)
    x = 1 << (n.bit_length() // k + 1)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x & M32
        x = y


MD5_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
MD5_K = tuple(int(abs(math.sin(i + 1)) * 2**32) & M32 for i in range(64))
MD5_SHIFTS = ((7, 12, 17, 22), (5, 9, 14, 20), (4, 11, 16, 23), (6, 10, 15, 21))
SHA1_IV = (*MD5_IV, 0xC3D2E1F0)
SHA1_K = tuple(math.isqrt(n << 60) for n in (2, 3, 5, 10))  # 2^30 sqrt(n), one per round of 20 steps
SHA256_IV = tuple(_root_fraction(p, 2) for p in _primes(8))
SHA256_K = tuple(_root_fraction(p, 3) for p in _primes(64))
SHA256_BIG_SIGMA = ((2, 13, 22), (6, 11, 25))  # Sigma0(a), Sigma1(e): right rotations, XORed
SHA256_SMALL_SIGMA = (((7, 18), 3), ((17, 19), 10))  # sigma0, sigma1 of the schedule: (right rotations, right shift)


def md5_index(i: int) -> int:
    """The message word MD5 step ``i`` reads."""
    return (i, 5 * i + 1, 3 * i + 5, 7 * i)[i // 16] % 16


def md5_shift(i: int) -> int:
    """The left rotation of MD5 step ``i``."""
    return MD5_SHIFTS[i // 16][i % 4]


def check_message(name: str, n_bytes: int, steps: int | None) -> int:
    """``steps`` (None: full) after checking it and ``n_bytes`` for hash ``name``."""
    if name not in FULL_STEPS:
        raise ParamLensError(f"unknown hash '{name}'; hashes: {', '.join(FULL_STEPS)}")
    if not 1 <= n_bytes <= MAX_BYTES:
        raise ParamLensError(f"messages of 1..{MAX_BYTES} bytes fit one block; got {n_bytes}")
    full = FULL_STEPS[name]
    steps = full if steps is None else steps
    if not 0 <= steps <= full:
        raise ParamLensError(f"{name} has {full} steps; got steps={steps}")
    return steps


def padding(n_bytes: int, big_endian: bool) -> bytes:
    """The ``64 - n_bytes`` bytes that follow an ``n_bytes`` message in its block."""
    return b"\x80" + bytes(MAX_BYTES - n_bytes) + (8 * n_bytes).to_bytes(8, "big" if big_endian else "little")


def _block_words(message: bytes, big_endian: bool) -> list[int]:
    block = message + padding(len(message), big_endian)
    return [int.from_bytes(block[i:i + 4], "big" if big_endian else "little") for i in range(0, 64, 4)]


def _rotl(x: int, r: int) -> int:
    r %= 32
    return ((x << r) | (x >> (32 - r))) & M32


def _digest(state: tuple[int, ...], iv: tuple[int, ...], big_endian: bool) -> bytes:
    return b"".join(((s + v) & M32).to_bytes(4, "big" if big_endian else "little") for s, v in zip(state, iv))


def _choose(x: int, y: int, z: int) -> int:
    return (x & y) | (~x & z)


def _majority(x: int, y: int, z: int) -> int:
    return (x & y) | (x & z) | (y & z)


def md5_reference(message: bytes, steps: int | None = None) -> bytes:
    """The MD5 digest of ``message`` after ``steps`` steps (None: all 64, as hashlib.md5)."""
    steps = check_message("md5", len(message), steps)
    m = _block_words(message, big_endian=False)
    a, b, c, d = MD5_IV
    for i in range(steps):
        f = (_choose(b, c, d), _choose(d, b, c), b ^ c ^ d, c ^ (b | (~d & M32)))[i // 16]
        s = _rotl((a + f + MD5_K[i] + m[md5_index(i)]) & M32, md5_shift(i))
        a, b, c, d = d, (b + s) & M32, b, c
    return _digest((a, b, c, d), MD5_IV, big_endian=False)


def sha1_reference(message: bytes, steps: int | None = None) -> bytes:
    """The SHA-1 digest of ``message`` after ``steps`` steps (None: all 80, as hashlib.sha1)."""
    steps = check_message("sha1", len(message), steps)
    w = _block_words(message, big_endian=True)
    for t in range(16, steps):
        w.append(_rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1))
    a, b, c, d, e = SHA1_IV
    for t in range(steps):
        f = (_choose(b, c, d), b ^ c ^ d, _majority(b, c, d), b ^ c ^ d)[t // 20]
        a, b, c, d, e = (_rotl(a, 5) + f + e + SHA1_K[t // 20] + w[t]) & M32, a, _rotl(b, 30), c, d
    return _digest((a, b, c, d, e), SHA1_IV, big_endian=True)


def _sigma(x: int, rotations: tuple[int, ...], shift: int | None = None) -> int:
    out = x >> shift if shift is not None else 0
    for r in rotations:
        out ^= _rotl(x, -r)
    return out


def sha256_reference(message: bytes, steps: int | None = None) -> bytes:
    """The SHA-256 digest of ``message`` after ``steps`` steps (None: all 64, as hashlib.sha256)."""
    steps = check_message("sha256", len(message), steps)
    w = _block_words(message, big_endian=True)
    (r0, s0), (r1, s1) = SHA256_SMALL_SIGMA
    for t in range(16, steps):
        w.append((_sigma(w[t - 2], r1, s1) + w[t - 7] + _sigma(w[t - 15], r0, s0) + w[t - 16]) & M32)
    a, b, c, d, e, f, g, h = SHA256_IV
    for t in range(steps):
        t1 = h + _sigma(e, SHA256_BIG_SIGMA[1]) + _choose(e, f, g) + SHA256_K[t] + w[t]
        t2 = _sigma(a, SHA256_BIG_SIGMA[0]) + _majority(a, b, c)
        a, b, c, d, e, f, g, h = (t1 + t2) & M32, a, b, c, (d + t1) & M32, e, f, g
    return _digest((a, b, c, d, e, f, g, h), SHA256_IV, big_endian=True)


REFERENCES = {"md5": md5_reference, "sha1": sha1_reference, "sha256": sha256_reference}


def message_bits(messages: list[bytes]) -> Tensor:
    """Equal-length messages -> ``(batch, 8 * n_bytes)`` int64 bits, bit ``j`` of byte ``i`` at ``8 i + j``."""
    codes = torch.tensor([list(m) for m in messages], dtype=torch.long)
    return ((codes[..., None] >> torch.arange(8)) & 1).flatten(1)


def bits_to_bytes(bits: Tensor) -> list[bytes]:
    """``(batch, 8 * k)`` bits in :func:`message_bits` order -> ``batch`` byte strings of length ``k``."""
    codes = (bits.long().reshape(bits.shape[0], -1, 8) << torch.arange(8)).sum(-1)
    return [bytes(row) for row in codes.tolist()]


def _message_circuit(n_bytes: int, big_endian: bool) -> tuple[Circuit, list[Word]]:
    """A circuit over the message bits and the block's 16 words (padding and length as constant signals)."""
    c = Circuit(8 * n_bytes)
    byte_bits = [list(range(8 * i, 8 * i + 8)) for i in range(n_bytes)]
    byte_bits += [const_word(c, v, 8) for v in padding(n_bytes, big_endian)]
    return c, bytes_to_words(byte_bits, big_endian)


def _readout(c: Circuit, state: list[Word], iv: list[Word], big_endian: bool, target: bytes | None) -> Circuit:
    """Add the initial state, output the digest bits, or one bit: digest == ``target``."""
    words = [sum_words(c, s, v) for s, v in zip(state, iv)]
    digest = [bit for byte in words_to_bytes(words, big_endian) for bit in byte]
    if target is None:
        c.outputs = digest
    elif len(target) * 8 != len(digest):
        raise ParamLensError(f"the target must be a {len(digest) // 8}-byte digest; got {len(target)} bytes")
    else:
        c.outputs = [equals_const(c, digest, int.from_bytes(target, "little"))]
    return c


def _md5_function(c: Circuit, r: int, b: Word, x: Word, d: Word) -> Word:
    """Round ``r``'s function: F = b ? x : d, G = d ? b : x, H = b ^ x ^ d, I = x ^ (b | ~d)."""
    if r == 0:
        return choose_words(c, b, x, d)
    if r == 1:
        return choose_words(c, d, b, x)
    if r == 2:
        return parity_words(c, b, x, d)
    return xor_words(c, x, [c.add("or", i, c.add("not", k)) for i, k in zip(b, d)])


def md5_circuit(n_bytes: int, steps: int | None = None, target: bytes | None = None) -> Circuit:
    """MD5 of an ``n_bytes`` message after ``steps`` steps as a circuit of ripple-carry adders."""
    steps = check_message("md5", n_bytes, steps)
    c, m = _message_circuit(n_bytes, big_endian=False)
    iv = [const_word(c, v) for v in MD5_IV]
    a, b, x, d = iv
    for i in range(steps):
        s = sum_words(c, a, _md5_function(c, i // 16, b, x, d), const_word(c, MD5_K[i]), m[md5_index(i)])
        a, b, x, d = d, sum_words(c, b, rotl(s, md5_shift(i))), b, x
    return _readout(c, [a, b, x, d], iv, False, target)


def sha1_circuit(n_bytes: int, steps: int | None = None, target: bytes | None = None) -> Circuit:
    """SHA-1 of an ``n_bytes`` message after ``steps`` steps; the schedule word of step ``t`` is built just
    before it."""
    steps = check_message("sha1", n_bytes, steps)
    c, w = _message_circuit(n_bytes, big_endian=True)
    iv = [const_word(c, v) for v in SHA1_IV]
    a, b, x, d, e = iv
    for t in range(steps):
        if t >= 16:
            w.append(rotl(parity_words(c, w[t - 3], w[t - 8], w[t - 14], w[t - 16]), 1))
        r = t // 20
        f = choose_words(c, b, x, d) if r == 0 else majority_words(c, b, x, d) if r == 2 else parity_words(c, b, x, d)
        a, b, x, d, e = sum_words(c, rotl(a, 5), f, e, const_word(c, SHA1_K[r]), w[t]), a, rotl(b, 30), x, d
    return _readout(c, [a, b, x, d, e], iv, True, target)


def _small_sigma(c: Circuit, x: Word, k: int) -> Word:
    rotations, shift = SHA256_SMALL_SIGMA[k]
    return parity_words(c, *(rotl(x, -r) for r in rotations), shift_right(c, x, shift))


def _big_sigma(c: Circuit, x: Word, k: int) -> Word:
    return parity_words(c, *(rotl(x, -r) for r in SHA256_BIG_SIGMA[k]))


def sha256_circuit(n_bytes: int, steps: int | None = None, target: bytes | None = None) -> Circuit:
    """SHA-256 of an ``n_bytes`` message after ``steps`` steps."""
    steps = check_message("sha256", n_bytes, steps)
    c, w = _message_circuit(n_bytes, big_endian=True)
    iv = [const_word(c, v) for v in SHA256_IV]
    state = list(iv)
    for t in range(steps):
        if t >= 16:
            w.append(sum_words(c, _small_sigma(c, w[t - 2], 1), w[t - 7], _small_sigma(c, w[t - 15], 0), w[t - 16]))
        a, b, x, d, e, f, g, h = state
        t1 = sum_words(c, h, _big_sigma(c, e, 1), choose_words(c, e, f, g), const_word(c, SHA256_K[t]), w[t])
        t2 = sum_words(c, _big_sigma(c, a, 0), majority_words(c, a, b, x))
        state = [sum_words(c, t1, t2), a, b, x, sum_words(c, d, t1), e, f, g]
    return _readout(c, state, iv, True, target)


CIRCUITS = {"md5": md5_circuit, "sha1": sha1_circuit, "sha256": sha256_circuit}


def hash_circuit(name: str, n_bytes: int, steps: int | None = None, target: bytes | None = None) -> Circuit:
    """``name`` ("md5", "sha1", "sha256") of an ``n_bytes`` message after ``steps`` steps (None: all) as a circuit."""
    check_message(name, n_bytes, steps)
    return CIRCUITS[name](n_bytes, steps, target)
