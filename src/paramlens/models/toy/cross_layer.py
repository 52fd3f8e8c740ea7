"""Cross-layer mechanisms: a 2-layer residual MLP whose per-feature computation is split across layers.

The compressed-computation task of :mod:`~paramlens.models.toy.residual_mlp` with the ``d_mlp`` neurons
shared by two layers (25 + 25 by default). Both layers read every feature from the residual stream, and
the ReLU of one feature is typically built from neurons in both, so a decomposition must find mechanisms
that span layers. :func:`layer_shares` measures how each feature's computation is divided.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from paramlens.core.ground_truth import GroundTruth
from paramlens.models.toy.residual_mlp import ResidualMLP, ResidualMLPConfig, residual_loss
from paramlens.models.train import seeded, train


class CrossLayerConfig(ResidualMLPConfig):
    kind: Literal["cross_layer"] = "cross_layer"
    n_layers: Literal[2] = 2


class CrossLayerMLP(ResidualMLP):
    def ground_truth(self) -> GroundTruth:
        """Feature ``i``'s mechanism reads ``W_E[:, i]`` in both layers' ``mlp_in``."""
        gt = super().ground_truth()
        gt.description += "; each mechanism spans layers.0 and layers.1"
        return gt


def layer_shares(model: ResidualMLP, value: float = 1.0) -> Tensor:
    """``(n_features, n_layers)``: the share of feature ``i``'s MLP output (read along its unembedding
    direction, with only feature ``i`` active at ``value``) written by each layer; rows sum to 1."""
    n = model.cfg.n_features
    with torch.no_grad():
        resid = model.W_E(torch.eye(n) * value)
        writes = []
        for layer in model.layers:
            delta = layer.mlp_out(F.relu(layer.mlp_in(resid)))
            writes.append((delta * model.W_E.weight.T).sum(-1).abs())  # (n,) along each feature's direction
            resid = resid + delta
    w = torch.stack(writes, dim=1)
    return w / w.sum(1, keepdim=True).clamp_min(1e-12)


def train_cross_layer(cfg: CrossLayerConfig, **kwargs) -> tuple[CrossLayerMLP, list[dict[str, float]]]:
    model = seeded(lambda: CrossLayerMLP(cfg), cfg.seed)
    return model, train(model, model.source(), residual_loss, cfg, **kwargs)
