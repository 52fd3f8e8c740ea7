"""The interaction basis and the local learning coefficient of the zoo's modular-addition MLP, whose inputs (every
pair ``(a, b)``) and labels are known, so bases are scored by the accuracy they keep."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from paramlens.core.runs import Result
from paramlens.core.weights import select
from paramlens.interaction.basis import interaction_basis, segments_of
from paramlens.interaction.degeneracy import Degeneracy, degeneracy
from paramlens.interaction.edges import direction_curve, edge_curve, edges, edges_needed
from paramlens.interaction.llc import LLCConfig, local_learning_coefficient
from paramlens.interaction.modularity import modules
from paramlens.models.toy.modular_addition import ModularMLP, accuracy, all_pairs, labels, split


@dataclass
class ModularInteraction(Result):
    """Per basis (lib, pca, neuron): edges needed to keep accuracy within 0.1%, total edges, modules and Q;
    ``edge_counts`` / ``edge_curves[basis]``: accuracy keeping the strongest edges; ``direction_curves[basis]``:
    accuracy keeping the top-n directions of the hidden layer (``n = 1..``)."""

    kind = "interaction_summary"
    rows: list[dict]
    train_acc: float
    test_acc: float
    edge_counts: list[int]
    edge_curves: dict[str, list[float]]
    direction_curves: dict[str, list[float]]

    def summary(self) -> str:
        lines = [f"modular addition: train acc {self.train_acc:.4f}, test acc {self.test_acc:.4f}"]
        lines += [f"  {r['basis']:7s} {r['edges needed']} / {r['edges']} edges keep accuracy {r['accuracy']:.4f}; "
                  f"{r['modules']} modules, Q = {r['Q']:.3f}" for r in self.rows]
        return "\n".join(lines)

    def table(self) -> list[dict]:
        return self.rows

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        from paramlens.report import plots

        fig, axes = plots.panels(2, 5, 3.4)
        for basis, curve in self.edge_curves.items():
            axes[0].semilogx([max(n, 1) for n in self.edge_counts], curve, marker=".", label=basis)
            axes[1].plot(range(1, len(self.direction_curves[basis]) + 1), self.direction_curves[basis], label=basis)
        axes[0].set_xlabel("strongest edges kept")
        axes[1].set_xlabel("top directions kept (hidden layer)")
        for ax in axes:
            ax.set_ylabel("accuracy (all pairs)")
            ax.legend()
        return [plots.save(fig, folder / f"{prefix}interaction_curves.png", "Ablation curves: accuracy when only the "
                           "strongest edges, or only the top basis directions of the hidden layer, are kept.")]


def modular_interaction(model: ModularMLP) -> ModularInteraction:
    """LIB vs PCA vs neurons on the trained modular-addition ``model``: edges, modules (seeded with the model's
    seed), ablation curves over every pair."""
    p, seed = model.cfg.p, model.cfg.seed
    segs, acc = segments_of(model.layers()), accuracy(model)
    x, y = all_pairs(p)
    found = {kind: interaction_basis(segs, x, kind) for kind in ("lib", "pca", "neuron")}
    weights = {kind: edges(segs, bases, x) for kind, bases in found.items()}
    most = max(sum(w.numel() for w in ws) for ws in weights.values())
    counts = sorted({int(v) for v in torch.logspace(0, math.log10(most), 16)})
    rows, edge_curves, direction_curves = [], {}, {}
    for kind, bases in found.items():
        needed, total, reached = edges_needed(segs, bases, x, y, weights[kind])
        mods = modules(weights[kind], "sqrt", seed)
        rows.append({"basis": kind, "edges needed": needed, "edges": total, "accuracy": reached,
                     "modules": mods.n_communities, "Q": mods.q})
        edge_curves[kind] = edge_curve(segs, bases, x, y, weights[kind], counts)
        direction_curves[kind] = direction_curve(segs, bases, x, y, 2, list(range(1, bases[2].size + 1)))
    return ModularInteraction(rows, acc["train_acc"], acc["test_acc"], counts, edge_curves, direction_curves)


def modular_llc(net: ModularMLP, seed: int, progress: bool = True) -> tuple[float, float, int]:
    """``(LLC, its standard error, number of weights)`` of the trained modular-addition MLP on its training pairs
    (cross-entropy, SGLD batches of 512 pairs, the default :class:`LLCConfig`)."""
    x, y = all_pairs(net.cfg.p)[0], labels(net.cfg)
    idx, _ = split(net.cfg)
    g = torch.Generator().manual_seed(seed)

    def loss(run, step: int) -> torch.Tensor:
        rows = idx if step < 0 else idx[torch.randint(0, len(idx), (512,), generator=g)]
        return F.cross_entropy(run(x[rows]), y[rows])

    targets = select(net, "*")
    llc, err = local_learning_coefficient(net, targets, loss, len(idx), LLCConfig(seed=seed), progress=progress)
    return llc, err, sum(t.shape[0] * t.shape[1] for t in targets)


def modular_degeneracy(net: ModularMLP, seed: int, progress: bool = True) -> Degeneracy:
    """The three kinds of degeneracy of the trained modular-addition MLP over every pair, with its LLC."""
    result = degeneracy(segments_of(net.layers()), all_pairs(net.cfg.p)[0])
    result.llc, result.llc_error, result.n_weights = modular_llc(net, seed, progress)
    return result
