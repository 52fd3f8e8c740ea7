"""A tiny language model with hand-set blocks whose layer updates are known exactly."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import Tensor, nn


class Tokenwise(nn.Module):
    """``h + h A``: a function of the current token only."""

    def __init__(self, a: Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, h: Tensor) -> Tensor:
        return h + h @ self.a


class PreviousToken(nn.Module):
    """``h + shift(h) B``: the update reads the previous token (zero at the first position)."""

    def __init__(self, b: Tensor):
        super().__init__()
        self.b = nn.Parameter(b)

    def forward(self, h: Tensor) -> Tensor:
        prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        return h + prev @ self.b


class ToyLM(nn.Module):
    """Embedding -> blocks (at ``model.layers``, like a Llama model) -> linear head; HF-style call."""

    def __init__(self, blocks: list[nn.Module], d: int, vocab: int = 40, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(blocks)
        self.embed = nn.Embedding(vocab, d)
        self.head = nn.Linear(d, vocab)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> SimpleNamespace:
        h = self.embed(input_ids)
        for block in self.model.layers:
            h = block(h)
        return SimpleNamespace(logits=self.head(h))


def rotation_blocks(d: int, degrees: float) -> Tensor:
    """``(d, d)`` block-diagonal rotation by ``degrees`` in each coordinate pair."""
    t = math.radians(degrees)
    r = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return torch.block_diag(*[r] * (d // 2))
