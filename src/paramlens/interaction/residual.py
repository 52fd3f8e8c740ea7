"""The local interaction basis of a transformer's residual stream.

Layer ``l`` is the residual stream before block ``l`` (``l = L``: after the last block), one row per token,
with a constant 1 appended for the Gram matrix (as in :mod:`paramlens.interaction.basis`). The last layer
keeps its PCA directions (coordinates in stream units). For ``l < L`` the next layer's basis coordinates
are a function of every earlier token's stream, so ``M = E[sum_(t, s) J_ts^T J_ts]`` (``J_ts``: output token
``t`` with respect to the whitened coordinates of input token ``s``) is estimated with random sources:
for ``r ~ N(0, I)`` over all output tokens and directions, ``g = J^T r`` is one vector-Jacobian product
through the block and ``E[g g^T] = M`` exactly in expectation. Blocks are run in place inside the model
(their input replaced at ``blocks.{l}.hook_resid_pre``, the forward stopped after ``hook_resid_post``, with
:mod:`paramlens.core.streams`), so any model with blocks it finds works, positional machinery included.

PCA of each stream (same interface) is the baseline. Ablation curves rebuild the stream before one block from
its top-n basis directions and run the rest of the model: next-token cross-entropy for a causal LM, the
fraction of the final stream's mean square lost for an encoder.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.core.progress import track
from paramlens.core.streams import batches_of, blocks_of, patched, require_tokens, run_until, stream_batches
from paramlens.errors import ParamLensError
from paramlens.interaction.basis import LayerBasis, augment, pca_of_gram, whiten_gram


def run_block(model: nn.Module, layer: int, ids: Tensor, stream: Tensor) -> Tensor:
    """Output stream ``(B, T, d)`` of block ``layer`` when its input is ``stream`` (differentiable); the rest
    of the model after the block is not run."""
    replaced = {f"blocks.{layer}.hook_resid_pre": lambda _h: stream}
    return run_until(model, f"blocks.{layer}.hook_resid_post", patches=replaced, input_ids=ids)


def _stream_grams(model: nn.Module, windows: Tensor, batch: int, centred: bool) -> tuple[Tensor, Tensor | None]:
    """``(L + 1, d + 1, d + 1)`` float64 ``E[f f^T]`` of every residual-stream layer (constant 1 appended), and
    with ``centred`` the covariance instead, with the means ``(L + 1, d + 1)``."""
    grams, sums, n = 0, 0, 0
    for _, h in stream_batches(model, windows, batch):
        f = augment(h).flatten(1, 2)  # (L + 1, N, d + 1)
        grams = grams + f.transpose(1, 2) @ f
        sums = sums + f.sum(1)
        n += f.shape[1]
    if not centred:
        return grams / n, None
    means = sums / n
    return grams / n - means[:, :, None] * means[:, None, :], means


def residual_basis(model: nn.Module, windows: Tensor, batch: int = 8, sources: int = 8, tol: float = 1e-12,
                   seed: int = 0, kind: Literal["lib", "pca"] = "lib", centred: bool = False,
                   progress: bool = False) -> list[LayerBasis]:
    """Basis of every residual-stream layer ``0..L`` from token ``windows`` ``(n, T)``: the LIB, or with
    ``kind="pca"`` the principal directions of each stream; ``sources``: random vectors per batch for the Jacobian
    second moments; ``centred``: from the covariance rather than ``E[f f^T]`` (the bases then carry each stream's
    mean as their offset)."""
    if kind not in ("lib", "pca"):
        raise ParamLensError(f"unknown residual-stream basis '{kind}'; choose lib or pca")
    require_tokens(model, windows.numel(), f"a {kind} basis of every residual-stream layer")
    n_layers = len(blocks_of(model))
    grams, means = _stream_grams(model, windows, batch, centred)
    offsets = [None] * (n_layers + 1) if means is None else list(means)
    if kind == "pca":
        return [pca_of_gram(g, tol, o) for g, o in zip(grams, offsets)]
    n = windows.numel()
    bases: list[LayerBasis | None] = [None] * (n_layers + 1)
    bases[-1] = pca_of_gram(grams[-1], tol, offsets[-1])
    g = torch.Generator().manual_seed(seed)
    for layer in track(reversed(range(n_layers)), total=n_layers, description="interaction basis",
                       disable=not progress):
        r_mat, p_mat, gram_evals = whiten_gram(grams[layer], tol)
        white = LayerBasis(r_mat, p_mat, torch.ones(r_mat.shape[1]), False, gram_evals, offsets[layer])
        c_next = bases[layer + 1].coords
        m = torch.zeros(p_mat.shape[1], p_mat.shape[1], dtype=torch.float64)
        for ids, h in stream_batches(model, windows, batch):
            z = white.coordinates(augment(h[layer])).requires_grad_(True)  # (B, T, k) whitened
            out = run_block(model, layer, ids, white.rebuild(z)[..., :-1].to(h.dtype))
            coords = augment(out) @ c_next  # (B, T, k_next)
            for _ in range(sources):
                noise = torch.randn(coords.shape, generator=g, dtype=coords.dtype)
                (grad,) = torch.autograd.grad((coords * noise).sum(), z, retain_graph=True)
                flat = grad.flatten(0, 1)
                m += flat.T @ flat / sources
        m /= n
        lam, v = torch.linalg.eigh(m)
        lam, v = lam.flip(0).clamp_min(0), v.flip(1)
        bases[layer] = LayerBasis(r_mat @ v, p_mat @ v, lam, True, gram_evals, offsets[layer])
    return bases


def residual_edges(model: nn.Module, windows: Tensor, bases: list[LayerBasis], batch: int = 8, sources: int = 8,
                   seed: int = 0, top: int | None = None, progress: bool = False) -> list[Tensor]:
    """Edge weights ``(k_{l+1}, k_l)`` between consecutive residual-stream layers: for direction ``j`` of layer
    ``l`` and ``i`` of layer ``l + 1``, the mean over tokens of ``sum_(t, s) (d c_(i,t) / d y_(j,s) * y_(j,s))^2``
    (gradient times activation, squared, summed over token pairs). The sum over output tokens ``t`` is taken
    with random signs (Rademacher sources: the cross terms vanish in expectation), so each output direction
    costs ``sources`` vector-Jacobian products per batch. ``top``: only the ``top`` most important directions
    of every layer (``k = min(top, size)``), which bounds the cost on wide models."""
    out = []
    for layer in track(range(len(bases) - 1), description="interaction edges", disable=not progress):
        g = torch.Generator().manual_seed(seed + layer)  # per layer: a layer's edges do not depend on the others'
        b, nxt = bases[layer], bases[layer + 1]
        k_in, k_out = (b.size, nxt.size) if top is None else (min(top, b.size), min(top, nxt.size))
        total = torch.zeros(k_out, k_in, dtype=torch.float64)
        for ids, h in stream_batches(model, windows, batch):
            y = b.coordinates(augment(h[layer])).requires_grad_(True)  # (B, T, k) unit coordinates
            stream = run_block(model, layer, ids, b.rebuild(y)[..., :-1].to(h.dtype))
            coords = augment(stream) @ nxt.coords[:, :k_out]  # (B, T, k_out)
            for i in range(k_out):
                for _ in range(sources):
                    signs = torch.randint(0, 2, coords.shape[:2], generator=g).to(coords.dtype) * 2 - 1
                    (grad,) = torch.autograd.grad((coords[..., i] * signs).sum(), y, retain_graph=True)
                    total[i] += ((grad[..., :k_in] * y.detach()[..., :k_in]) ** 2).sum((0, 1)) / sources
        out.append(total / windows.numel())
    return out


def _stream_loss(out: object, ids: Tensor, reference: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(loss, final stream)``: next-token cross-entropy when the model has logits; otherwise (an encoder)
    the mean square of ``final - reference`` over the mean square of ``reference``."""
    logits = getattr(out, "logits", None)
    final = out.last_hidden_state if logits is None else logits
    if logits is not None:
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten()), final
    if reference is None:
        return torch.zeros(()), final
    return ((final - reference) ** 2).mean() / (reference**2).mean(), final


@torch.no_grad()
def stream_ablation_curve(model: nn.Module, windows: Tensor, layer: int, basis: LayerBasis, counts: list[int],
                          batch: int = 8) -> tuple[float, list[float]]:
    """``(loss of the full model, [loss with the stream before block layer rebuilt from its top-n directions
    of basis, for n in counts])``; the loss as in the module docstring (0 for the full encoder)."""
    if not 0 <= layer < len(blocks_of(model)):
        raise ParamLensError(f"layer {layer}: ablation curves need the stream before a block "
                             f"(0..{len(blocks_of(model)) - 1})")
    site = f"blocks.{layer}.hook_resid_pre"
    model.eval()
    full, losses, seen = 0.0, [0.0] * len(counts), 0
    for ids in batches_of(windows, batch):
        clean, reference = _stream_loss(model(input_ids=ids), ids, None)
        full += float(clean) * len(ids)
        for c, n in enumerate(counts):
            def keep_top(h: Tensor, n: int = n) -> Tensor:
                return basis.rebuild(basis.coordinates(augment(h), n))[..., :-1].to(h.dtype)

            with patched(model, {site: keep_top}):
                losses[c] += float(_stream_loss(model(input_ids=ids), ids, reference)[0]) * len(ids)
        seen += len(ids)
    return full / seen, [v / seen for v in losses]
