"""What ``paramlens interaction`` and ``paramlens degeneracy`` do on the built-in modular-addition MLP (other
MLPs through the Python API: :func:`paramlens.interaction.basis.segments_of`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from paramlens.core.runs import Result, new_run_dir
from paramlens.interaction.basis import Segment, identity, interaction_basis
from paramlens.interaction.degeneracy import Degeneracy, degeneracy
from paramlens.interaction.edges import edges, edges_needed
from paramlens.interaction.modularity import modules
from paramlens.models.toy.modular_addition import ModularConfig, ModularMLP, all_pairs, check_builtin, train_modular
from paramlens.report import Section, write_report

def modular_model(name: str, p: int, seed: int, progress: bool = True) -> tuple[ModularMLP, list[Segment], dict]:
    check_builtin(name)
    model, acc = train_modular(ModularConfig(p=p, seed=seed), progress=progress)
    segs = [Segment(model.embed, identity), Segment(model.hidden, torch.relu), Segment(model.unembed, identity)]
    return model, segs, acc


@dataclass
class InteractionSummary(Result):
    """Per basis (lib, pca, neuron): edges needed to keep accuracy within 0.1%, total edges, modules and Q."""

    kind = "interaction_summary"
    rows: list[dict]
    train_acc: float
    test_acc: float

    def summary(self) -> str:
        lines = [f"modular addition: train acc {self.train_acc:.4f}, test acc {self.test_acc:.4f}"]
        lines += [f"  {r['basis']:7s} {r['edges needed']} / {r['edges']} edges keep accuracy {r['accuracy']:.4f}; "
                  f"{r['modules']} modules, Q = {r['Q']:.3f}" for r in self.rows]
        return "\n".join(lines)


def interaction_section(folder: Path, p: int = 59, seed: int = 0, progress: bool = True) -> tuple[InteractionSummary, Section]:
    _, segs, acc = modular_model("modular-addition", p, seed, progress)
    x, y = all_pairs(p)
    rows = []
    for kind in ("lib", "pca", "neuron"):
        bases = interaction_basis(segs, x, kind)
        weights = edges(segs, bases, x)
        needed, total, reached = edges_needed(segs, bases, x, y, weights)
        mods = modules(weights, "sqrt", seed)
        rows.append({"basis": kind, "edges needed": needed, "edges": total, "accuracy": reached,
                     "modules": mods.n_communities, "Q": mods.q})
    result = InteractionSummary(rows, acc["train_acc"], acc["test_acc"])
    return result, Section(title=f"Interaction basis of a modular-addition MLP (p = {p})", text=result.summary(),
                           table=rows)


def run_interaction(model: str, p: int, seed: int, out_dir: Path) -> tuple[InteractionSummary, Path]:
    check_builtin(model)
    folder = new_run_dir(out_dir, "interaction")
    result, section = interaction_section(folder, p, seed)
    result.save(folder)
    write_report(folder, "ParamLens interaction basis", [], [section])
    return result, folder


def run_degeneracy(model: str, p: int, seed: int, out_dir: Path) -> tuple[Degeneracy, Path]:
    _, segs, _ = modular_model(model, p, seed)
    result = degeneracy(segs, all_pairs(p)[0])
    folder = new_run_dir(out_dir, "degeneracy")
    result.save(folder)
    write_report(folder, "ParamLens degeneracy", [], [Section(title=f"Degeneracy of {model}", text=result.summary(),
                                                               figures=result.figures(folder))])
    return result, folder
