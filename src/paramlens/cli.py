"""The ``paramlens`` command: a thin layer over the library's functions.

Every command that takes a model reads it through :func:`paramlens.core.resolve.resolve`. Errors print as one
line on stderr with a distinct exit status (:class:`paramlens.terminal.Exit`); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from inspect import Parameter, signature
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from paramlens.core.fields import MAX_SEED
from paramlens.core.text import TextOptions
from paramlens.errors import UsageError
from paramlens.terminal import Exit, finite, note, out, safe, say

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="ParamLens: parameter-space interpretability for PyTorch.")
_state = {"debug": False}

MODELS = ("'smollm2', 'minilm', a built-in name ('modular-addition', 'tms', ...), a run folder, a Hugging Face "
          "folder, or a weights file (.safetensors, .pt/.pth/.bin, .npz, .gguf)")

# Options shared by several commands (typer reads them as defaults; one definition each)
OUT_DIR = typer.Option(Path("runs"), "--out", help="Folder for the new run folder.")

SEED = typer.Option(0, min=0, max=MAX_SEED, help="Seed for every model, batch and random draw.")
SEED_OR_SAVED = typer.Option(None, min=0, max=MAX_SEED, help="Seed (default 0; on --resume, the saved run's).")
OVERRIDE = typer.Option("", help="On --resume: settings that may differ from the saved run (comma-separated).")
TRUST_CODE = typer.Option(False, "--trust-code", help="Allow code stored with the model to run (trusted files only).")
LM_MODEL = typer.Argument(..., help=f"A language model: {MODELS}.")
MODEL_OR_BUILTIN = typer.Argument("modular-addition", help=f"The built-in MLP or a language model: {MODELS}.")
MODULUS = typer.Option(59, min=3, max=257, help="Modulus of the built-in modular-addition model (its p^2 one-hot "
                      "pairs are held in memory).")
CORPUS = typer.Option("fortunes", help="Text to read: a corpus name (fortunes, bible) or a text file.")
TOKEN_IDS = typer.Option(None, "--token-ids", help="A file of token ids (one integer tensor, or a text file with one "
                         "window per line), for models without a tokenizer; replaces --corpus.")
LM_TOKENS = typer.Option(2048, min=2, max=100_000_000, help="Corpus tokens to read.")
LM_CONTEXT = typer.Option(64, min=2, max=1_000_000, help="Tokens per window.")
LONG_CONTEXT = typer.Option(128, min=2, max=1_000_000, help="Tokens per window.")


TEXT_FIELDS = ("corpus", "token_ids", "tokens", "context")


def option_group(name: str, build: Callable[..., Any], options: dict[str, tuple[Any, Any]]) -> Callable[[Callable],
                                                                                                          Callable]:
    """Give a command the parameters ``options`` (``{parameter: (type, typer default)}``, added after its own); the
    command receives them as one argument ``name`` = ``build(**values)`` in place of its placeholder ``name``."""

    def wrap(command: Callable) -> Callable:
        sig = signature(command)
        params = [p for key, p in sig.parameters.items() if key != name]
        params += [Parameter(key, Parameter.KEYWORD_ONLY, default=default, annotation=kind)
                   for key, (kind, default) in options.items()]

        @functools.wraps(command)
        def grouped(**kwargs: Any) -> Any:
            return command(**{name: build(**{key: kwargs.pop(key) for key in options})}, **kwargs)

        grouped.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        grouped.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != name},
                                   **{key: kind for key, (kind, _) in options.items()}}
        return grouped

    return wrap


def _text_fields(tokens: Any, context: Any) -> dict[str, tuple[Any, Any]]:
    return {"corpus": (str, CORPUS), "token_ids": (Optional[Path], TOKEN_IDS), "tokens": (int, tokens),
            "context": (int, context)}


def text_options(tokens: Any = LM_TOKENS, context: Any = LM_CONTEXT) -> Callable[[Callable], Callable]:
    """Give a command ``--corpus --token-ids --tokens --context`` (with these ``tokens`` and ``context`` defaults);
    it receives them as one ``text: TextOptions`` argument."""
    return option_group("text", TextOptions, _text_fields(tokens, context))


@dataclass
class MLPOrLM:
    """What ``interaction``, ``degeneracy`` and ``information`` read: the built-in modular-addition MLP (trained with
    modulus ``p`` and ``seed``) or a language model ``model`` with the token windows ``text``."""

    model: str
    p: int
    seed: int
    text: TextOptions


def _mlp_or_lm(model: str, p: int, seed: int, **text: Any) -> MLPOrLM:
    return MLPOrLM(model, p, seed, TextOptions(**text))


mlp_or_lm = option_group("source", _mlp_or_lm, {"model": (str, MODEL_OR_BUILTIN), "p": (int, MODULUS),
                                                "seed": (int, SEED), **_text_fields(LM_TOKENS, LM_CONTEXT)})


def _show(result, folder: Optional[Path]) -> None:
    """Print the summary of a result (or of each result in a list) and where its report is."""
    for one in result if isinstance(result, list) else [result]:
        say(one.summary())
    if folder is not None:
        say(f"report: {folder / 'index.html'}")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    _state["debug"] = debug


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder for the run folder."),
    seed: int = SEED,
    quick: bool = typer.Option(False, help="Tiny configs that finish in seconds (for smoke tests)."),
) -> None:
    """Train the built-in toy models, run every analysis on them and write an HTML report. (paramlens.demo)"""
    from paramlens.demo import run_demo

    say(f"report: {run_demo(out_dir, seed=seed, quick=quick) / 'index.html'}")


class ToyKind(str, Enum):
    tms = "tms"
    residual_mlp = "residual_mlp"
    cross_layer = "cross_layer"


@app.command("train-toy")
def train_toy(
    kind: ToyKind = typer.Argument(..., help="Which toy model."),
    features: Optional[int] = typer.Option(None, min=1, max=100_000, help="Number of sparse input features."),
    hidden: Optional[int] = typer.Option(None, min=1, max=100_000, help="TMS hidden width."),
    layers: Optional[int] = typer.Option(None, min=1, max=3, help="Residual MLP layers (1-3)."),
    steps: Optional[int] = typer.Option(None, min=1, max=10_000_000, help="Training steps."),
    identity: bool = typer.Option(False, help="TMS with a hidden identity layer."),
    seed: Optional[int] = SEED_OR_SAVED,
    out_dir: Path = OUT_DIR,
    resume: Optional[Path] = typer.Option(None, help="Continue the interrupted run in this folder."),
    override: str = OVERRIDE,
) -> None:
    """Train a toy model with known mechanisms and save it to a run folder. (Zoo: paramlens.models.toy.)"""
    from paramlens.models.toy.cli_run import run_train_toy

    given = {"n_features": features, "n_hidden": hidden, "n_layers": layers, "n_steps": steps, "seed": seed,
             "hidden_identity": True if identity else None}
    folder, loss = run_train_toy(kind.value, {k: v for k, v in given.items() if v is not None}, out_dir, resume,
                                 _names(override))
    say(f"final loss {loss:.4g}; saved to {folder}")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


class DecompositionMethod(str, Enum):
    spd = "spd"
    apd = "apd"


@app.command("decompose")
@text_options(tokens=typer.Option(65_536, min=2, max=100_000_000, help="Language models: corpus tokens to sample "
                                  "windows from."),
              context=typer.Option(128, min=2, max=1_000_000, help="Language models: tokens per window."))
def decompose_cmd(
    ctx: typer.Context,
    model: Optional[str] = typer.Argument(None, help=f"The model to decompose: {MODELS}."),
    targets: list[str] = typer.Option([], "--targets", "-t", help="Glob pattern over module names; repeat."),
    method: Optional[DecompositionMethod] = typer.Option(None, help="spd (default) or apd."),
    C: Optional[int] = typer.Option(None, "--C", min=1, max=1_000_000,
                                    help="Subcomponents per target (SPD) or components (APD)."),
    steps: Optional[int] = typer.Option(None, min=1, max=100_000_000, help="Training steps."),
    batch_size: Optional[int] = typer.Option(None, min=1, max=10_000_000, help="Global batch size (language models: "
                                             "windows; default 8)."),
    lr: Optional[float] = typer.Option(None, help="Learning rate."),
    seed: Optional[int] = SEED_OR_SAVED,
    settings: list[str] = typer.Option([], "--set", help="Any other config field as key=value; repeat."),
    text: TextOptions = None,
    out_dir: Path = OUT_DIR,
    resume: Optional[Path] = typer.Option(None, help="Continue the interrupted run in this folder."),
    override: str = OVERRIDE,
    trust_code: bool = TRUST_CODE,
    device: str = typer.Option("auto", help="Where to train: auto (a CUDA GPU when torch sees one, else the CPU), "
                               "cpu, cuda or cuda:N; under torchrun each process takes its LOCAL_RANK's GPU."),
) -> None:
    """Decompose target weights into subcomponents (SPD) or parameter components (APD). (Method:
    paramlens.decompose.)"""
    from paramlens.decompose.cli_run import Request, run_decompose

    given = {"C": C, "steps": steps, "batch_size": batch_size, "lr": lr, **_key_values(settings)}
    given_text = {name for name in TEXT_FIELDS if _given(ctx, name)}
    req = Request(model, list(targets), method.value if method else None, text,
                  {k: v for k, v in given.items() if v is not None}, seed)
    result, folder = run_decompose(req, out_dir=out_dir, resume=resume, override=_names(override),
                                   trust_code=trust_code, given_text=given_text, device=device)
    if folder is not None:
        _show(result, folder)


@app.command()
def components(
    run: Path = typer.Argument(..., help="A run folder written by paramlens decompose."),
    corpus: Optional[str] = typer.Option(None, help="Language models: the corpus to harvest (default: the run's)."),
    tokens: Optional[int] = typer.Option(None, min=2, max=100_000_000,
                                         help="Language models: corpus tokens to harvest (default: the run's)."),
    ablate: Optional[str] = typer.Option(None, help="Units to ablate, comma-separated: TARGET:INDEX (APD: "
                                         "component:INDEX) or a mechanism id (mechanism:K); writes the edited model "
                                         "and what the edit changes."),
    settings: list[str] = typer.Option([], "--set", help="A harvest setting as key=value (threshold, top_k, "
                                       "context, batch_size, ...); repeat."),
    prompt: list[str] = typer.Option([], "--prompt", help="Language models: a text shown first in the prompt view, "
                                     "with its own attribution graph (SPD); repeat."),
    resume: bool = typer.Option(False, help="Continue an interrupted harvest."),
    trust_code: bool = TRUST_CODE,
) -> None:
    """Read a decomposition: where each subcomponent fires, what it does, what feeds it, its mechanisms, in a browser
    that opens from disk; and edits that ablate some. (Method: paramlens.components.)"""
    from paramlens.components.read import ablation_specs, edit_run, read_run
    from paramlens.components.run import open_run

    given = {"corpus": corpus, "tokens": tokens, **_key_values(settings)}
    opened = open_run(run, trust_code=trust_code)
    for spec in ablation_specs(ablate):  # a wrong unit fails before any work
        if not spec.startswith("mechanism:"):
            opened.units.index(spec)
    reading, data = read_run(opened, {k: v for k, v in given.items() if v is not None}, prompt_texts=prompt,
                             resume=resume)
    say(reading.summary())
    specs = ablation_specs(ablate, reading.mechanisms)
    if specs:
        say(edit_run(opened, specs, data, reading.harvest.config["batch_size"]).summary())


def _key_values(items: list[str]) -> dict[str, str]:
    """``--set key=value`` items as ``{key: value}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes key=value, got '{item}'")
        out[key] = value
    return out


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was set on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


@app.command()
def bilinear(
    model: str = typer.Argument(..., help="A saved bilinear classifier (run folder), or a dataset to train one on: "
                                "fashion-mnist, mnist, digits."),
    steps: Optional[int] = typer.Option(None, min=1, max=10_000_000, help="Training steps (new model)."),
    d_hidden: Optional[int] = typer.Option(None, min=1, max=100_000, help="Bilinear hidden width (new model)."),
    noise: Optional[float] = typer.Option(None, help="Std of Gaussian input noise in training (new model)."),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay (new model)."),
    seed: Optional[int] = typer.Option(None, min=0, max=MAX_SEED, help="Seed (new model)."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Read a bilinear image classifier from its weights: class spectra, eigenvector images, truncation,
    adversarial masks; writes an HTML report. (Method: paramlens.bilinear.)"""
    from paramlens.bilinear.cli_run import run_bilinear

    given = {"n_steps": steps, "d_hidden": d_hidden, "input_noise": finite(noise, "--noise", 0),
             "weight_decay": finite(weight_decay, "--weight-decay", 0), "seed": seed}
    _show(*run_bilinear(model, {k: v for k, v in given.items() if v is not None}, out_dir))


reverse_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="Reverse-engineer a network from its disclosed weights. (Methods: paramlens.reverse.)")
app.add_typer(reverse_app, name="reverse")
WEIGHTS = typer.Argument(..., help=f"The network: {MODELS} (its code never runs).")


@reverse_app.command("scan")
def reverse_scan(path: str = WEIGHTS, out_dir: Path = OUT_DIR) -> None:
    """Layer sizes, value sets, row signatures, repeating blocks, known constants, and what the output tests."""
    from paramlens.reverse.cli_run import run_scan

    _show(*run_scan(path, out_dir))


@reverse_app.command("circuit")
def reverse_circuit(
    path: str = WEIGHTS,
    domain: str = typer.Option("auto", "--input", help="What the network reads: bytes:N (byte codes 0..255, 8 "
                              "circuit inputs each, lowest bit first), bits:N (0/1), or auto (read from the first "
                              "layer)."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Lift an integer ReLU network (layers streamed one at a time) to threshold gates over its input bits, fold
    constants, simplify to named gates, prove equivalence, state adders, bitwise functions and rotations of 32-bit
    words where it computes on them, and export circuit.json, circuit.dot and circuit.py."""
    from paramlens.reverse.cli_run import run_circuit
    from paramlens.reverse.identify_domain import parse_input

    parse_input(domain)
    result, folder = run_circuit(path, out_dir, domain)
    _show(result, folder)
    say(f"netlist, DOT and Python function: {folder}")


@reverse_app.command("invert")
def reverse_invert(
    path: str = WEIGHTS,
    target: str = typer.Option(..., help="Wanted output: 0x... (bits, lowest = output 0) or comma-separated values."),
    low: float = typer.Option(0.0, help="Lower bound of every input (real-valued networks)."),
    high: float = typer.Option(1.0, help="Upper bound of every input (real-valued networks)."),
    tol: float = typer.Option(1e-4, help="Allowed error per output (real-valued networks)."),
    last: str = typer.Option("auto", help="Does the last layer pass a ReLU? auto (yes for Boolean networks, no for "
                             "real ones), relu or linear."),
    domain: str = typer.Option("auto", "--input", help="What the network reads: bytes:N, bits:N or auto (read from "
                               "the first layer); used to identify hash locks."),
    words: Optional[Path] = typer.Option(None, help="Word list for a hash lock's candidate search, one word per line, likeliest "
                               "first (default: the system list of wamerican, ranked by frequency)."),
    max_seconds: float = typer.Option(3600.0, min=1.0, help="Time limit of a candidate search; the search is saved "
                                      "and the same command resumes it."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Folder where a candidate search is saved (under "
                                 "invert/) and resumed from."),
) -> None:
    """Find an input that produces the target output: a candidate search (words, pairs, triples) for a network whose
    output tests a hash of its input against a digest, SAT for Boolean networks, MILP for small real ones."""
    from paramlens.reverse.cli_run import run_invert
    from paramlens.reverse.identify_domain import parse_input

    parse_input(domain)
    result = run_invert(path, target, low=low, high=high, tol=tol, last=last, domain=domain, words=words,
                        max_seconds=max_seconds, out_dir=out_dir)
    say(f"tried: {result.tried}")
    say(result.why)
    if not result.found:
        raise typer.Exit(int(Exit.NOT_FOUND))
    x = result.input
    if result.message is not None:
        say(f"input: {result.message.decode(errors='backslashreplace')!r} (bytes {result.message.hex()}, then zeros "
            f"to {len(x)} inputs)")
    elif all(v in (0.0, 1.0) for v in x):
        value = sum(int(v) << i for i, v in enumerate(x))
        say("input: " + "".join(str(int(v)) for v in x) + f" (= 0x{value:x}, lowest bit = input 0)")
    else:
        say("input: " + ", ".join(f"{v:.6g}" for v in x))


@reverse_app.command("identify")
def reverse_identify(
    path: str = WEIGHTS,
    domain: str = typer.Option("auto", "--input", help="What the network reads: bytes:N (byte codes 0..255), bits:N "
                              "(0/1), or auto (read from the first layer)."),
    samples: int = typer.Option(256, min=32, max=4096, help="Random inputs to run."),
    seed: int = SEED,
    out_dir: Path = OUT_DIR,
) -> None:
    """Run the network on random inputs and name what its units carry from a catalogue (md5, sha1, sha256, crc32,
    the input's bytes and bits, popcount, byte sum, comparisons; paramlens.reverse.catalogue.register adds more):
    statements per layer, equality tests read from the weights, each with the inputs that confirm it and the first
    counterexample."""
    from paramlens.reverse.cli_run import run_identify
    from paramlens.reverse.identify_domain import parse_input

    parse_input(domain)
    _show(*run_identify(path, domain, samples, seed, out_dir))


@reverse_app.command("reassemble")
def reverse_reassemble(
    pieces: Path = typer.Argument(..., help="Folder of piece files, one linear layer (weight, bias) each."),
    data: Path = typer.Option(..., "--data", help="CSV with a header: the inputs, the network's outputs, and "
                              "possibly other columns (a label), which are listed and not used."),
    target_column: str = typer.Option("", help="Column(s) holding the network's own outputs, comma-separated "
                                      "(default: pred; without a pred column, the last column of a CSV that holds "
                                      "exactly the inputs and the outputs)."),
    search_rows: int = typer.Option(1024, min=1, max=10_000_000, help="Rows used while searching (all rows verify)."),
    out_dir: Path = OUT_DIR,
) -> None:
    """Pair expand/contract pieces from their weights, order the blocks with the data, verify on every row,
    and print the permutation (piece indices in network order). Piece files may be in any weights format
    (safetensors, torch.save state dicts, .npz, ...); other files in the folder are listed and skipped."""
    from paramlens.reverse.cli_run import run_reassemble

    result, folder = run_reassemble(pieces, data, out_dir, _names(target_column) or None, search_rows)
    _show(result, folder)
    if not result.exact:
        raise typer.Exit(int(Exit.NOT_FOUND))


@app.command()
@text_options(tokens=typer.Option(4096, min=2, max=100_000_000, help="Tokens to analyse (a quarter of the windows "
                                  "are held out)."), context=LONG_CONTEXT)
def geometry(
    model: str = LM_MODEL,
    text: TextOptions = None,
    classes: str = typer.Option("ridge,lowrank,diagonal,mlp", help="Tokenwise function classes to fit."),
    primary: str = typer.Option("ridge", help="Class whose T replaces the update in the KL intervention."),
    trust_code: bool = TRUST_CODE,
    out_dir: Path = OUT_DIR,
) -> None:
    """Per layer: how much of the update h_(l+1) - h_l is a function of the current token alone (cosines,
    angles, dominant-subspace energy, explained variance), and what replacing it does to the output. (Method:
    paramlens.geometry.)"""
    from paramlens.geometry.cli_run import run_geometry
    from paramlens.geometry.layer_updates import GeometryConfig

    cfg = GeometryConfig(classes=_names(classes), primary=primary)
    _show(*run_geometry(model, text, cfg, out_dir, trust_code))


@app.command()
@text_options(tokens=typer.Option(200_000, min=2, max=100_000_000, help="Corpus tokens: bigram counts and training "
                                  "windows (10% held out)."))
def bigram(
    model: str = LM_MODEL,
    text: TextOptions = None,
    steps: int = typer.Option(5000, min=1, max=10_000_000, help="Most sparsification steps (stops earlier when masks "
                              "are decided)."),
    lam: float = typer.Option(1.0, help="Weight of the mean mask in the loss."),
    trust_code: bool = TRUST_CODE,
    out_dir: Path = OUT_DIR,
) -> None:
    """Find the bigram subnetwork by continuous sparsification of every block matrix; report surprisal
    correlation with the bigram model, where its parameters sit, and ablations. (Method: paramlens.subnetwork.)"""
    from paramlens.subnetwork.bigram import BigramConfig
    from paramlens.subnetwork.cli_run import run_bigram

    cfg = BigramConfig(max_steps=steps, lam=finite(lam, "--lam", 0))
    _show(*run_bigram(model, text, cfg, out_dir, trust_code))


@app.command("rotation")
@text_options(tokens=typer.Option(4096, min=2, max=100_000_000, help="Tokens to analyse."), context=LONG_CONTEXT)
def rotation_command(
    model: str = LM_MODEL,
    text: TextOptions = None,
    subnetwork: Optional[Path] = typer.Option(None, help="A `paramlens bigram` run folder: compare with its "
                                              "subnetwork."),
    trust_code: bool = TRUST_CODE,
    out_dir: Path = OUT_DIR,
) -> None:
    """Per layer: rotation (median |arg eigenvalue|) of ridge maps from hidden states to the input token
    embeddings and to the final hidden states; with --subnetwork, also for the model reduced to a bigram
    subnetwork found by `paramlens bigram`. (Method: paramlens.geometry.)"""
    from paramlens.geometry.cli_run import run_rotation

    _show(*run_rotation(model, text, out_dir, subnetwork, trust_code))


@app.command()
@mlp_or_lm
def interaction(
    source: MLPOrLM = None,
    sources: int = typer.Option(4, min=1, max=10_000, help="Language models: random vectors per batch for Jacobian "
                                "moments and edges."),
    top: int = typer.Option(16, min=1, max=100_000, help="Language models: edges among this many top directions per "
                            "layer."),
    trust_code: bool = TRUST_CODE,
    out_dir: Path = OUT_DIR,
) -> None:
    """Local interaction basis vs PCA (vs neurons on the MLP): edges, modules (Leiden) and Q, ablation curves;
    on the built-in MLP also the edges needed to keep accuracy. (Method: paramlens.interaction.)"""
    from paramlens.interaction.cli_run import LMOptions, run_interaction

    lm = LMOptions(text=source.text, sources=sources, top=top)
    _show(*run_interaction(source.model, source.p, source.seed, out_dir, lm, trust_code))


@app.command("degeneracy")
@mlp_or_lm
def degeneracy_command(
    source: MLPOrLM = None,
    trust_code: bool = TRUST_CODE,
    out_dir: Path = OUT_DIR,
) -> None:
    """Null activation directions, null gradient directions, and dead / always-on / duplicate units per layer
    (language models: the residual stream, and the MLP units of every block). (Method: paramlens.interaction.)"""
    from paramlens.interaction.cli_run import LMOptions, run_degeneracy

    _show(*run_degeneracy(source.model, source.p, source.seed, out_dir, LMOptions(text=source.text), trust_code))


@app.command()
@mlp_or_lm
def information(
    source: MLPOrLM = None,
    shuffled: bool = typer.Option(False, help="Built-in model: train and measure on shuffled labels (memorisation)."),
    targets: list[str] = typer.Option([], "--targets", "-t", help="Language models: weight patterns (default: the "
                                      "first block's matrices)."),
    beta: float = typer.Option(1e-3, help="Weight of the information term."),
    steps: int = typer.Option(1000, min=1, max=10_000_000, help="Steps learning the noise."),
    trust_code: bool = TRUST_CODE,
    out_dir: Path = OUT_DIR,
) -> None:
    """Information in the weights: learned log-normal noise per weight, per layer, with the curvature bound. (Method:
    paramlens.information.)"""
    from paramlens.information.cli_run import run_information
    from paramlens.information.weights_info import InformationConfig

    cfg = InformationConfig(beta=finite(beta, "--beta", 0, strict_low=True), steps=steps, seed=source.seed)
    _show(*run_information(source.model, source.p, source.seed, shuffled, cfg, out_dir, targets, source.text,
                           trust_code))


@app.command()
def inspect(
    path: str = typer.Argument(..., help=f"What to read: {MODELS}."),
    trust_code: bool = TRUST_CODE,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every tensor: name, shape, dtype and value statistics (non-finite values counted, not refused). (Library:
    paramlens.resolve.)"""
    from paramlens.core.loading import inspect_loaded
    from paramlens.core.resolve import resolve

    found = inspect_loaded(resolve(path, trust_code=trust_code, check_finite=False))
    if as_json:
        out.print_json(json.dumps({"path": found.source, "format": found.format, "note": found.note,
                                   "parameters": found.n_parameters, "tensors": found.rows}))
        return
    title = f"{found.source} ({found.format}): {len(found.rows)} tensors, {found.n_parameters:,} values"
    columns = ("name", "shape", "dtype", "mean", "std", "min", "max", "nonfinite")
    cells = [[safe(r["name"]).replace("\t", "\\t").replace("\n", "\\n"), "x".join(map(str, r["shape"])) or "scalar",
              r["dtype"],
              *(f"{r[k]:.4g}" if k in r else "" for k in ("mean", "std", "min", "max")), str(r.get("nonfinite", ""))]
             for r in found.rows]
    if not sys.stdout.isatty():  # piped: one tab-separated line per tensor, nothing cut or wrapped
        say(f"# {title}")
        for row in [list(columns), *cells]:
            say("\t".join(row))
    else:
        table = Table(title=safe(title))
        for col in columns:
            table.add_column(col, justify="left" if col in ("name", "dtype") else "right", overflow="fold")
        for row in cells:
            table.add_row(*row)
        out.print(table)
    if found.note:
        note(f"note: {found.note}")


def main() -> None:
    """Entry point: run the command, turn every failure into one line and its exit status (see ``Exit``)."""
    from paramlens.terminal import run_cli

    run_cli(app, _state)


if __name__ == "__main__":
    sys.exit(main())
