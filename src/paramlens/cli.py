"""The ``paramlens`` command: a thin layer over the library's functions.

Errors from bad input print as one line on stderr and exit with status 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from paramlens.errors import ParamLensError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ParamLens: parameter-space interpretability for PyTorch.")
out = Console()
err = Console(stderr=True)
_state = {"debug": False}

# Options shared by several commands (typer reads them as defaults; one definition each)
OUT_DIR = typer.Option(Path("runs"), "--out", help="Folder for the new run folder.")
MODEL_OR_BUILTIN = typer.Argument("modular-addition", help="'modular-addition' (an MLP trained in-project), or a "
                                   "language model: 'smollm2', 'minilm', a Hugging Face folder or a .gguf file.")
MODULUS = typer.Option(59, help="Modulus of the built-in model.")
CORPUS = typer.Option("fortunes", help="Corpus name (fortunes, bible) or a text file.")
LM_TOKENS = typer.Option(2048, help="Language models: corpus tokens to read.")
LM_CONTEXT = typer.Option(64, help="Language models: tokens per window.")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    _state["debug"] = debug


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder for the run folder."),
    seed: int = typer.Option(0, help="Seed for every model and batch."),
    quick: bool = typer.Option(False, help="Tiny configs that finish in seconds (for smoke tests)."),
) -> None:
    """Train the built-in toy models, run every analysis on them and write an HTML report."""
    from paramlens.demo import run_demo

    run_demo(out_dir, seed=seed, quick=quick)


class ToyKind(str, Enum):
    tms = "tms"
    residual_mlp = "residual_mlp"
    cross_layer = "cross_layer"


@app.command("train-toy")
def train_toy(
    kind: ToyKind = typer.Argument(..., help="Which toy model."),
    features: Optional[int] = typer.Option(None, help="Number of sparse input features."),
    hidden: Optional[int] = typer.Option(None, help="TMS hidden width."),
    layers: Optional[int] = typer.Option(None, help="Residual MLP layers (1-3)."),
    steps: Optional[int] = typer.Option(None, help="Training steps."),
    identity: bool = typer.Option(False, help="TMS with a hidden identity layer."),
    seed: int = typer.Option(0),
    out_dir: Path = OUT_DIR,
    resume: Optional[Path] = typer.Option(None, help="Continue the interrupted run in this folder."),
) -> None:
    """Train a toy model with known mechanisms and save it to a run folder."""
    from paramlens.core.runs import load_config, new_run_dir, save_config
    from paramlens.models.toy import ZOO, save_model

    entry = ZOO[kind.value]
    if resume is not None:
        folder, cfg = resume, load_config(resume, entry.config)
    else:
        given = {"n_features": features, "n_hidden": hidden, "n_layers": layers, "n_steps": steps, "seed": seed}
        if identity:
            given["hidden_identity"] = True
        fields = entry.config.model_fields
        unknown = [k for k, v in given.items() if v is not None and k not in fields]
        if unknown:
            raise ParamLensError(f"{kind.value} has no option {', '.join(unknown)}")
        try:
            cfg = entry.config(**{k: v for k, v in given.items() if v is not None})
        except ValueError as e:
            raise ParamLensError(f"invalid {kind.value} settings: {e}") from None
        folder = new_run_dir(out_dir, kind.value)
    save_config(folder, cfg)
    err.print(f"training {kind.value} -> {folder}")
    model, history = entry.train(cfg, folder=folder, resume=resume is not None)
    save_model(folder, model, cfg)
    out.print(f"final loss {history[-1]['loss']:.4g}; saved to {folder}")


class DecompositionMethod(str, Enum):
    spd = "spd"
    apd = "apd"


@app.command("decompose")
def decompose_cmd(
    model_path: Path = typer.Argument(..., help="A toy run folder (train-toy), a Hugging Face folder, a .gguf file."),
    targets: list[str] = typer.Option(..., "--targets", "-t", help="Glob pattern over module names; repeat."),
    method: DecompositionMethod = typer.Option(DecompositionMethod.spd, help="spd or apd."),
    C: Optional[int] = typer.Option(None, "--C", help="Subcomponents per target (SPD) or components (APD)."),
    steps: Optional[int] = typer.Option(None, help="Training steps."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size."),
    lr: Optional[float] = typer.Option(None, help="Learning rate."),
    seed: int = typer.Option(0),
    settings: list[str] = typer.Option([], "--set", help="Any other config field as key=value; repeat."),
    text: Optional[Path] = typer.Option(None, help="Text file to draw token windows from (language models)."),
    seq_len: int = typer.Option(64, help="Tokens per window (language models)."),
    out_dir: Path = OUT_DIR,
    resume: Optional[Path] = typer.Option(None, help="Continue the interrupted run in this folder."),
    trust_code: bool = typer.Option(False, "--trust-code", help="Allow unpickling code (trusted files only)."),
) -> None:
    """Decompose target weights into subcomponents (SPD) or parameter components (APD)."""
    from paramlens.decompose.cli_run import run_decompose

    given = {"C": C, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParamLensError(f"--set takes key=value, got '{item}'")
        given[key] = value
    result, folder = run_decompose(model_path, targets, method.value, {k: v for k, v in given.items() if v is not None},
                                   text=text, seq_len=seq_len, out_dir=out_dir, resume=resume, trust_code=trust_code)
    if folder is not None:
        out.print(result.summary())
        out.print(f"report: {folder / 'index.html'}")


@app.command()
def bilinear(
    model: str = typer.Argument(..., help="A saved bilinear classifier folder, or a dataset to train one on: "
                                "fashion-mnist, mnist, digits."),
    steps: Optional[int] = typer.Option(None, help="Training steps (new model)."),
    d_hidden: Optional[int] = typer.Option(None, help="Bilinear hidden width (new model)."),
    noise: Optional[float] = typer.Option(None, help="Std of Gaussian input noise in training (new model)."),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay (new model)."),
    seed: Optional[int] = typer.Option(None, help="Seed (new model)."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Read a bilinear image classifier from its weights: class spectra, eigenvector images, truncation,
    adversarial masks; writes an HTML report."""
    from paramlens.bilinear.cli_run import run_bilinear

    given = {"n_steps": steps, "d_hidden": d_hidden, "input_noise": noise, "weight_decay": weight_decay, "seed": seed}
    result, folder = run_bilinear(model, {k: v for k, v in given.items() if v is not None}, out_dir)
    out.print(result.summary())
    out.print(f"report: {folder / 'index.html'}")


reverse_app = typer.Typer(no_args_is_help=True, help="Reverse-engineer a network from its disclosed weights.")
app.add_typer(reverse_app, name="reverse")


@reverse_app.command("scan")
def reverse_scan(
    path: Path = typer.Argument(..., help="A checkpoint: .safetensors, or a torch archive (its code never runs)."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Layer sizes, value sets, row signatures, repeating blocks, known constants, and what the output tests."""
    from paramlens.reverse.cli_run import run_scan

    result, folder = run_scan(path, out_dir)
    out.print(result.summary())
    out.print(f"report: {folder / 'index.html'}")


@reverse_app.command("circuit")
def reverse_circuit(
    path: Path = typer.Argument(..., help="An integer ReLU network over 0/1 inputs (.safetensors or torch archive)."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Lift every neuron to a threshold gate, simplify to named gates, prove equivalence, export
    circuit.json, circuit.dot and circuit.py."""
    from paramlens.reverse.cli_run import run_circuit

    result, folder = run_circuit(path, out_dir)
    out.print(result.summary())
    out.print(f"netlist, DOT and Python function: {folder}")


@reverse_app.command("invert")
def reverse_invert(
    path: Path = typer.Argument(..., help="A ReLU network (.safetensors or torch archive)."),
    target: str = typer.Option(..., help="Wanted output: 0x... (bits, lowest = output 0) or comma-separated values."),
    low: float = typer.Option(0.0, help="Lower bound of every input (real-valued networks)."),
    high: float = typer.Option(1.0, help="Upper bound of every input (real-valued networks)."),
    tol: float = typer.Option(1e-4, help="Allowed error per output (real-valued networks)."),
) -> None:
    """Find an input that produces the target output: SAT for Boolean networks, MILP for small real ones."""
    from paramlens.reverse.invert import invert_file

    result = invert_file(str(path), target, low=low, high=high, tol=tol)
    out.print(f"tried: {result.tried}")
    out.print(result.why)
    if result.found:
        x = result.input
        bits = all(v in (0.0, 1.0) for v in x)
        out.print("input: " + ("".join(str(int(v)) for v in x) + f" (= 0x{sum(int(v) << i for i, v in enumerate(x)):x}, "
                                "lowest bit = input 0)" if bits else ", ".join(f"{v:.6g}" for v in x)))
    else:
        raise typer.Exit(1)


@reverse_app.command("reassemble")
def reverse_reassemble(
    pieces: Path = typer.Argument(..., help="Folder of piece files, one linear layer (weight, bias) each."),
    data: Path = typer.Option(..., "--data", help="CSV with a header: inputs first, then the network's outputs."),
    search_rows: int = typer.Option(256, help="Rows used while searching (all rows are used to verify)."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Pair expand/contract pieces from their weights, order the blocks with the data, verify on every row,
    and print the permutation (piece indices in network order)."""
    from paramlens.reverse.cli_run import run_reassemble

    result, folder = run_reassemble(pieces, data, out_dir, search_rows=search_rows)
    out.print(result.summary())
    out.print(f"report: {folder / 'index.html'}")
    if not result.exact:
        raise typer.Exit(1)


@app.command()
def geometry(
    model: str = typer.Argument(..., help="'smollm2', a Hugging Face model folder, or a .gguf file."),
    corpus: str = CORPUS,
    tokens: int = typer.Option(4096, help="Tokens to analyse (a quarter of the windows are held out)."),
    context: int = typer.Option(128, help="Tokens per window."),
    classes: str = typer.Option("ridge,lowrank,diagonal,mlp", help="Tokenwise function classes to fit."),
    primary: str = typer.Option("ridge", help="Class whose T replaces the update in the KL intervention."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Per layer: how much of the update h_(l+1) - h_l is a function of the current token alone (cosines,
    angles, dominant-subspace energy, explained variance), and what replacing it does to the output."""
    from paramlens.geometry.cli_run import run_geometry
    from paramlens.geometry.layer_updates import GeometryConfig

    cfg = GeometryConfig(classes=classes.split(","), primary=primary, context=context)
    result, folder = run_geometry(model, corpus, tokens, cfg, out_dir)
    out.print(result.summary())
    out.print(f"report: {folder / 'index.html'}")


@app.command()
def bigram(
    model: str = typer.Argument(..., help="'smollm2', a Hugging Face model folder, or a .gguf file."),
    corpus: str = CORPUS,
    tokens: int = typer.Option(200_000, help="Corpus tokens: bigram counts and training windows (10% held out)."),
    steps: int = typer.Option(5000, help="Most sparsification steps (stops earlier when masks are decided)."),
    lam: float = typer.Option(1.0, help="Weight of the mean mask in the loss."),
    context: int = typer.Option(64, help="Tokens per window."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Find the bigram subnetwork by continuous sparsification of every block matrix; report surprisal
    correlation with the bigram model, where its parameters sit, and ablations."""
    from paramlens.subnetwork.bigram import BigramConfig
    from paramlens.subnetwork.cli_run import run_bigram

    result, folder = run_bigram(model, corpus, tokens, BigramConfig(max_steps=steps, lam=lam, context=context), out_dir)
    out.print(result.summary())
    out.print(f"report: {folder / 'index.html'}")


@app.command("rotation")
def rotation_command(
    model: str = typer.Argument(..., help="'smollm2', a Hugging Face model folder, or a .gguf file."),
    corpus: str = CORPUS,
    tokens: int = typer.Option(4096, help="Tokens to analyse."),
    context: int = typer.Option(128, help="Tokens per window."),
    subnetwork: Path | None = typer.Option(None, help="A `paramlens bigram` run folder: compare with its subnetwork."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Per layer: rotation (median |arg eigenvalue|) of ridge maps from hidden states to the input token
    embeddings and to the final hidden states; with --subnetwork, also for the model reduced to a bigram
    subnetwork found by `paramlens bigram`."""
    from paramlens.geometry.cli_run import run_rotation
    from paramlens.subnetwork.bigram import BigramSubnetwork

    weights_from = BigramSubnetwork.load(subnetwork).weights if subnetwork else None
    results, folder = run_rotation(model, corpus, tokens, context, out_dir, weights_from)
    for result in results:
        out.print(result.summary())
    out.print(f"report: {folder / 'index.html'}")


@app.command()
def interaction(
    model: str = MODEL_OR_BUILTIN,
    p: int = MODULUS,
    seed: int = typer.Option(0),
    corpus: str = CORPUS,
    tokens: int = LM_TOKENS,
    context: int = LM_CONTEXT,
    sources: int = typer.Option(4, help="Language models: random vectors per batch for Jacobian moments and edges."),
    top: int = typer.Option(16, help="Language models: edges among this many top directions per layer."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Local interaction basis vs PCA (vs neurons on the MLP): edges, modules (Leiden) and Q, ablation curves;
    on the built-in MLP also the edges needed to keep accuracy."""
    from paramlens.interaction.cli_run import LMOptions, run_interaction

    lm = LMOptions(corpus=corpus, tokens=tokens, context=context, sources=sources, top=top)
    result, folder = run_interaction(model, p, seed, out_dir, lm)
    out.print(result.summary())
    out.print(f"report: {folder / 'index.html'}")


@app.command("degeneracy")
def degeneracy_command(
    model: str = MODEL_OR_BUILTIN,
    p: int = MODULUS,
    seed: int = typer.Option(0),
    corpus: str = CORPUS,
    tokens: int = LM_TOKENS,
    context: int = LM_CONTEXT,
    out_dir: Path = OUT_DIR,
) -> None:
    """Null activation directions, null gradient directions, and dead / always-on / duplicate units per layer
    (language models: the residual stream, and the MLP units of every block)."""
    from paramlens.interaction.cli_run import LMOptions, run_degeneracy

    result, folder = run_degeneracy(model, p, seed, out_dir, LMOptions(corpus=corpus, tokens=tokens, context=context))
    out.print(result.summary())
    out.print(f"report: {folder / 'index.html'}")


@app.command()
def information(
    model: str = MODEL_OR_BUILTIN,
    p: int = MODULUS,
    seed: int = typer.Option(0),
    shuffled: bool = typer.Option(False, help="Built-in model: train and measure on shuffled labels (memorisation)."),
    targets: list[str] = typer.Option(None, "--targets", help="Language models: weight patterns (default: the "
                                      "first block's matrices)."),
    corpus: str = CORPUS,
    tokens: int = LM_TOKENS,
    context: int = LM_CONTEXT,
    beta: float = typer.Option(1e-3, help="Weight of the information term."),
    steps: int = typer.Option(1000, help="Steps learning the noise."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Information in the weights: learned log-normal noise per weight, per layer, with the curvature bound."""
    from paramlens.information.weights_info import InformationConfig
    from paramlens.information.cli_run import run_information

    result, folder = run_information(model, p, seed, shuffled, InformationConfig(beta=beta, steps=steps, seed=seed),
                                     out_dir, targets, corpus, tokens, context)
    out.print(result.summary())
    out.print(f"report: {folder / 'index.html'}")


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A weights file or Hugging Face model folder."),
    trust_code: bool = typer.Option(False, "--trust-code", help="Allow unpickling code (trusted files only)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every tensor in a file: name, shape, dtype and value statistics."""
    from paramlens.core.loading import inspect as inspect_file

    found = inspect_file(path, trust_code=trust_code)
    if as_json:
        out.print_json(json.dumps({"path": str(found.path), "format": found.format, "note": found.note,
                                   "parameters": found.n_parameters, "tensors": found.rows}))
        return
    table = Table(title=f"{found.path} ({found.format}): {len(found.rows)} tensors, {found.n_parameters:,} values")
    widest = max((len(r["name"]) for r in found.rows), default=4)
    table.add_column("name", min_width=min(widest, 60), overflow="fold")
    for col in ("shape", "dtype", "mean", "std", "min", "max", "nonfinite"):
        table.add_column(col, justify="left" if col == "dtype" else "right")
    for r in found.rows:
        table.add_row(r["name"], "x".join(map(str, r["shape"])) or "scalar", r["dtype"],
                      *(f"{r[k]:.4g}" if k in r else "" for k in ("mean", "std", "min", "max")),
                      str(r.get("nonfinite", "")))
    out.print(table)
    if found.note:
        err.print(f"note: {found.note}")


def main() -> None:
    """Entry point: usage errors exit 2 (typer), ParamLens errors print one line and exit 1."""
    try:
        app()
    except ParamLensError as e:
        if _state["debug"]:
            raise
        err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
