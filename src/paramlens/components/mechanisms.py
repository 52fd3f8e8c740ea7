"""Mechanisms: units grouped by how they fire together and feed each other.

Nodes are the units that fire; an edge joins two units by the cosine of their firing patterns (co-activation count
over the square root of both firing counts, in [0, 1]) plus, for SPD, the attribution between them (graph edge over
the largest edge, in [0, 1]). Communities by Leiden (:func:`paramlens.core.communities.communities`). Each mechanism
of two or more units gets its density (the mean of its members'), its members, and its effect: the output with all
its members ablated at once, on the top positions of each member (:mod:`paramlens.components.effect`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from paramlens.components.effect import output_change
from paramlens.components.graph import INPUT, OUTPUT, Graph
from paramlens.components.result import Harvest
from paramlens.components.units import Units, ablated
from paramlens.core.communities import communities
from paramlens.core.runs import Result
from paramlens.core.weights import Target
from paramlens.decompose.fit import Method


@dataclasses.dataclass
class Mechanisms(Result):
    """``groups``: ``[{"id", "members" (unit names), "density", "effect", "promoted", "suppressed"}]``, largest
    first (promoted / suppressed: token or output ids); ``q``: the partition's modularity; ``algorithm``."""

    kind = "mechanisms"
    groups: list[dict[str, Any]]
    q: float
    algorithm: str

    def summary(self) -> str:
        quality = f" ({self.algorithm}, Q = {self.q:.3f})" if self.groups else ""
        lines = [f"{len(self.groups)} mechanisms of two or more units{quality}"]
        lines += [f"  {g['id']}: {len(g['members'])} units ({', '.join(g['members'][:4])}"
                  f"{', ...' if len(g['members']) > 4 else ''}), density {g['density']:.4f}, effect {g['effect']:.4g}"
                  for g in self.groups[:5]]
        return "\n".join(lines)


def affinity(harvest: Harvest, graph: Graph | None) -> Tensor:
    """``(S, S)`` symmetric edge weights between units (see the module doc); zero on the diagonal."""
    co = harvest.coactivation.double()
    fires = co.diagonal().clamp(min=1)
    w = co / (fires[:, None] * fires[None, :]).sqrt()
    if graph is not None:
        index = {name: i for i, name in enumerate(harvest.units)}
        attr = torch.zeros_like(w)
        for key, m in graph.edges.items():
            a, b = key.split("->")
            if b == OUTPUT or a == INPUT:
                continue
            rows = torch.tensor([index[f"{a}:{i}"] for i in range(m.shape[0])])
            cols = torch.tensor([index[f"{b}:{j}"] for j in range(m.shape[1])])
            attr[rows[:, None], cols[None, :]] = m.double()
        attr = attr + attr.T
        w = w + attr / attr.max().clamp(min=1e-300)
    return w.fill_diagonal_(0)


def group_effect(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target], units: Units,
                 harvest: Harvest, data: Tensor, members: list[int], n_listed: int) -> dict[str, Any]:
    """The output change with all ``members`` ablated, on each member's top positions where it fires."""
    n = harvest.config["effect_contexts"]
    pos = torch.cat([harvest.top_positions[s, :n][harvest.top_values[s, :n] > harvest.config["threshold"]]
                     for s in members]).unique()
    if not len(pos):
        return {"effect": float("nan"), "promoted": [], "suppressed": []}
    per_row = data.shape[1] if harvest.sequences else 1
    replaced = ablated(method, dec, model, targets, [units.parts[s] for s in members])
    size, change = output_change(model, replaced, data[pos // per_row], pos % per_row, harvest.sequences)
    mean = change.mean(0)
    k = min(n_listed, len(mean))
    return {"effect": float(size.mean()), "promoted": (-mean).topk(k).indices.tolist(),
            "suppressed": mean.topk(k).indices.tolist()}


def find_mechanisms(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target], units: Units,
                    harvest: Harvest, data: Tensor, graph: Graph | None = None, seed: int = 0) -> Mechanisms:
    """Group the units of ``harvest`` (made on ``data``) into mechanisms (see the module doc)."""
    if not harvest.coactivation.numel():
        return Mechanisms([], 0.0, "none: too many units to count co-activation")
    w = affinity(harvest, graph)
    alive = harvest.alive().nonzero().flatten()
    sub = w[alive][:, alive]
    i, j = torch.triu_indices(len(alive), len(alive), 1)
    keep = sub[i, j] > 0
    labels, q, algorithm = communities(len(alive), list(zip(i[keep].tolist(), j[keep].tolist())),
                                       sub[i, j][keep].tolist(), seed)
    groups = []
    for label in range(int(labels.max()) + 1 if len(labels) else 0):
        members = alive[torch.from_numpy(labels == label)].tolist()
        if len(members) < 2:
            continue
        members.sort(key=lambda s: -float(harvest.density[s]))
        groups.append({"members": [units.names[s] for s in members],
                       "density": float(harvest.density[members].mean()),
                       **group_effect(method, dec, model, targets, units, harvest, data, members,
                                      harvest.config["top_tokens"])})
    groups.sort(key=lambda g: -len(g["members"]))
    for k, g in enumerate(groups):
        g["id"] = f"mechanism:{k}"
    return Mechanisms(groups, q, algorithm)
