"""Bit vectors stored one bit per row (constants in the biases of weightless rows, or of copy/NOT rows) read
as 8/16/32/64-bit words at every offset, in both bit orders and both byte orders.

A window of ``w`` consecutive rows is a word in one of four readings: bits lowest first (row ``j`` is bit
``j``), bits highest first (row ``j`` is bit ``w - 1 - j``), and, for ``w >= 16``, the two mixed ones (bytes in
one order, the bits of each byte in the other). 8-bit windows have the first two only.
"""

from __future__ import annotations

import numpy as np

WIDTHS = (8, 16, 32, 64)
LOW_FIRST, HIGH_FIRST = "lowest bit first", "highest bit first"


def _significance(width: int, high_bits: bool, big_bytes: bool) -> np.ndarray:
    """The significance of window row ``j``: its bit within its byte, and its byte within the word."""
    j = np.arange(width)
    bit = 7 - j % 8 if high_bits else j % 8
    byte = width // 8 - 1 - j // 8 if big_bytes else j // 8
    return (8 * byte + bit).astype(np.uint64)


def readings(width: int) -> list[tuple[str, np.ndarray]]:
    """``(name, significance of each window row)`` of the readings of ``width``-bit windows."""
    out = [(LOW_FIRST, _significance(width, False, False)), (HIGH_FIRST, _significance(width, True, True))]
    if width >= 16:
        out += [("bytes highest first, bits lowest first", _significance(width, False, True)),
                ("bytes lowest first, bits highest first", _significance(width, True, False))]
    return out


def window_values(bits: np.ndarray, width: int) -> list[tuple[str, np.ndarray]]:
    """``bits`` ``(repeats, rows)`` of 0/1 -> per reading, the word at every offset ``(repeats, rows - width + 1)``
    as uint64."""
    if bits.shape[-1] < width:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(bits.astype(np.uint64), width, axis=-1)
    return [(name, windows @ (np.uint64(1) << sig)) for name, sig in readings(width)]
