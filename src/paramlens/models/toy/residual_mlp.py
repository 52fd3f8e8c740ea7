"""Residual MLP doing compressed computation (the APD/SPD toy): ``y_i = x_i + ReLU(x_i)`` per feature.

``n_features`` sparse features in ``[-1, 1]`` are written into a ``d_embed``-wide residual stream by a
fixed random embedding ``W_E`` with unit-norm columns; ``n_layers`` MLP blocks with ``d_mlp`` ReLU
neurons in total (split as evenly as possible) add to the stream; the fixed unembedding is ``W_E^T``.
With fewer neurons than features each neuron serves several features, so the network computes
``ReLU`` of ``n_features`` inputs in superposition.

Targets: ``layers.{k}.mlp_in`` ``(d_mlp_k, d_embed)`` and ``layers.{k}.mlp_out`` ``(d_embed, d_mlp_k)``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from paramlens.core.data import SparseFeatures
from paramlens.core.ground_truth import GroundTruth
from paramlens.models.train import TrainConfig, seeded, train


class ResidualMLPConfig(TrainConfig):
    kind: Literal["residual_mlp"] = "residual_mlp"
    n_features: int = Field(100, ge=1)
    d_embed: int = Field(1000, ge=1)
    d_mlp: int = Field(50, ge=1, description="ReLU neurons over all layers")
    n_layers: int = Field(1, ge=1, le=3)
    feature_prob: float = Field(0.01, gt=0, le=1)
    batch_size: int = 512
    n_steps: int = 3000


class MLPBlock(nn.Module):
    def __init__(self, d_embed: int, d_mlp: int):
        super().__init__()
        self.mlp_in = nn.Linear(d_embed, d_mlp, bias=True)
        self.mlp_out = nn.Linear(d_mlp, d_embed, bias=False)

    def forward(self, resid: Tensor) -> Tensor:
        return resid + self.mlp_out(F.relu(self.mlp_in(resid)))


class ResidualMLP(nn.Module):
    def __init__(self, cfg: ResidualMLPConfig):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Linear(cfg.n_features, cfg.d_embed, bias=False)
        self.W_E.weight.data = F.normalize(torch.randn(cfg.d_embed, cfg.n_features), dim=0)
        self.W_E.weight.requires_grad_(False)
        sizes = [len(chunk) for chunk in torch.arange(cfg.d_mlp).chunk(cfg.n_layers)]
        self.layers = nn.ModuleList(MLPBlock(cfg.d_embed, d) for d in sizes)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, n_features) -> (batch, n_features)``."""
        resid = self.W_E(x)
        for layer in self.layers:
            resid = layer(resid)
        return resid @ self.W_E.weight

    def source(self) -> SparseFeatures:
        return SparseFeatures(self.cfg.n_features, self.cfg.feature_prob, low=-1.0, high=1.0)

    def ground_truth(self) -> GroundTruth:
        """Feature ``i``'s mechanism in every ``mlp_in`` reads the embedding direction ``W_E[:, i]``."""
        directions = self.W_E.weight.detach().T.contiguous()  # (n_features, d_embed), unit rows
        targets = [f"layers.{k}.mlp_in" for k in range(len(self.layers))]
        return GroundTruth(
            input_directions=dict.fromkeys(targets, directions),
            description=f"{self.cfg.n_features} features, each read along its embedding direction",
            names=dict.fromkeys(targets, [f"feature {i}" for i in range(self.cfg.n_features)]),
        )

    def feature_errors(self, n_points: int = 21) -> Tensor:
        """``(n_features,)`` mean squared error of ``y_i = x_i + ReLU(x_i)`` with feature ``i`` alone active,
        over ``n_points`` values in ``[-1, 1]``."""
        values = torch.linspace(-1, 1, n_points)
        n = self.cfg.n_features
        with torch.no_grad():
            x = torch.eye(n).unsqueeze(0) * values[:, None, None]  # (points, n, n)
            out = self(x.reshape(-1, n)).reshape(n_points, n, n).diagonal(dim1=1, dim2=2)
        return (out - (values[:, None] + F.relu(values[:, None]))).pow(2).mean(0)


def labels(x: Tensor) -> Tensor:
    return x + F.relu(x)


def residual_loss(model: nn.Module, x: Tensor) -> Tensor:
    return (model(x) - labels(x)).pow(2).mean()


def train_residual_mlp(cfg: ResidualMLPConfig, **kwargs) -> tuple[ResidualMLP, list[dict[str, float]]]:
    """Train from scratch; ``kwargs`` go to :func:`paramlens.models.train.train`."""
    model = seeded(lambda: ResidualMLP(cfg), cfg.seed)
    return model, train(model, model.source(), residual_loss, cfg, **kwargs)
