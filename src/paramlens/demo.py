"""``paramlens demo``: train the built-in toy models, run every analysis on them, write one HTML report.

Each model gets a section with its ground truth read off the weights, its training curve and its score
against a baseline measured in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console
from torch import nn

from paramlens.core.runs import new_run_dir
from paramlens.core.weights import run_with
from paramlens.models.toy import ZOO, save_model
from paramlens.models.toy.cross_layer import CrossLayerConfig, layer_shares
from paramlens.models.toy.residual_mlp import ResidualMLP, ResidualMLPConfig, residual_loss
from paramlens.models.toy.tms import TMS, TMSConfig
from paramlens.report import Section, plots, section_of, write_report
from paramlens.terminal import safe


@dataclass
class Trained:
    name: str
    model: nn.Module
    history: list[dict[str, float]]


def demo_models(quick: bool, seed: int) -> dict[str, Any]:
    """The demo's model configs; ``quick`` shrinks every one to a few seconds of training (tests)."""
    tiny = {"n_steps": 300, "batch_size": 256} if quick else {}
    small_resid = {"n_features": 20, "d_embed": 100, "d_mlp": 10} if quick else {}
    return {
        "tms_5_2": TMSConfig(seed=seed, **tiny),
        "tms_40_10": TMSConfig(n_features=40, n_hidden=10, seed=seed, **tiny),
        "tms_5_2_identity": TMSConfig(hidden_identity=True, seed=seed, **tiny),
        "residual_mlp_1layer": ResidualMLPConfig(seed=seed, **tiny, **small_resid),
        "cross_layer": CrossLayerConfig(seed=seed, **tiny, **small_resid),
    }


def _loss_curve(folder: Path, t: Trained, baseline: float) -> str:
    points = [(h["step"], h["loss"]) for h in t.history]
    end = t.history[-1]["step"]
    return plots.curves(folder / f"{t.name}_loss.png", {"trained": points, "baseline": [(0, baseline), (end, baseline)]},
                        f"{t.name}: training loss", "MSE")


def tms_section(folder: Path, t: Trained) -> tuple[Section, dict[str, Any]]:
    model: TMS = t.model
    cfg = model.cfg
    W = model.linear1.weight.detach()
    gen = torch.Generator().manual_seed(12345)
    x = model.source().sample(20000, gen)
    with torch.no_grad():
        loss = float((model(x) - x).pow(2).mean())
    zero = float(x.pow(2).mean())  # the all-zero output
    figs = [(_loss_curve(folder, t, zero), "training loss; dashed: predicting 0")]
    if cfg.n_hidden == 2:
        figs.append((plots.columns_2d(folder / f"{t.name}_features.png", W, "feature directions (columns of W)"),
                     "each feature's column of W in the 2-d hidden space"))
    figs.append((plots.heatmap(folder / f"{t.name}_wtw.png", W.T @ W, "W^T W", "feature", "feature"),
                 "W^T W: diagonal = feature norms, off-diagonal = interference"))
    gt = model.ground_truth()
    represented = int(model.represented().sum())
    section = Section(
        title=f"TMS {cfg.n_features}-{cfg.n_hidden}" + (" + identity" if cfg.hidden_identity else ""),
        text=f"Ground truth: {gt.description} (represented: its own output is positive with it alone at 1).",
        figures=figs,
    )
    row = {"model": section.title, "parameters": sum(p.numel() for p in model.parameters()), "loss": loss,
           "baseline": zero, "loss / baseline": loss / zero, "check": f"{represented}/{cfg.n_features} features"}
    return section, row


def residual_section(folder: Path, t: Trained) -> tuple[Section, dict[str, Any]]:
    model: ResidualMLP = t.model
    cfg = model.cfg
    gen = torch.Generator().manual_seed(12345)
    x = model.source().sample(20000, gen)
    no_mlp = {f"layers.{k}.mlp_out": torch.zeros_like(layer.mlp_out.weight) for k, layer in enumerate(model.layers)}
    with torch.no_grad():
        loss = float(residual_loss(model, x))
        baseline = float(residual_loss(lambda inp: run_with(model, no_mlp, inp), x))
    errors = model.feature_errors()
    figs = [
        (_loss_curve(folder, t, baseline), "training loss; dashed: the same model with its MLPs ablated"),
        (plots.bars(folder / f"{t.name}_feature_error.png", errors, "per-feature error, y = x + ReLU(x)",
                    "feature", "MSE", reference=1 / 6),
         "error with one feature active; dashed: no MLP (1/6)"),
    ]
    check = f"{int((errors < 1 / 6).sum())}/{cfg.n_features} features beat no-MLP"
    if cfg.n_layers > 1:
        shares = layer_shares(model)
        split = int(((shares > 0.1).all(dim=1)).sum())
        figs.append((plots.stacked_shares(folder / f"{t.name}_shares.png", shares,
                                          "share of each feature's output per layer",
                                          [f"layer {k}" for k in range(cfg.n_layers)]),
                     "how each feature's ReLU is divided between the layers"))
        check += f"; {split} split across layers"
    title = "Cross-layer MLP" if cfg.kind == "cross_layer" else f"Residual MLP, {cfg.n_layers} layer(s)"
    section = Section(
        title=title,
        text=f"{cfg.n_features} features in a {cfg.d_embed}-d residual stream, {cfg.d_mlp} ReLU neurons. "
        f"Ground truth: {model.ground_truth().description}.",
        figures=figs,
    )
    row = {"model": title, "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
           "loss": loss, "baseline": baseline, "loss / baseline": loss / baseline, "check": check}
    return section, row


def components_browser(folder: Path, run: str, model: str, targets: list[str], quick: bool, progress: bool) -> str:
    """Record what the decomposition in ``folder/run`` decomposes (the zoo model saved in ``folder/model``), harvest it
    and write its browser; returns the browser's page, relative to ``folder``."""
    from paramlens.components.read import read_run
    from paramlens.components.run import open_run
    from paramlens.core.text import TextOptions
    from paramlens.decompose.cli_run import Request, write_record

    write_record(folder / run, Request(str((folder / model).resolve()), targets, "spd", TextOptions()))
    reading, _ = read_run(open_run(folder / run, progress=progress), {"n_inputs": 2048 if quick else 16384},
                          progress=progress)
    return str(reading.browser.relative_to(folder))


def decomposition_section(folder: Path, model: TMS, quick: bool, seed: int, progress: bool) -> tuple[Section, dict[str, Any]]:
    """SPD of TMS 5-2: importances for one-hot inputs, cosines to the true features, loss curves."""
    from paramlens.decompose import decompose
    from paramlens.decompose.spd_config import FAST_TOY_SCHEDULE

    steps = 200 if quick else 10_000
    r = decompose(model, model.source(), ["linear1", "linear2"], ground_truth=model.ground_truth(), steps=steps,
                  seed=seed, tied=model.tied_targets, folder=folder / "spd_tms_5_2", progress=progress,
                  **FAST_TOY_SCHEDULE)
    browser = components_browser(folder, "spd_tms_5_2", "models/tms_5_2", ["linear1", "linear2"], quick, progress)
    m = r.metrics
    section = Section(
        title="SPD of TMS 5-2",
        links=[(browser, "Browse its subcomponents: where each fires, what it does, what feeds it (opens from disk)")],
        text=f"Stochastic parameter decomposition of W into C={r.config['C']} rank-one subcomponents, used in "
        f"linear1 (W) and, transposed, in linear2 (W^T), each layer with its own importance gates; {steps} steps. The right answer: one subcomponent per feature, each on only "
        "when its feature is. Every metric is shown next to the same decomposition at random init.",
        figures=r.figures(folder, prefix="spd_"),
        table=[row for row in r.table() if "/" not in row["metric"] or row["metric"].endswith("linear1")
               or row["metric"].startswith("recon/")],
    )
    row = {"model": "SPD of TMS 5-2", "parameters": sum(v.numel() for v in r.params.values()), "loss": m["recon/ci"],
           "baseline": m["recon/zero"], "loss / baseline": m["recon/ci"] / m["recon/zero"],
           "check": f"MMCS {m['mmcs/linear1']:.4f}, ML2R {m['ml2r/linear1']:.3f}, "
                    f"{int(m['alive/linear1'])} alive (true: {model.cfg.n_features})"}
    return section, row


def bilinear_section(folder: Path, quick: bool, seed: int, progress: bool) -> tuple[Section, dict[str, Any]]:
    """A bilinear classifier on the 5,000 bundled MNIST digits, read from its weights."""
    from paramlens.bilinear.result import INTRO, analyse
    from paramlens.core.images import load_images
    from paramlens.models.bilinear_nets import ClassifierConfig, train_classifier

    data = load_images("mnist")
    cfg = ClassifierConfig(dataset="mnist", d_hidden=32 if quick else 128, n_steps=100 if quick else 1500,
                           input_noise=0.3, weight_decay=0.1, seed=seed)
    model, _ = train_classifier(cfg, data, folder=folder / "models" / "bilinear_mnist", progress=progress)
    save_model(folder / "models" / "bilinear_mnist", model, cfg)
    a = analyse(model, data)
    top10 = dict(zip(a.truncation["ks"], a.truncation["accuracy"]))[10]
    mid = len(a.attack["norms"]) // 2
    row = {"model": "Bilinear MNIST classifier", "parameters": sum(p.numel() for p in model.parameters()),
           "loss": 1 - a.accuracy, "baseline": 0.9, "loss / baseline": (1 - a.accuracy) / 0.9,
           "check": f"top-10 eigenvectors keep {top10 / a.accuracy:.1%} of accuracy; masks flip "
                    f"{a.attack['mask'][mid]:.0%} vs noise {a.attack['noise'][mid]:.0%}"}
    return section_of(a, folder, "Bilinear classifier on mnist", prefix="bilinear_", intro=INTRO), row


def scan_section(folder: Path) -> tuple[Section, dict[str, Any]]:
    """A compiled 4-round ARX network with a hidden equality test, described from its weights alone."""
    from paramlens.models.compiled import compile_circuit
    from paramlens.models.compiled.builders import arx_mixer
    from paramlens.reverse.scan import scan

    path = compile_circuit(arx_mixer(4, bits=8, target=0x4B1D)).save(folder / "models" / "arx4.safetensors")
    result = scan(path, progress=False)
    found = f"{result.n_repeats} rounds of {result.period} layers, test against {result.constant}"
    row = {"model": "Compiled ARX network (scan)", "parameters": result.n_params, "loss": "",
           "baseline": "", "loss / baseline": "",
           "check": f"{found} (true: 4 rounds, 0x4b1d)"}
    return section_of(result, folder, f"Structure scan of {path.name}", prefix="scan_"), row


def interaction_demo_section(folder: Path, quick: bool, seed: int, progress: bool) -> tuple[Section, dict[str, Any]]:
    """The interaction basis of a modular-addition MLP against PCA and the neuron basis."""
    from paramlens.interaction.modular import modular_interaction
    from paramlens.models.toy.modular_addition import ModularConfig, train_modular

    p = 17 if quick else 31
    result = modular_interaction(train_modular(ModularConfig(p=p, seed=seed), progress=progress)[0])
    section = section_of(result, folder, f"Interaction basis of a modular-addition MLP (p = {p})")
    rows = {r["basis"]: r for r in result.rows}
    row = {"model": "Modular addition MLP (interaction basis)", "parameters": "", "loss": 1 - result.test_acc,
           "baseline": "", "loss / baseline": "",
           "check": f"edges to keep accuracy: LIB {rows['lib']['edges needed']}, PCA {rows['pca']['edges needed']}, "
                    f"neurons {rows['neuron']['edges needed']}"}
    return section, row


SECTIONS: dict[str, Callable[[Path, Trained], tuple[Section, dict[str, Any]]]] = {
    "tms": tms_section,
    "residual_mlp": residual_section,
    "cross_layer": residual_section,
}


def run_demo(root: str | Path = "runs", *, seed: int = 0, quick: bool = False, progress: bool = True) -> Path:
    """Train the zoo, analyse it, write ``index.html``; returns the run folder."""
    console = Console(stderr=True, quiet=not progress, markup=False, highlight=False)
    folder = new_run_dir(root, "demo")
    console.print(safe(f"ParamLens demo -> {folder}"))
    sections, summary, trained = [], [], {}
    for name, cfg in demo_models(quick, seed).items():
        console.print(f"  training {name}")
        model, history = ZOO[cfg.kind].train(cfg, folder=folder / "models" / name, progress=progress)
        save_model(folder / "models" / name, model, cfg)
        trained[name] = model
        section, row = SECTIONS[cfg.kind](folder, Trained(name, model, history))
        sections.append(section)
        summary.append(row)
    console.print("  decomposing tms_5_2 (SPD)")
    section, row = decomposition_section(folder, trained["tms_5_2"], quick, seed, progress)
    sections.append(section)
    summary.append(row)
    console.print("  training and reading a bilinear MNIST classifier")
    section, row = bilinear_section(folder, quick, seed, progress)
    sections.append(section)
    summary.append(row)
    console.print("  scanning a compiled network")
    section, row = scan_section(folder)
    sections.append(section)
    summary.append(row)
    console.print("  interaction basis of a modular-addition MLP")
    section, row = interaction_demo_section(folder, quick, seed, progress)
    sections.append(section)
    summary.append(row)
    write_report(folder, "ParamLens demo: toy models with known mechanisms", summary, sections)
    return folder
