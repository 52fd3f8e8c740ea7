"""What ``paramlens information`` does: on the built-in modular-addition MLP (real or shuffled labels), or on
chosen matrices of a causal language model with its next-token loss (other models through
:func:`paramlens.information.weights_info.weight_information`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch.nn.functional as F
from torch import nn

from paramlens.core.loading import Loaded
from paramlens.core.resolve import builtin, resolve
from paramlens.core.streams import batches_of, block_prefix
from paramlens.core.text import TextOptions, lm_windows
from paramlens.core.weights import select
from paramlens.errors import ParamLensError
from paramlens.information.weights_info import InformationConfig, WeightInformation, weight_information
from paramlens.models.toy.modular_addition import all_pairs, labels, split
from paramlens.report.run import write_run

BUILTIN = "modular-addition"


def _modular(net: nn.Module, cfg: InformationConfig) -> WeightInformation:
    """The modular-addition MLP on its training pairs, against the labels it was trained on."""
    x, y = all_pairs(net.cfg.p)[0], labels(net.cfg)
    idx, _ = split(net.cfg)
    targets = select(net, ["embed", "hidden", "unembed"])
    return weight_information(net, targets, lambda run, step: F.cross_entropy(run(x[idx]), y[idx]), cfg)


def _language_model(loaded: Loaded, targets: list[str], text: TextOptions, batch: int,
                    cfg: InformationConfig) -> WeightInformation:
    """``targets`` (default: every matrix of the first block) of a causal LM; one batch of ``batch`` windows
    per step, cycling over the windows; step -1 (evaluation) is the first batch."""
    if loaded.kind != "causal_lm":
        raise ParamLensError(f"{loaded.name} has no next-token logits (an encoder?); information needs a causal LM")
    net = loaded.module
    batches = list(batches_of(lm_windows(loaded, text), batch))

    def task_loss(run, step: int):
        ids = batches[max(step, 0) % len(batches)]
        logits = run(input_ids=ids).logits
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())

    chosen = select(net, targets or [f"{block_prefix(net)}.0.*"])
    return weight_information(net, chosen, task_loss, cfg)


def run_information(model: str, p: int, seed: int, shuffled: bool, cfg: InformationConfig, out_dir: Path,
                    targets: list[str] | None = None, text: TextOptions | None = None,
                    trust_code: bool = False) -> tuple[WeightInformation, Path]:
    """The built-in model (``p``, ``shuffled``) or a causal LM (``targets``, ``text``); writes the run folder and
    its report."""
    name = builtin(model)
    if name not in (None, BUILTIN):
        raise ParamLensError(f"{model}: a built-in toy model; information reads the built-in '{BUILTIN}' MLP or a "
                             "causal language model")
    if shuffled and name is None:
        raise ParamLensError(f"--shuffled retrains the built-in model on permuted labels; it has no meaning for "
                             f"'{model}'")
    options = {"p": p, "shuffled_labels": shuffled} if name else None
    loaded = resolve(model, trust_code=trust_code, seed=seed, progress=False, options=options)
    loaded.runnable("information")
    if loaded.kind == "modular_addition":
        result, title = _modular(loaded.module, cfg), f"{'shuffled' if shuffled else 'real'} labels"
    elif loaded.is_language_model:
        result, title = _language_model(loaded, targets or [], text or TextOptions(), 8, cfg), loaded.name
    else:
        raise ParamLensError(f"{model}: a {loaded.kind} model; information reads the built-in '{BUILTIN}' MLP or a "
                             "causal language model (other models: paramlens.information.weights_info)")
    settings = {"model": model, "p": p, "seed": seed, "shuffled": shuffled, "targets": targets or [],
                **(asdict(text) if text and loaded.is_language_model else {}), **cfg.model_dump(mode="json")}
    folder = write_run(result, out_dir, "ParamLens information in weights", name="information",
                       heading=f"Information in the weights ({title})", config=settings)
    return result, folder
