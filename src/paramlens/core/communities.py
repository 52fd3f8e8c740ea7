"""Communities of a weighted graph: the Leiden algorithm (``leidenalg`` on ``igraph``, modularity objective, seeded);
if those packages are missing, Louvain from ``networkx``. Newman's modularity ``Q`` of the partition is reported."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def communities(n: int, pairs: Sequence[tuple[int, int]], weights: Sequence[float], seed: int = 0) -> tuple[np.ndarray, float, str]:
    """``(labels (n,), Q, algorithm)`` for the undirected graph on nodes ``0 .. n - 1`` with edges ``pairs`` of
    weights ``weights``; labels are ``0 .. k - 1``."""
    weights = [float(w) for w in weights]
    try:
        import igraph
        import leidenalg

        g = igraph.Graph(n=n, edges=list(pairs))
        part = leidenalg.find_partition(g, leidenalg.ModularityVertexPartition, weights=weights, seed=seed)
        return np.array(part.membership, dtype=int), float(g.modularity(part.membership, weights=weights)), "leiden"
    except ImportError:
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_weighted_edges_from((a, b, w) for (a, b), w in zip(pairs, weights))
        comms = nx.community.louvain_communities(g, weight="weight", seed=seed)
        labels = np.zeros(n, dtype=int)
        for k, c in enumerate(comms):
            labels[list(c)] = k
        return labels, float(nx.community.modularity(g, comms, weight="weight")), "louvain (networkx)"
