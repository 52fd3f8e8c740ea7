"""Run a stored chain exactly on a few inputs, one layer in memory at a time, keeping the pre-activations of
the layers asked for. Products are sparse (float64, exact for integer weights and activations below 2^53)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from paramlens.reverse.chain import LayerRef, TensorStore, iter_layers

SPARSE_BELOW = 0.2  # density under which a layer is multiplied as a sparse matrix


def _product(W: Tensor, h: Tensor) -> Tensor:
    """``h @ W.T`` for ``W`` ``(out, in)`` and ``h`` ``(batch, in)``, float64."""
    W = W.to(torch.float64)
    if W.numel() and (W != 0).sum() < SPARSE_BELOW * W.numel():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return torch.sparse.mm(W.to_sparse_csr(), h.T).T
    return h @ W.T


def run_chain(store: TensorStore, layers: list[LayerRef], x: Tensor, wanted: set[int]) -> dict[int, Tensor]:
    """Pre-activations ``(batch, out)`` of the ``wanted`` layers when the chain (Linear + ReLU at every layer)
    runs on ``x`` ``(batch, in)``; stops after the last wanted layer."""
    h, out = x.to(torch.float64), {}
    last = max(wanted, default=-1)
    for ref, W, b in iter_layers(store, layers[:last + 1]):
        pre = _product(W, h) + (b.to(torch.float64) if b is not None else 0.0)
        if ref.index in wanted:
            out[ref.index] = pre
        h = pre.clamp_min(0)
    return out
