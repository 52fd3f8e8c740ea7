"""Toy model of superposition (Elhage et al. 2022): ``x -> ReLU(W^T W x + b)``.

``n_features`` sparse features squeezed into ``n_hidden`` dimensions. The model is trained with tied
weights (the unembedding is ``W^T``) and stored untied as two ``nn.Linear`` layers, ``linear1`` (``W``,
``(n_hidden, n_features)``) and ``linear2`` (``W^T`` plus bias), so each is its own target. The optional
``hidden`` layer is a fixed identity between them ("TMS + identity").
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from paramlens.core.data import SparseFeatures
from paramlens.core.ground_truth import GroundTruth
from paramlens.core.weights import run_with
from paramlens.models.train import TrainConfig, seeded, train


class TMSConfig(TrainConfig):
    """TMS 5-2 by default; 40-10 is ``n_features=40, n_hidden=10``."""

    kind: Literal["tms"] = "tms"
    n_features: int = Field(5, ge=1)
    n_hidden: int = Field(2, ge=1)
    feature_prob: float = Field(0.05, gt=0, le=1)
    hidden_identity: bool = False


class TMS(nn.Module):
    #: ``linear2.weight`` is ``linear1.weight.T``: decompose it with linear1's subcomponents (SPD ``tied``)
    tied_targets = {"linear2": "linear1"}

    def __init__(self, cfg: TMSConfig):
        super().__init__()
        self.cfg = cfg
        self.linear1 = nn.Linear(cfg.n_features, cfg.n_hidden, bias=False)
        self.hidden = None
        if cfg.hidden_identity:
            self.hidden = nn.Linear(cfg.n_hidden, cfg.n_hidden, bias=False)
            self.hidden.weight.data.copy_(torch.eye(cfg.n_hidden))
            self.hidden.weight.requires_grad_(False)
        self.linear2 = nn.Linear(cfg.n_hidden, cfg.n_features, bias=True)
        nn.init.zeros_(self.linear2.bias)
        self.tie()

    def tie(self) -> None:
        """Set ``linear2.weight`` to ``linear1.weight.T``."""
        with torch.no_grad():
            self.linear2.weight.copy_(self.linear1.weight.T)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, n_features) -> (batch, n_features)``."""
        h = self.linear1(x)
        if self.hidden is not None:
            h = self.hidden(h)
        return F.relu(self.linear2(h))

    def source(self) -> SparseFeatures:
        return SparseFeatures(self.cfg.n_features, self.cfg.feature_prob)

    def ground_truth(self) -> GroundTruth:
        """Each feature the model represents (:meth:`represented`) is the rank-one piece ``W[:, i] e_i^T`` of
        ``linear1`` (transposed in ``linear2``); a feature left out of ``W`` (column near zero, as some trainers leave
        one) is computed by no weights and so is no mechanism. The hidden identity is one mechanism of rank
        ``n_hidden``."""
        W = self.linear1.weight.detach()
        n_h, n_f = W.shape
        live = self.represented()
        eye = torch.eye(n_f)[live]
        cols = torch.einsum("hf,gf->ghf", W, eye)  # (n_live, n_h, n_f): W[:, f] e_f^T
        gt = GroundTruth(
            matrices={"linear1": cols, "linear2": cols.transpose(1, 2).contiguous()},
            input_directions={"linear1": eye, "linear2": F.normalize(W.T[live], dim=1)},
            description=f"{int(live.sum())} of {n_f} features represented, each a column of W (n_hidden={n_h})",
            names=dict.fromkeys(("linear1", "linear2"), [f"feature {f}" for f in live.nonzero().flatten().tolist()]),
        )
        if self.hidden is not None:
            gt.matrices["hidden"] = torch.eye(n_h).unsqueeze(0)
            gt.names["hidden"] = ["hidden identity"]
            gt.description += "; hidden identity: one mechanism of rank n_hidden"
        return gt

    @torch.no_grad()
    def represented(self) -> Tensor:
        """``(n_features,)`` bool: the features the model computes, those whose own output is positive when they are
        on alone at 1 (a feature left out of ``W`` stays at 0 behind the output ReLU and bias)."""
        n_f = self.linear1.weight.shape[1]
        return self(torch.eye(n_f, device=self.linear1.weight.device)).diagonal() > 0


def tied_loss(model: TMS, x: Tensor) -> Tensor:
    """MSE of the tied model: ``linear2`` runs with ``linear1.weight.T``, so gradients reach ``W`` twice."""
    out = run_with(model, {"linear2": model.linear1.weight.T}, x)
    return (out - x).pow(2).mean()


def train_tms(cfg: TMSConfig, **kwargs) -> tuple[TMS, list[dict[str, float]]]:
    """Train a TMS model from scratch; ``kwargs`` go to :func:`paramlens.models.train.train`."""
    model = seeded(lambda: TMS(cfg), cfg.seed)
    model.linear2.weight.requires_grad_(False)
    history = train(model, model.source(), tied_loss, cfg, **kwargs)
    model.tie()
    model.linear2.weight.requires_grad_(True)
    return model, history
