"""A small MLP trained on modular addition ``(a + b) mod p`` until it generalises (grokking setup).

Input: one-hot ``a`` and one-hot ``b`` concatenated ``(2p,)``; ``embed`` (a linear layer, no bias) ->
ReLU ``hidden`` layer -> ``unembed`` to ``p`` logits. A share ``train_frac`` of all ``p^2`` pairs is used
for training with weight decay; the rest is the test set. Generalising solutions are known to compute with
a few Fourier frequencies of ``a`` and ``b`` (Nanda et al. 2023), the structure the interaction basis should
expose.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from paramlens.models.train import TrainConfig, seeded, train


class ModularConfig(TrainConfig):
    kind: Literal["modular_addition"] = "modular_addition"
    p: int = Field(59, ge=3)
    d_embed: int = Field(64, ge=1)
    d_hidden: int = Field(256, ge=1)
    train_frac: float = Field(0.7, gt=0, lt=1)
    n_steps: int = 5000
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 2.0
    shuffled_labels: bool = Field(False, description="train on the training pairs' labels permuted (memorisation)")


class ModularMLP(nn.Module):
    def __init__(self, cfg: ModularConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(2 * cfg.p, cfg.d_embed, bias=False)
        self.hidden = nn.Linear(cfg.d_embed, cfg.d_hidden)
        self.act = nn.ReLU()
        self.unembed = nn.Linear(cfg.d_hidden, cfg.p)

    def layers(self) -> list[nn.Module]:
        """The forward pass as a flat list of modules, in order."""
        return [self.embed, self.hidden, self.act, self.unembed]

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 2p)`` one-hot pairs -> ``(N, p)`` logits."""
        for layer in self.layers():
            x = layer(x)
        return x


def all_pairs(p: int) -> tuple[Tensor, Tensor]:
    """Every ``(a, b)`` as one-hot inputs ``(p^2, 2p)`` and labels ``(a + b) mod p``."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.cat([F.one_hot(a, p), F.one_hot(b, p)], dim=1).float()
    return x, (a + b) % p


def split(cfg: ModularConfig) -> tuple[Tensor, Tensor]:
    """Indices of the training and test pairs (seeded)."""
    perm = torch.randperm(cfg.p**2, generator=torch.Generator().manual_seed(cfg.seed))
    n = int(cfg.train_frac * cfg.p**2)
    return perm[:n], perm[n:]


def labels(cfg: ModularConfig) -> Tensor:
    """``(p^2,)`` the labels the model is trained on: ``(a + b) mod p``, or with ``cfg.shuffled_labels`` the training
    pairs' labels permuted among themselves (seeded; the test pairs keep theirs)."""
    y = all_pairs(cfg.p)[1]
    if cfg.shuffled_labels:
        idx, _ = split(cfg)
        y[idx] = y[idx][torch.randperm(len(idx), generator=torch.Generator().manual_seed(cfg.seed))]
    return y


def accuracy(model: ModularMLP) -> dict[str, float]:
    """``{"train_acc", "test_acc"}`` of ``model`` against the labels it was trained on."""
    x, y = all_pairs(model.cfg.p)
    train_idx, test_idx = split(model.cfg)
    y = labels(model.cfg)
    with torch.no_grad():
        pred = model(x).argmax(-1)
    return {"train_acc": float((pred[train_idx] == y[train_idx]).float().mean()),
            "test_acc": float((pred[test_idx] == y[test_idx]).float().mean())}


def train_modular(cfg: ModularConfig, progress: bool = True) -> tuple[ModularMLP, dict[str, float]]:
    """Train; returns the model and ``{"train_acc", "test_acc"}``."""
    x, y = all_pairs(cfg.p)[0], labels(cfg)
    train_idx, _ = split(cfg)
    model = seeded(lambda: ModularMLP(cfg), cfg.seed)

    class Rows:
        def sample(self, n: int, g: torch.Generator) -> Tensor:
            return train_idx[torch.randint(0, len(train_idx), (n,), generator=g)]

    train(model, Rows(), lambda m, idx: F.cross_entropy(m(x[idx]), y[idx]), cfg, progress=progress)
    return model, accuracy(model)
