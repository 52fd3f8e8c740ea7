"""A small standard transformer without layer norm and without biases (so compiled weights act exactly).

Token and position embeddings write the residual stream; each block adds multi-head attention (bidirectional:
every position attends to every position) and then a ReLU MLP; the unembedding reads the final residual.
Weight names follow TransformerLens: ``embed``, ``pos_embed``, ``blocks.{l}.attn.W_Q/W_K/W_V/W_O``,
``blocks.{l}.mlp.W_in/W_out``, ``unembed`` (all ``nn.Linear`` or ``nn.Embedding``, so every one is a target of
:mod:`paramlens.core.weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from paramlens.errors import ParamLensError


@dataclass(frozen=True)
class TransformerShape:
    """Sizes: ``n_tokens`` token ids, ``n_ctx`` positions, ``d_model`` residual dimensions, ``n_layers`` blocks of
    ``n_heads`` heads of ``d_head`` dimensions and ``d_mlp`` ReLU neurons, ``d_out`` output logits."""

    n_tokens: int
    n_ctx: int
    d_model: int
    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_out: int


class Attention(nn.Module):
    """Multi-head attention; head ``h`` owns rows ``h * d_head : (h + 1) * d_head`` of ``W_Q/W_K/W_V`` and those
    columns of ``W_O``. Scores are ``q . k / sqrt(d_head)``, softmax over all positions."""

    def __init__(self, shape: TransformerShape):
        super().__init__()
        inner = shape.n_heads * shape.d_head
        self.n_heads, self.d_head = shape.n_heads, shape.d_head
        self.W_Q = nn.Linear(shape.d_model, inner, bias=False)
        self.W_K = nn.Linear(shape.d_model, inner, bias=False)
        self.W_V = nn.Linear(shape.d_model, inner, bias=False)
        self.W_O = nn.Linear(inner, shape.d_model, bias=False)

    def forward(self, resid: Tensor) -> Tensor:
        """``(..., pos, d_model)`` -> ``(..., pos, d_model)``, the heads' summed writes."""
        q, k, v = (rearrange(f(resid), "... p (h d) -> ... h p d", h=self.n_heads)
                   for f in (self.W_Q, self.W_K, self.W_V))
        pattern = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d_head), dim=-1)
        return self.W_O(rearrange(pattern @ v, "... h p d -> ... p (h d)"))


class MLP(nn.Module):
    def __init__(self, shape: TransformerShape):
        super().__init__()
        self.W_in = nn.Linear(shape.d_model, shape.d_mlp, bias=False)
        self.W_out = nn.Linear(shape.d_mlp, shape.d_model, bias=False)

    def forward(self, resid: Tensor) -> Tensor:
        """``(..., pos, d_model)`` -> ``(..., pos, d_model)``: ``W_out relu(W_in x)``."""
        return self.W_out(torch.relu(self.W_in(resid)))


class Block(nn.Module):
    def __init__(self, shape: TransformerShape):
        super().__init__()
        self.attn = Attention(shape)
        self.mlp = MLP(shape)

    def forward(self, resid: Tensor) -> Tensor:
        resid = resid + self.attn(resid)
        return resid + self.mlp(resid)


class Transformer(nn.Module):
    """Token ids ``(..., pos)`` -> logits ``(..., pos, d_out)``; ``return_residual=True`` gives the final
    residual stream ``(..., pos, d_model)`` instead."""

    def __init__(self, shape: TransformerShape):
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.n_tokens, shape.d_model)
        self.pos_embed = nn.Embedding(shape.n_ctx, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layers))
        self.unembed = nn.Linear(shape.d_model, shape.d_out, bias=False)

    def check_ids(self, ids: Tensor) -> None:
        """Raise on ids that are not integer, longer than ``n_ctx`` or outside ``0 .. n_tokens - 1``."""
        if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dim() == 0:
            raise ParamLensError(f"token ids must be an integer tensor (..., pos), got {ids!r:.60}")
        if ids.shape[-1] > self.shape.n_ctx:
            raise ParamLensError(f"{ids.shape[-1]} positions, the model has {self.shape.n_ctx}")
        if not traced(ids) and ids.numel() and (ids.min() < 0 or ids.max() >= self.shape.n_tokens):
            raise ParamLensError(f"token ids must lie in 0 .. {self.shape.n_tokens - 1}, got "
                                 f"{int(ids.min())} .. {int(ids.max())}")

    def forward(self, ids: Tensor, return_residual: bool = False) -> Tensor:
        self.check_ids(ids)
        positions = torch.arange(ids.shape[-1], device=ids.device).expand(ids.shape)  # (batch, T), as the token ids
        resid = self.embed(ids) + self.pos_embed(positions)
        for block in self.blocks:
            resid = block(resid)
        return resid if return_residual else self.unembed(resid)


def traced(x: Tensor) -> bool:
    """True inside a ``torch.func`` transform (``vmap``), where data-dependent checks cannot run."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))
