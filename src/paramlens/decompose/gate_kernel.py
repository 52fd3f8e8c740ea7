"""A fused CPU kernel for SPD's per-subcomponent gate MLPs (:class:`~paramlens.decompose.components.Gates`).

For activations ``a`` ``(N, C)`` and ``C`` gates ``1 -> H -> 1`` (``z = a w1 + b1``, ``out = sum_h w2 gelu(z) + b2``,
exact GELU), the forward pass computes the output and ``d out / d a = sum_h w1 w2 gelu'(z)`` ``(N, C)`` in one pass;
the backward pass recomputes ``z`` and sums ``g gelu(z)``, ``g gelu'(z)`` and ``g a gelu'(z)`` over the batch for the
weight gradients. No ``(N, C, H)`` tensor is ever stored. ``gelu(z) = z Phi(z)`` and ``gelu'(z) = Phi(z) + z phi(z)``,
with ``Phi`` from ``erf`` computed as ATen's vectorised CPU ``erf`` does (Abramowitz-Stegun 7.1.26, absolute error
under 1.5e-7), whose ``exp(-z^2 / 2)`` is also ``phi``'s: one exponential and one division per element and pass.
Where the compiler targets AVX-512 the loops are written on 16-lane vectors, with constants folded, the reciprocal by
``rcp14`` and one Newton step and the exponential as ``2^y`` by ``scalef`` and a polynomial (about 1.3x faster than the
compiler's vectorised loops of the plain C, which runs elsewhere).

The C source is compiled on first use for this CPU (:mod:`paramlens.decompose.native`) and called through ctypes from
``torch.library`` custom ops, which ``torch.compile`` keeps as opaque calls. Without a working compiler, or with
``PARAMLENS_NATIVE=0``, :func:`available` is False and :class:`Gates` runs in plain torch.
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from paramlens.decompose import native

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#define BLK 128
static const float P = 0.3275911f, A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f,
    A4 = -1.453152027f, A5 = 1.061405429f, R2 = 0.70710678118654752f, RS2PI = 0.39894228040143268f;

/* exp(x) for x <= 0: Cody-Waite reduction, Cephes' degree-5 polynomial, 2^n through the exponent bits. */
static inline float exp_neg(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = x * 1.44269504088896341f + 12582912.0f;
    n -= 12582912.0f;
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, 4);
    return p * s;
}

/* Phi(z) (the normal CDF, through erf as ATen computes it) and phi(z) (the normal density), sharing one exp. */
static inline void normal(float z, float *Phi, float *phi) {
    float u = z * R2, au = u < 0.0f ? -u : u;
    float t = 1.0f / (1.0f + P * au);
    float r = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    float e = exp_neg(-u * u), h = 0.5f * r * e;
    *Phi = z >= 0.0f ? 1.0f - h : h;
    *phi = e * RS2PI;
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* normal() on 16 lanes, with the constants folded in: the erf rational (its coefficients times 0.5 / RS2PI, P times
   R2) and its reciprocal by rcp14 and one Newton step; phi = 2^y, y = -z^2 log2(e) / 2 + log2(RS2PI), as 2^round(y)
   by scalef (no clamp: it underflows to 0) times a polynomial for 2^f, |f| <= 1/2. Phi and gelu(z) within 4e-7,
   phi within 1e-7 of the exact values. */
/* Folded constants: 0.5 / RS2PI = sqrt(pi / 2); y = Y2 z^2 + Y0 with Y2 = -log2(e) / 2, Y0 = log2(RS2PI); E: the
   degree-5 polynomial interpolating 2^f at the Chebyshev nodes of [-1/2, 1/2] (relative error 1e-7). */
static const float HALF_RS2PI = 1.2533141373155001f, Y2 = -0.7213475204444817f, Y0 = -1.3257480647361592f;
static const float E[6] = {1.0000000754548972f, 0.6931471880262285f, 0.2402210748530825f, 0.05550357114219401f,
                           0.00967603191832481f, 0.0013390863364571618f};

static inline void normal16(__m512 z, __m512 *Phi, __m512 *phi) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(P * R2), _mm512_abs_ps(z), one), t = _mm512_rcp14_ps(d);
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
    __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(A5 * HALF_RS2PI), t, _mm512_set1_ps(A4 * HALF_RS2PI));
    r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(A3 * HALF_RS2PI));
    r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(A2 * HALF_RS2PI));
    r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(A1 * HALF_RS2PI));
    r = _mm512_mul_ps(r, t);
    __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(z, z), _mm512_set1_ps(Y2), _mm512_set1_ps(Y0));
    __m512 n = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), f = _mm512_sub_ps(y, n);
    __m512 p = _mm512_set1_ps(E[5]);
    for (int k = 4; k >= 0; k--) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(E[k]));
    __m512 e = _mm512_scalef_ps(p, n), h = _mm512_mul_ps(r, e);
    *Phi = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ), h, _mm512_sub_ps(one, h));
    *phi = e;
}
#endif

/* Rows [r0, r0 + nr) and columns [c0, c0 + nc) of x (N, C), transposed into t (nc, BLK), and back. */
static void tile_in(const float *x, float *t, int64_t C, int64_t r0, int64_t nr, int64_t c0, int64_t nc) {
    for (int64_t i = 0; i < nr; i++)
        for (int64_t c = 0; c < nc; c++) t[c * BLK + i] = x[(r0 + i) * C + c0 + c];
}

static void tile_out(const float *t, float *x, int64_t C, int64_t r0, int64_t nr) {
    for (int64_t i = 0; i < nr; i++)
        for (int64_t c = 0; c < C; c++) x[(r0 + i) * C + c] = t[c * BLK + i];
}

/* One subcomponent on nb <= BLK rows (a multiple of 16): o = sum_h w2 gelu(a w1 + b1) + b2,
   s = sum_h w1 w2 gelu'(a w1 + b1). With AVX-512 16 rows at a time, the sums in registers. */
static void block_forward(const float *restrict av, const float *w1, const float *b1, const float *w2, float b2,
                          float *restrict o, float *restrict s, int64_t nb, int64_t H) {
#if defined(__AVX512F__)
    for (int64_t i = 0; i < nb; i += 16) {
        __m512 x = _mm512_loadu_ps(av + i), so = _mm512_set1_ps(b2), ss = _mm512_setzero_ps(), Phi, phi;
        for (int64_t h = 0; h < H; h++) {
            __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(w1[h]), _mm512_set1_ps(b1[h]));
            normal16(z, &Phi, &phi);
            so = _mm512_fmadd_ps(_mm512_set1_ps(w2[h]), _mm512_mul_ps(z, Phi), so);
            ss = _mm512_fmadd_ps(_mm512_set1_ps(w1[h] * w2[h]), _mm512_fmadd_ps(z, phi, Phi), ss);
        }
        _mm512_storeu_ps(o + i, so);
        _mm512_storeu_ps(s + i, ss);
    }
#else
    for (int64_t i = 0; i < nb; i++) { o[i] = b2; s[i] = 0.0f; }
    for (int64_t h = 0; h < H; h++) {
        float w1h = w1[h], b1h = b1[h], w2h = w2[h], w12 = w1h * w2h;
        for (int64_t i = 0; i < nb; i++) {
            float z = av[i] * w1h + b1h, Phi, phi;
            normal(z, &Phi, &phi);
            o[i] += w2h * (z * Phi);
            s[i] += w12 * (Phi + z * phi);
        }
    }
#endif
}

/* a, out, ds: (N, C); w1, b1, w2: (C, H); b2: (C,). out = sum_h w2 gelu(a w1 + b1) + b2 and, unless ds is NULL,
   ds = sum_h w1 w2 gelu'(a w1 + b1). Threads take contiguous ranges of blocks of BLK rows. */
void gates_forward(const float *a, const float *w1, const float *b1, const float *w2, const float *b2,
                   float *out, float *ds, int64_t N, int64_t C, int64_t H, int threads) {
    int64_t nblk = (N + BLK - 1) / BLK, chunks = threads < nblk ? threads : nblk;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t k = 0; k < chunks; k++) {
        float *av = aligned_alloc(64, 3 * C * BLK * sizeof(float)), *o = av + C * BLK, *s = o + C * BLK;
        for (int64_t j = k * nblk / chunks; j < (k + 1) * nblk / chunks; j++) {
            int64_t b0 = j * BLK, nb = N - b0 < BLK ? N - b0 : BLK;
            int64_t n16 = (nb + 15) / 16 * 16;
            tile_in(a, av, C, b0, nb, 0, C);
            for (int64_t c = 0; c < C; c++) {
                for (int64_t i = nb; i < n16; i++) av[c * BLK + i] = 0.0f;
                block_forward(av + c * BLK, w1 + c * H, b1 + c * H, w2 + c * H, b2[c], o + c * BLK, s + c * BLK, n16, H);
            }
            tile_out(o, out, C, b0, nb);
            if (ds) tile_out(s, ds, C, b0, nb);
        }
        free(av);
    }
}

/* One (subcomponent, hidden unit) on n rows (a multiple of 16): adds g gelu(z), g gelu'(z), g a gelu'(z) to the
   16-lane sums acc[0:16], acc[16:32], acc[32:48]. */
static void block_backward(const float *restrict av, const float *restrict gv, float w1h, float b1h,
                           float *restrict acc, int64_t n) {
#if defined(__AVX512F__)
    __m512 s0 = _mm512_loadu_ps(acc), s1 = _mm512_loadu_ps(acc + 16), s2 = _mm512_loadu_ps(acc + 32), Phi, phi;
    for (int64_t i = 0; i < n; i += 16) {
        __m512 x = _mm512_loadu_ps(av + i), g = _mm512_loadu_ps(gv + i);
        __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(w1h), _mm512_set1_ps(b1h));
        normal16(z, &Phi, &phi);
        __m512 gd = _mm512_mul_ps(g, _mm512_fmadd_ps(z, phi, Phi));
        s0 = _mm512_fmadd_ps(g, _mm512_mul_ps(z, Phi), s0);
        s1 = _mm512_add_ps(s1, gd);
        s2 = _mm512_fmadd_ps(gd, x, s2);
    }
    _mm512_storeu_ps(acc, s0); _mm512_storeu_ps(acc + 16, s1); _mm512_storeu_ps(acc + 32, s2);
#else
    float s0[16], s1[16], s2[16];
    for (int l = 0; l < 16; l++) { s0[l] = acc[l]; s1[l] = acc[16 + l]; s2[l] = acc[32 + l]; }
    for (int64_t i = 0; i < n; i += 16) {
        for (int l = 0; l < 16; l++) {
            float z = av[i + l] * w1h + b1h, Phi, phi;
            normal(z, &Phi, &phi);
            float gd = gv[i + l] * (Phi + z * phi);
            s0[l] += gv[i + l] * (z * Phi);
            s1[l] += gd;
            s2[l] += gd * av[i + l];
        }
    }
    for (int l = 0; l < 16; l++) { acc[l] = s0[l]; acc[16 + l] = s1[l]; acc[32 + l] = s2[l]; }
#endif
}

/* a, g: (N, C) activations and output gradients; gw2, q, qa: (C, H), the sums over rows of g gelu(z), g gelu'(z)
   and g a gelu'(z). Threads take contiguous ranges of subcomponents; each sum runs in 16 lanes in a fixed order
   (the same for any number of threads). */
void gates_backward(const float *a, const float *g, const float *w1, const float *b1,
                    float *gw2, float *q, float *qa, int64_t N, int64_t C, int64_t H, int threads) {
    int64_t chunks = threads < C ? threads : C;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t c0 = k * C / chunks, nc = (k + 1) * C / chunks - c0;
        float *av = aligned_alloc(64, (2 * BLK + 48 * H) * nc * sizeof(float)), *gv = av + nc * BLK;
        float *acc = gv + nc * BLK;
        memset(acc, 0, 48 * H * nc * sizeof(float));
        for (int64_t b0 = 0; b0 < N; b0 += BLK) {
            int64_t nb = N - b0 < BLK ? N - b0 : BLK, n16 = (nb + 15) / 16 * 16;
            tile_in(a, av, C, b0, nb, c0, nc);
            tile_in(g, gv, C, b0, nb, c0, nc);
            for (int64_t c = 0; c < nc; c++) {
                for (int64_t i = nb; i < n16; i++) { av[c * BLK + i] = 0.0f; gv[c * BLK + i] = 0.0f; }
                for (int64_t h = 0; h < H; h++)
                    block_backward(av + c * BLK, gv + c * BLK, w1[(c0 + c) * H + h], b1[(c0 + c) * H + h],
                                   acc + 48 * (c * H + h), n16);
            }
        }
        for (int64_t j = 0; j < nc * H; j++) {
            float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f;
            for (int l = 0; l < 16; l++) { r0 += acc[48 * j + l]; r1 += acc[48 * j + 16 + l]; r2 += acc[48 * j + 32 + l]; }
            gw2[c0 * H + j] = r0; q[c0 * H + j] = r1; qa[c0 * H + j] = r2;
        }
        free(av);
    }
}
"""

SIGNATURES = {"gates_forward": [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 3 + [ctypes.c_int],
              "gates_backward": [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 3 + [ctypes.c_int]}


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The compiled kernel (:func:`paramlens.decompose.native.library`), or None."""
    return native.library("gates", _SOURCE, SIGNATURES)


@torch.compiler.assume_constant_result
def available() -> bool:
    """Whether the compiled kernel can be used (compiles it on the first call; constant for ``torch.compile``)."""
    return _library() is not None


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


@torch.library.custom_op("paramlens::gates_forward", mutates_args=(), device_types="cpu")
def gates_forward(a: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, with_ds: bool) -> Tensor:
    """``(1 + with_ds, N, C)``: the gates' outputs for activations ``a`` ``(N, C)`` (float32) and, with ``with_ds``,
    their derivatives along ``a``. One tensor, so that the backward pass, which keeps it for the derivatives, also
    keeps the outputs: ``torch.compile``'s partitioner then recomputes what follows from them (the masks of the
    leaky sigmoids) instead of storing it (storing bool masks is slow in inductor's CPU code)."""
    a, w1, b1, w2, b2 = (t.contiguous() for t in (a, w1, b1, w2, b2))
    (N, C), H = a.shape, w1.shape[1]
    res = a.new_empty(1 + with_ds, N, C)
    _library().gates_forward(*map(_ptr, (a, w1, b1, w2, b2, res[0], res[1] if with_ds else None)), N, C, H,
                             torch.get_num_threads())
    return res


@gates_forward.register_fake
def _(a: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, with_ds: bool) -> Tensor:
    return a.new_empty(1 + with_ds, *a.shape)


@torch.library.custom_op("paramlens::gates_backward", mutates_args=(), device_types="cpu")
def gates_backward(a: Tensor, g: Tensor, w1: Tensor, b1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(sum_n g gelu(z), sum_n g gelu'(z), sum_n g a gelu'(z))``, each ``(C, H)``, for activations and output
    gradients ``a``, ``g`` ``(N, C)`` and ``z = a w1 + b1`` ``(N, C, H)``."""
    a, g, w1, b1 = (t.contiguous() for t in (a, g, w1, b1))
    (N, C), H = a.shape, w1.shape[1]
    gw2, q, qa = (w1.new_empty(C, H) for _ in range(3))
    _library().gates_backward(*map(_ptr, (a, g, w1, b1, gw2, q, qa)), N, C, H, torch.get_num_threads())
    return gw2, q, qa


@gates_backward.register_fake
def _(a: Tensor, g: Tensor, w1: Tensor, b1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return w1.new_empty(w1.shape), w1.new_empty(w1.shape), w1.new_empty(w1.shape)


def _setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    a, w1, b1, w2, _, _ = inputs
    ctx.save_for_backward(a, w1, b1, w2, output)


def _backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
    """Gradients of ``a``, ``w1``, ``b1``, ``w2``, ``b2`` from the gradient of the outputs ``grad[0]`` ``(N, C)``
    (the derivatives ``grad[1]`` get none)."""
    a, w1, b1, w2, res = ctx.saved_tensors
    gw2, q, qa = gates_backward(a, grad[0], w1, b1)
    grad_a = grad[0] * res[1] if ctx.needs_input_grad[0] else None
    return grad_a, qa * w2, q * w2, gw2, grad[0].sum(0), None


gates_forward.register_autograd(_backward, setup_context=_setup_context)


def usable(inner: Tensor, w1: Tensor) -> bool:
    """Whether :func:`gates` applies: float32 CPU tensors, a compiled kernel, and no ``torch.func`` transform
    (``vmap``, ``grad``: the ops have no rules for them)."""
    if inner.device.type != "cpu" or not inner.dtype == w1.dtype == torch.float32 or not available():
        return False
    return torch.compiler.is_compiling() or not torch._C._functorch.is_functorch_wrapped_tensor(inner)


def gates(inner: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """``sum_h w2[c, h] gelu(inner[..., c] w1[c, h] + b1[c, h]) + b2[c]``, ``(..., C)``, for ``inner`` ``(..., C)``
    and parameters ``(C, H)`` (``b2``: ``(C,)``), by the compiled kernel (see :func:`usable`)."""
    flat = inner.reshape(-1, inner.shape[-1])
    with_ds = torch.is_grad_enabled() and inner.requires_grad
    return gates_forward(flat, w1, b1, w2, b2, with_ds)[0].reshape(inner.shape)
