"""The interaction graph (basis directions as nodes, edges between consecutive layers) and its modules.

Communities by :func:`paramlens.core.communities.communities` (Leiden, else Louvain), with Newman's modularity
``Q``.
Edge weights can be transformed first: ``identity``, ``sqrt``, or ``log`` (``log(1 + w / mean w)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import Tensor

from paramlens.core.communities import communities
from paramlens.errors import ParamLensError

Transform = Literal["identity", "sqrt", "log"]


@dataclass
class Modules:
    """``membership[l][j]``: community of direction ``j`` of layer ``l``; ``q``: Newman's modularity;
    ``method``: the algorithm used; ``n_communities``."""

    membership: list[list[int]]
    q: float
    method: str
    n_communities: int


def _weighted_edges(weights: list[Tensor], transform: Transform) -> tuple[list[tuple[int, int]], np.ndarray, list[int]]:
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    offsets = np.cumsum([0] + sizes)
    pairs, values = [], []
    for layer, w in enumerate(weights):
        w = w.double().numpy()
        rows, cols = np.nonzero(w > 0)
        pairs += [(int(offsets[layer] + c), int(offsets[layer + 1] + r)) for r, c in zip(rows, cols)]
        values.append(w[rows, cols])
    v = np.concatenate(values) if values else np.zeros(0)
    if transform == "sqrt":
        v = np.sqrt(v)
    elif transform == "log":
        v = np.log1p(v / max(v.mean(), 1e-300))
    elif transform != "identity":
        raise ParamLensError(f"unknown edge transform '{transform}'; choose identity, sqrt or log")
    return pairs, v, sizes


def modules(weights: list[Tensor], transform: Transform = "identity", seed: int = 0) -> Modules:
    """Communities of the interaction graph whose layer-pair edge weights are ``weights`` (as from
    :func:`paramlens.interaction.edges.edges`)."""
    pairs, v, sizes = _weighted_edges(weights, transform)
    n = int(sum(sizes))
    labels, q, method = communities(n, pairs, v, seed)
    offsets = np.cumsum([0] + sizes)
    membership = [labels[offsets[i]: offsets[i + 1]].tolist() for i in range(len(sizes))]
    return Modules(membership, float(q), method, int(labels.max()) + 1 if n else 0)
