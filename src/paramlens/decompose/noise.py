"""Uniform noise for SPD's stochastic masks, drawn fast on CPU.

``torch.rand`` on CPU (a Mersenne twister, one number at a time) costs about 3 ns per number, a tenth of an SPD step
of TMS 5-2 on one core. :func:`uniform` draws one 63-bit seed from the caller's generator and fills the tensor with
SplitMix64 (Steele, Lea, Flood 2014) over the element index, 24 random bits per float as ``torch.rand`` has: about
10x faster, and as reproducible (the generator's state decides every value; a checkpointed generator resumes the same
noise). Off CPU, or without the native library (:mod:`paramlens.decompose.native`), it is ``torch.rand``.
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from paramlens.decompose import native

_SOURCE = r"""
#include <stdint.h>
/* out[k], k < n: the top 24 bits of SplitMix64's output for counter k + 1 of stream seed, as a float in [0, 1). */
void uniform(uint64_t seed, float *out, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        uint64_t x = seed + (uint64_t)(k + 1) * 0x9E3779B97F4A7C15ull;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        x ^= x >> 31;
        out[k] = (float)(x >> 40) * 0x1p-24f;
    }
}
"""


@functools.cache
def _library() -> ctypes.CDLL | None:
    return native.library("noise", _SOURCE, {"uniform": [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_int64]})


def uniform(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """``U(0, 1)`` float32 of ``shape`` on ``generator``'s device, every value decided by ``generator``'s state (which
    it advances)."""
    lib = _library()
    if generator.device.type != "cpu" or lib is None:
        return torch.rand(shape, generator=generator, device=generator.device)
    seed = int(torch.randint(0, 2**63 - 1, (), generator=generator))
    out = torch.empty(shape)
    lib.uniform(seed, out.data_ptr(), out.numel())
    return out
