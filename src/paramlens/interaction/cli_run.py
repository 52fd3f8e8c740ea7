"""What ``paramlens interaction`` and ``paramlens degeneracy`` do: on the built-in modular-addition MLP, or on
a language model's residual stream (``smollm2``, ``minilm``, a Hugging Face folder or a ``.gguf`` file). Other
MLPs go through the Python API (:func:`paramlens.interaction.basis.segments_of`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from paramlens.core.loading import Loaded
from paramlens.core.resolve import builtin, resolve
from paramlens.core.runs import Result, new_run_dir
from paramlens.core.text import TextOptions, lm_windows
from paramlens.core.weights import select
from paramlens.errors import ParamLensError
from paramlens.interaction.basis import interaction_basis, segments_of
from paramlens.interaction.degeneracy import Degeneracy, degeneracy, residual_degeneracy
from paramlens.interaction.edges import direction_curve, edge_curve, edges, edges_needed
from paramlens.interaction.llc import LLCConfig, local_learning_coefficient
from paramlens.interaction.lm_summary import LMInteraction, lm_interaction
from paramlens.interaction.modularity import modules
from paramlens.models.toy.modular_addition import ModularMLP, accuracy, all_pairs, labels, split
from paramlens.report import Section, write_report

BUILTIN = "modular-addition"


@dataclass
class LMOptions:
    """How a language model is read: ``text`` says which token windows; ``sources`` random vectors per batch for
    Jacobian moments and edges; edges among the ``top`` directions per layer."""

    text: TextOptions = field(default_factory=TextOptions)
    sources: int = 4
    top: int = 16


def _model(spec: str, p: int, seed: int, command: str, trust_code: bool, progress: bool = True) -> Loaded:
    """The built-in modular-addition MLP (trained with modulus ``p``) or a language model; anything else is an
    error naming what the command reads."""
    name = builtin(spec)
    if name not in (None, BUILTIN):
        raise ParamLensError(f"{spec}: a built-in toy model; {command} reads the built-in '{BUILTIN}' MLP or a "
                             "transformer language model")
    loaded = resolve(spec, trust_code=trust_code, seed=seed, progress=progress,
                     options={"p": p} if name == BUILTIN else None)
    loaded.runnable(command)
    if loaded.kind != "modular_addition" and not loaded.is_language_model:
        raise ParamLensError(f"{spec}: a {loaded.kind} model; {command} reads the built-in '{BUILTIN}' MLP or a "
                             "transformer language model (other MLPs: paramlens.interaction.basis.segments_of)")
    return loaded


def modular_model(p: int, seed: int, progress: bool = True) -> ModularMLP:
    """The built-in modular-addition MLP, trained."""
    return _model(BUILTIN, p, seed, "interaction", False, progress).module


def modular_llc(net: ModularMLP, seed: int) -> tuple[float, float, int]:
    """``(LLC, its standard error, number of weights)`` of the trained modular-addition MLP on its training pairs
    (cross-entropy, SGLD batches of 512 pairs, the default :class:`LLCConfig`)."""
    x, y = all_pairs(net.cfg.p)[0], labels(net.cfg)
    idx, _ = split(net.cfg)
    g = torch.Generator().manual_seed(seed)

    def loss(run, step: int) -> torch.Tensor:
        rows = idx if step < 0 else idx[torch.randint(0, len(idx), (512,), generator=g)]
        return F.cross_entropy(run(x[rows]), y[rows])

    targets = select(net, "*")
    llc, err = local_learning_coefficient(net, targets, loss, len(idx), LLCConfig(seed=seed), progress=True)
    return llc, err, sum(t.shape[0] * t.shape[1] for t in targets)


@dataclass
class InteractionSummary(Result):
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

    def figures(self, folder: Path) -> list[tuple[str, str]]:
        from paramlens.report.plots import plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        for basis, curve in self.edge_curves.items():
            axes[0].semilogx([max(n, 1) for n in self.edge_counts], curve, marker=".", label=basis)
            axes[1].plot(range(1, len(self.direction_curves[basis]) + 1), self.direction_curves[basis], label=basis)
        axes[0].set_xlabel("strongest edges kept")
        axes[1].set_xlabel("top directions kept (hidden layer)")
        for ax in axes:
            ax.set_ylabel("accuracy (all pairs)")
            ax.legend()
        fig.tight_layout()
        fig.savefig(folder / "interaction_curves.png", dpi=120)
        plt.close(fig)
        return [("interaction_curves.png", "Ablation curves: accuracy when only the strongest edges, or only the "
                 "top basis directions of the hidden layer, are kept.")]

    def summary(self) -> str:
        lines = [f"modular addition: train acc {self.train_acc:.4f}, test acc {self.test_acc:.4f}"]
        lines += [f"  {r['basis']:7s} {r['edges needed']} / {r['edges']} edges keep accuracy {r['accuracy']:.4f}; "
                  f"{r['modules']} modules, Q = {r['Q']:.3f}" for r in self.rows]
        return "\n".join(lines)


def interaction_section(folder: Path, model: ModularMLP) -> tuple[InteractionSummary, Section]:
    """LIB vs PCA vs neurons on the trained modular-addition ``model``: edges, modules, ablation curves."""
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
    result = InteractionSummary(rows, acc["train_acc"], acc["test_acc"], counts, edge_curves, direction_curves)
    return result, Section(title=f"Interaction basis of a modular-addition MLP (p = {p})", text=result.summary(),
                           figures=result.figures(folder), table=rows)


def run_interaction(model: str, p: int, seed: int, out_dir: Path, lm: LMOptions | None = None,
                    trust_code: bool = False) -> tuple[InteractionSummary | LMInteraction, Path]:
    """The built-in modular-addition MLP (``p``), or any language model read as ``lm`` says."""
    loaded = _model(model, p, seed, "interaction", trust_code)
    if not loaded.is_language_model:
        folder = new_run_dir(out_dir, "interaction")
        result, section = interaction_section(folder, loaded.module)
    else:
        opts = lm or LMOptions()
        net, name = loaded.module, loaded.name
        result = lm_interaction(net, lm_windows(loaded, opts.text), name, sources=opts.sources, top=opts.top,
                                seed=seed)
        folder = new_run_dir(out_dir, "interaction")
        section = Section(title=f"Interaction basis of {name}'s residual stream", text=result.summary(),
                          figures=result.figures(folder), table=result.rows)
    result.save(folder)
    write_report(folder, "ParamLens interaction basis", [], [section])
    return result, folder


def run_degeneracy(model: str, p: int, seed: int, out_dir: Path, lm: LMOptions | None = None,
                   trust_code: bool = False) -> tuple[Degeneracy, Path]:
    """The built-in modular-addition MLP (``p``), or any language model read as ``lm`` says."""
    loaded = _model(model, p, seed, "degeneracy", trust_code)
    name = loaded.name
    if not loaded.is_language_model:
        net = loaded.module
        result = degeneracy(segments_of(net.layers()), all_pairs(p)[0])
        result.llc, result.llc_error, result.n_weights = modular_llc(net, seed)
    else:
        opts = lm or LMOptions()
        result = residual_degeneracy(loaded.module, lm_windows(loaded, opts.text), sources=opts.sources, seed=seed,
                                     progress=True)
    folder = new_run_dir(out_dir, "degeneracy")
    result.save(folder)
    write_report(folder, "ParamLens degeneracy", [], [Section(title=f"Degeneracy of {name}", text=result.summary(),
                                                               figures=result.figures(folder))])
    return result, folder
