"""Well-known constants to fingerprint numbers found in weights: hash and cipher round constants, initial
values, lookup tables (each computed from its definition), and simple readings (powers of two, ASCII).

A :class:`Table` is a sequence of ``bits``-bit words. Readings of ``w`` bits match a table of ``w`` bits, or the
low ``w`` bits of a wider one ("low w bits"), as single entries, runs of consecutive entries, or one entry per
repeat of a block (:func:`match_repeats`, entry ``start + k`` at repeat ``k``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import cache

M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Table:
    """A named sequence of ``bits``-bit words."""

    name: str
    bits: int
    values: tuple[int, ...]


def _primes(n: int) -> list[int]:
    """The first ``n`` primes."""
    found: list[int] = []
    k = 2
    while len(found) < n:
        found += [k] if all(k % p for p in found) else []
        k += 1
    return found


def _root_fraction(p: int, k: int, bits: int) -> int:
    """The first ``bits`` bits of the fractional part of ``p ** (1 / k)``: the integer ``k``-th root of
    ``p * 2^(k bits)`` by bisection, modulo ``2^bits``."""
    target = p << (k * bits)
    low, high = 0, 1 << (target.bit_length() // k + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if mid**k <= target else (low, mid)
    return low & ((1 << bits) - 1)


def _pi_words(n: int) -> tuple[int, ...]:
    """The first ``n`` 32-bit words of the fractional part of pi (Machin's formula in fixed point)."""
    precision = 32 * n + 64

    def arctan_inverse(x: int) -> int:
        total, term, k = 0, (1 << precision) // x, 0
        while term:
            total += (-1) ** k * (term // (2 * k + 1))
            term //= x * x
            k += 1
        return total

    fraction = 16 * arctan_inverse(5) - 4 * arctan_inverse(239) - (3 << precision)
    return tuple((fraction >> (precision - 32 * (i + 1))) & M32 for i in range(n))


def _gf_multiply(a: int, b: int) -> int:
    """Product in GF(2^8) modulo the AES polynomial ``x^8 + x^4 + x^3 + x + 1``."""
    out = 0
    while b:
        out ^= a if b & 1 else 0
        a = (a << 1) ^ (0x11B if a & 0x80 else 0)
        b >>= 1
    return out


def _aes_sbox() -> tuple[int, ...]:
    """The AES S-box: the inverse in GF(2^8) (0 for 0), then the affine map with constant 0x63."""
    inverse = [0] * 256
    for a in range(1, 256):
        inverse[a] = next(b for b in range(1, 256) if _gf_multiply(a, b) == 1)
    rotl8 = lambda x, r: ((x << r) | (x >> (8 - r))) & 0xFF
    return tuple(b ^ rotl8(b, 1) ^ rotl8(b, 2) ^ rotl8(b, 3) ^ rotl8(b, 4) ^ 0x63 for b in inverse)


def _crc32_table(polynomial: int = 0xEDB88320) -> tuple[int, ...]:
    """The byte table of the reflected CRC-32."""
    out = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ (polynomial if n & 1 else 0)
        out.append(n)
    return tuple(out)


def _tables() -> tuple[Table, ...]:
    primes = _primes(80)
    sha512_iv = tuple(_root_fraction(p, 2, 64) for p in primes[:8])
    sha384_iv = tuple(_root_fraction(p, 2, 64) for p in primes[8:16])
    sbox = _aes_sbox()
    md5_iv = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
    return (
        Table("MD5 T", 32, tuple(int(abs(math.sin(i + 1)) * 2**32) & M32 for i in range(64))),
        Table("MD5 IV", 32, md5_iv),
        Table("SHA-1 IV", 32, (*md5_iv, 0xC3D2E1F0)),
        Table("SHA-1 K", 32, tuple(math.isqrt(n << 60) for n in (2, 3, 5, 10))),  # 2^30 sqrt(n)
        Table("SHA-256 K", 32, tuple(_root_fraction(p, 3, 32) for p in primes[:64])),
        Table("SHA-256 IV", 32, tuple(v >> 32 for v in sha512_iv)),
        Table("SHA-224 IV", 32, tuple(v & M32 for v in sha384_iv)),
        Table("SHA-512 K", 64, tuple(_root_fraction(p, 3, 64) for p in primes)),
        Table("SHA-512 IV", 64, sha512_iv),
        Table("SHA-384 IV", 64, sha384_iv),
        Table("CRC-32 table", 32, _crc32_table()),
        Table("CRC-32 polynomial", 32, (0xEDB88320, 0x04C11DB7)),
        Table("AES S-box", 8, sbox),
        Table("AES inverse S-box", 8, tuple(sorted(range(256), key=sbox.__getitem__))),
        Table("AES Rcon", 8, (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1B, 0x36)),
        Table("ChaCha 'expand 32-byte k'", 32, tuple(int.from_bytes(b"expand 32-byte k"[i:i + 4], "little")
                                                     for i in range(0, 16, 4))),
        Table("Blowfish P (pi)", 32, _pi_words(18)),
        Table("TEA delta (golden ratio)", 32, (0x9E3779B9,)),
    )


TABLES = _tables()


@cache
def lookup(bits: int) -> dict[int, list[tuple[Table, int]]]:
    """``value -> [(table, index)]`` for readings of ``bits`` bits: entries of tables at least that wide,
    wider ones masked to their low ``bits`` bits; 0 is left out (it cannot be told from empty rows)."""
    mask = (1 << bits) - 1
    found: dict[int, list[tuple[Table, int]]] = {}
    for table in TABLES:
        if table.bits >= bits:
            for i, v in enumerate(table.values):
                if v & mask:
                    found.setdefault(v & mask, []).append((table, i))
    return found


def entry_name(table: Table, first: int, last: int, bits: int) -> str:
    """``"SHA-256 K[0..5] (low 8 bits)"``: entries ``first..last`` read as ``bits``-bit words."""
    where = f"[{first}]" if first == last else f"[{first}..{last}]"
    return f"{table.name}{where}" + ("" if bits == table.bits else f" (low {bits} bits)")


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
    """Tables whose consecutive entries (low ``bits`` bits) equal ``values`` in order, from any start; needs at
    least two values, or one word as wide as the table, each an unsigned ``bits``-bit word."""
    if not values or (len(values) < 2 and bits < 32) or not all(_is_word(v, bits) for v in values):
        return []
    hits = []
    for table, start in lookup(bits).get(values[0], []):
        if (len(values) > 1 or bits == table.bits) and start + len(values) <= len(table.values) \
                and all(lookup(bits).get(v) and (table, start + k) in lookup(bits)[v] for k, v in enumerate(values)):
            hits.append(entry_name(table, start, start + len(values) - 1, bits))
    return list(dict.fromkeys(hits))


@dataclass
class RepeatMatch:
    """Entry ``start + k`` of ``table`` at repeat ``k`` (as ``bits``-bit readings) for the repeats ``matched``;
    the others hold ``{repeat: value}`` in ``exceptions``."""

    table: Table
    start: int
    bits: int
    matched: list[int]
    exceptions: dict[int, int]

    def describe(self) -> str:
        """``"MD5 T[0..63] (entry k at repeat k), 62 of 64 repeats; repeats 4, 14 differ (by +0x80)"``."""
        total = len(self.matched) + len(self.exceptions)
        index = f"k{self.start:+d}" if self.start else "k"
        span = entry_name(self.table, self.start, self.start + total - 1, self.bits)
        return f"{span} (entry {index} at repeat k), {len(self.matched)} of {total} repeats" + _exceptions(self)


def _exceptions(m: RepeatMatch) -> str:
    """``"; repeats 4, 14 differ (by +0x80)"``: the unmatched repeats and their common difference, if any."""
    if not m.exceptions:
        return ""
    mask = (1 << m.bits) - 1
    diffs = {(v - m.table.values[m.start + k]) & mask for k, v in m.exceptions.items()
             if m.start + k < len(m.table.values)}
    shown = ", ".join(map(str, list(m.exceptions)[:8])) + (" ..." if len(m.exceptions) > 8 else "")
    return f"; repeats {shown} differ" + (f" (by +{diffs.pop():#x})" if len(diffs) == 1 else "")


def match_repeats(values: list[int | None], bits: int, min_fraction: float = 0.75) -> list[RepeatMatch]:
    """Tables whose entries ``start + k`` equal ``values[k]`` for most repeats ``k`` (at least ``min_fraction``
    of them, and at least 3, or 2 for readings of 32 bits and more). None: no reading at that repeat."""
    table_of = lookup(bits)
    votes: Counter = Counter()
    for k, v in enumerate(values):
        for table, i in table_of.get(v, []) if v is not None else []:
            votes[table.name, i - k] += 1
    need = max(3 if bits < 32 else 2, math.ceil(min_fraction * len(values)))
    found = []
    by_name = {t.name: t for t in TABLES}
    for (name, start), count in votes.most_common():
        if count < need:
            break
        table = by_name[name]
        hits = [k for k, v in enumerate(values)
                if 0 <= start + k < len(table.values) and v == table.values[start + k] & ((1 << bits) - 1)]
        found.append(RepeatMatch(table, start, bits, hits,
                                 {k: v for k, v in enumerate(values) if k not in hits and v is not None}))
    return found
