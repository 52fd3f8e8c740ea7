"""The local interaction basis of a transformer's residual stream.

Layer ``l`` is the residual stream before block ``l`` (``l = L``: after the last block), one row per token,
with a constant 1 appended for the Gram matrix (as in :mod:`paramlens.interaction.basis`). The last layer
keeps its PCA directions (coordinates in stream units). For ``l < L`` the next layer's basis coordinates
are a function of every earlier token's stream, so ``M = E[sum_(t, s) J_ts^T J_ts]`` (``J_ts``: output token
``t`` with respect to the whitened coordinates of input token ``s``) is estimated with random sources:
for ``r ~ N(0, I)`` over all output tokens and directions, ``g = J^T r`` is one vector-Jacobian product
through the block and ``E[g g^T] = M`` exactly in expectation. Blocks are run in place inside the model
(their input replaced through a hook, the forward stopped after them), so any model that
:func:`paramlens.models.lm.streams.blocks_of` understands works, positional machinery included.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from paramlens.interaction.basis import LayerBasis, whiten_gram
from paramlens.models.lm.streams import blocks_of, stream_batches


class _Stop(Exception):
    def __init__(self, output: Tensor):
        self.output = output


def run_block(model: nn.Module, layer: int, ids: Tensor, stream: Tensor) -> Tensor:
    """Output stream ``(B, T, d)`` of block ``layer`` when its input is ``stream`` (differentiable); the rest
    of the model after the block is not run."""
    block = blocks_of(model)[layer]

    def pre(_m, args, kwargs):
        if args:
            return (stream, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": stream}

    def post(_m, _a, out):
        raise _Stop(out[0] if isinstance(out, tuple) else out)

    hooks = [block.register_forward_pre_hook(pre, with_kwargs=True), block.register_forward_hook(post)]
    try:
        model(input_ids=ids)
    except _Stop as stop:
        return stop.output
    finally:
        for h in hooks:
            h.remove()
    raise RuntimeError("the block did not run")


def _with_one(h: Tensor) -> Tensor:
    return torch.cat([h, torch.ones(*h.shape[:-1], 1, dtype=h.dtype)], dim=-1)


def residual_basis(model: nn.Module, tokens: Tensor, context: int = 64, batch: int = 8, sources: int = 8,
                   tol: float = 1e-12, seed: int = 0) -> list[LayerBasis]:
    """LIB of every residual-stream layer ``0..L`` from ``tokens`` ``(n,)`` (consecutive windows of
    ``context``); ``sources``: random vectors per batch for the Jacobian second moments."""
    n_layers = len(blocks_of(model))
    grams, n = None, 0
    for _, h in stream_batches(model, tokens, context, batch):
        f = _with_one(h.double()).flatten(1, 2)  # (L + 1, N, d + 1)
        grams = f.transpose(1, 2) @ f if grams is None else grams + f.transpose(1, 2) @ f
        n += f.shape[1]
    grams = grams / n
    evals, evecs = torch.linalg.eigh(grams[-1])
    keep = evals > tol * evals.max()
    u = evecs[:, keep].flip(1)
    bases: list[LayerBasis | None] = [None] * (n_layers + 1)
    bases[-1] = LayerBasis(u, u, evals[keep].flip(0), False, evals.flip(0))
    g = torch.Generator().manual_seed(seed)
    for layer in reversed(range(n_layers)):
        r_mat, p_mat, gram_evals = whiten_gram(grams[layer], tol)
        c_next = bases[layer + 1].coords
        d = p_mat.shape[0] - 1
        m = torch.zeros(p_mat.shape[1], p_mat.shape[1], dtype=torch.float64)
        for ids, h in stream_batches(model, tokens, context, batch):
            z = (_with_one(h[layer].double()) @ r_mat).requires_grad_(True)  # (B, T, k) whitened
            out = run_block(model, layer, ids, (z @ p_mat.T)[..., :d].to(h.dtype)).double()
            coords = _with_one(out) @ c_next  # (B, T, k_next)
            for _ in range(sources):
                noise = torch.randn(coords.shape, generator=g, dtype=coords.dtype)
                (grad,) = torch.autograd.grad((coords * noise).sum(), z, retain_graph=True)
                flat = grad.flatten(0, 1)
                m += flat.T @ flat / sources
        m /= n
        lam, v = torch.linalg.eigh(m)
        lam, v = lam.flip(0).clamp_min(0), v.flip(1)
        bases[layer] = LayerBasis(r_mat @ v, p_mat @ v, lam, True, gram_evals)
    return bases


def residual_edges(model: nn.Module, tokens: Tensor, bases: list[LayerBasis], context: int = 64, batch: int = 8,
                   sources: int = 8, seed: int = 0) -> list[Tensor]:
    """Edge weights ``(k_{l+1}, k_l)`` between consecutive residual-stream layers: for direction ``j`` of layer
    ``l`` and ``i`` of layer ``l + 1``, the mean over tokens of ``sum_(t, s) (d c_(i,t) / d y_(j,s) * y_(j,s))^2``
    (gradient times activation, squared, summed over token pairs). The sum over output tokens ``t`` is taken
    with random signs (Rademacher sources: the cross terms vanish in expectation), so each output direction
    costs ``sources`` vector-Jacobian products per batch."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for layer in range(len(bases) - 1):
        b, nxt = bases[layer], bases[layer + 1]
        d = b.vectors.shape[0] - 1
        total = torch.zeros(nxt.size, b.size, dtype=torch.float64)
        n = 0
        for ids, h in stream_batches(model, tokens, context, batch):
            y = (_with_one(h[layer].double()) @ b.dual).requires_grad_(True)  # (B, T, k) unit coordinates
            stream = run_block(model, layer, ids, (y @ b.vectors.T)[..., :d].to(h.dtype)).double()
            coords = _with_one(stream) @ nxt.coords  # (B, T, k_next)
            for i in range(nxt.size):
                for _ in range(sources):
                    signs = torch.randint(0, 2, coords.shape[:2], generator=g).to(coords.dtype) * 2 - 1
                    (grad,) = torch.autograd.grad((coords[..., i] * signs).sum(), y, retain_graph=True)
                    total[i] += ((grad * y.detach()) ** 2).sum((0, 1)) / sources
            n += y.shape[0] * y.shape[1]
        out.append(total / n)
    return out
