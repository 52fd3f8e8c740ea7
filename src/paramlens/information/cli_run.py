"""What ``paramlens information`` does: on the built-in modular-addition MLP (real or shuffled labels), or on
chosen matrices of a causal language model with its next-token loss on a corpus (other models through
:func:`paramlens.information.weights_info.weight_information`)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from paramlens.core.runs import new_run_dir
from paramlens.core.weights import select
from paramlens.errors import ParamLensError
from paramlens.information.weights_info import InformationConfig, WeightInformation, weight_information
from paramlens.models.toy.modular_addition import BUILTIN, ModularConfig, all_pairs, split, train_modular
from paramlens.report import Section, write_report


def _modular(p: int, seed: int, shuffled: bool, cfg: InformationConfig) -> WeightInformation:
    """The modular-addition MLP on its training pairs (``shuffled``: trained and measured on permuted labels)."""
    mcfg = ModularConfig(p=p, seed=seed)
    x, y = all_pairs(p)
    idx, _ = split(mcfg)
    if shuffled:
        y = y.clone()
        y[idx] = y[idx][torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]
    net, _ = train_modular(mcfg, progress=False, labels=y)
    targets = select(net, ["embed", "hidden", "unembed"])
    return weight_information(net, targets, lambda run, step: F.cross_entropy(run(x[idx]), y[idx]), cfg)


def _language_model(model: str, targets: list[str] | None, corpus: str, n_tokens: int, context: int, batch: int,
                    cfg: InformationConfig) -> tuple[WeightInformation, str]:
    """``targets`` (default: every matrix of the first block) of a causal LM; one batch of ``batch`` windows
    per step, cycling over the corpus; step -1 (evaluation) is the first batch."""
    from paramlens.core.text import corpus_token_ids
    from paramlens.models.lm.pretrained import load_lm
    from paramlens.models.lm.streams import block_prefix, windows_of

    net, tokenizer, name = load_lm(model)
    batches = list(windows_of(corpus_token_ids(tokenizer, corpus, n_tokens), context, batch))

    def task_loss(run, step: int):
        ids = batches[max(step, 0) % len(batches)]
        logits = getattr(run(input_ids=ids), "logits", None)
        if logits is None:
            raise ParamLensError(f"{name} has no next-token logits (an encoder?); information needs a causal LM")
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())

    chosen = select(net, targets or [f"{block_prefix(net)}.0.*"])
    return weight_information(net, chosen, task_loss, cfg), name


def run_information(model: str, p: int, seed: int, shuffled: bool, cfg: InformationConfig, out_dir: Path,
                    targets: list[str] | None = None, corpus: str = "fortunes", n_tokens: int = 2048,
                    context: int = 64) -> tuple[WeightInformation, Path]:
    """The built-in model (``p``, ``shuffled``) or a causal LM (``targets``, ``corpus``, ``n_tokens``,
    ``context``); writes the run folder and its report."""
    if model == BUILTIN:
        result, title = _modular(p, seed, shuffled, cfg), f"{'shuffled' if shuffled else 'real'} labels"
    elif shuffled:
        raise ParamLensError("--shuffled retrains the built-in model on permuted labels; it has no meaning for "
                             f"'{model}'")
    else:
        result, title = _language_model(model, targets, corpus, n_tokens, context, 8, cfg)
    folder = new_run_dir(out_dir, "information")
    result.save(folder)
    write_report(folder, "ParamLens information in weights", [], [Section(
        title=f"Information in the weights ({title})", text=result.summary(), figures=result.figures(folder))])
    return result, folder
