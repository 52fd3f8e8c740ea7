"""Well-known constants to fingerprint numbers found in weights: hash and cipher round constants,
initial values, and simple ranges (powers of two, ASCII)."""

from __future__ import annotations

import math


def _md5_t() -> tuple[int, ...]:
    return tuple(int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64))


def _sha256_k() -> tuple[int, ...]:
    """Fractional parts of the cube roots of the first 64 primes."""
    primes, n = [], 2
    while len(primes) < 64:
        if all(n % p for p in primes):
            primes.append(n)
        n += 1
    out = []
    for p in primes:
        root = _icbrt(p << 96)  # cube root of p * 2^96 = cbrt(p) * 2^32
        out.append(root & 0xFFFFFFFF)
    return tuple(out)


def _icbrt(n: int) -> int:
    """Integer cube root (floor)."""
    x = int(round(n ** (1 / 3)))
    while x**3 > n:
        x -= 1
    while (x + 1) ** 3 <= n:
        x += 1
    return x


#: name -> sequence of 32-bit words (a sequence matches when consecutive repeats use consecutive entries)
SEQUENCES: dict[str, tuple[int, ...]] = {
    "SHA-256 K": _sha256_k(),
    "SHA-256 H0": (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19),
    "SHA-1 K": (0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6),
    "MD5 T": _md5_t(),
    "MD5 / SHA-1 init": (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0),
    "ChaCha sigma": (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574),
    "Blowfish P (pi)": (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
    "TEA delta (golden ratio)": (0x9E3779B9,),
}


def _is_word(value: int, bits: int) -> bool:
    """``value`` is an unsigned ``bits``-bit word (the only numbers the tables and readings describe)."""
    return bits > 0 and 0 <= value < 1 << bits


def describe_value(value: int, bits: int) -> list[str]:
    """Plain readings of a single number: a power of two, an all-ones mask, printable ASCII bytes.

    ``value`` is read as an unsigned ``bits``-bit word; a negative or wider value has no reading (empty list).
    """
    if not _is_word(value, bits):
        return []
    found = []
    if value and value & (value - 1) == 0:
        found.append(f"2^{value.bit_length() - 1}")
    if value == (1 << bits) - 1:
        found.append(f"all {bits} bits set")
    if bits % 8 == 0 and value:
        chars = value.to_bytes(bits // 8, "little")
        if all(0x20 <= ch < 0x7F for ch in chars):
            found.append(f"ASCII {chars.decode()!r}")
    return found


def match_sequence(values: list[int], bits: int) -> list[str]:
    """Table sequences whose entries, masked to ``bits`` bits, equal ``values`` in order (from any start);
    needs at least two values, or one full 32-bit word, each an unsigned ``bits``-bit word (a negative or
    wider value matches nothing)."""
    mask = (1 << bits) - 1
    hits: list[str] = []
    if (len(values) < 2 and bits < 32) or not all(_is_word(v, bits) for v in values):
        return hits
    for name, seq in SEQUENCES.items():
        masked = [s & mask for s in seq]
        for start in range(len(seq) - len(values) + 1):
            if masked[start:start + len(values)] == values:
                end = start + len(values) - 1
                where = f"[{start}]" if start == end else f"[{start}..{end}]"
                hits.append(f"{name}{where}" + ("" if bits == 32 else f" (low {bits} bits)"))
                break
    return hits
