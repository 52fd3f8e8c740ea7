"""What ``paramlens decompose`` does: find the model, its data and ground truth, fit, write a report.

Under ``torchrun`` (``WORLD_SIZE > 1``) it joins the process group (gloo on CPU, nccl on GPU) and trains
data-parallel; process 0 writes the run folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from paramlens.core.data import TokenWindows, text_tokens
from paramlens.core.loading import load, load_tokenizer
from paramlens.core.runs import CONFIG, new_run_dir
from paramlens.core.weights import select
from paramlens.decompose import METHODS, Decomposition, decompose
from paramlens.errors import ParamLensError
from paramlens.models.toy import ZOO, load_toy
from paramlens.report import Section, write_report


def _join_process_group() -> int:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank() if dist.is_initialized() else 0


def _model_and_data(path: Path, text: Path | None, seq_len: int, trust_code: bool) -> tuple[Any, Any, Any, dict]:
    """``(model, data source, ground truth or None, default settings)`` for a path."""
    config = path / CONFIG
    if config.is_file() and json.loads(config.read_text()).get("kind") in ZOO:
        model = load_toy(path)
        return model, model.source(), model.ground_truth(), {"tied": getattr(model, "tied_targets", {})}
    loaded = load(path, trust_code=trust_code)
    if loaded.module is None:
        raise ParamLensError(f"{path}: holds weights but no runnable model; decompose needs a toy run folder, a "
                             "Hugging Face folder, a .gguf file or (with --trust-code) a whole saved module")
    if text is None:
        raise ParamLensError("decomposing a language model needs --text FILE to draw token windows from")
    tokens = text_tokens(text, load_tokenizer(path))
    return loaded.module, TokenWindows(tokens, seq_len), None, {"output_loss": "kl"}


def run_decompose(path: Path, targets: list[str], method: str, given: dict[str, Any], *, text: Path | None,
                  seq_len: int, out_dir: Path, resume: Path | None, trust_code: bool) -> tuple[Decomposition, Path | None]:
    """Fit and report; returns the result and (on process 0) the run folder."""
    rank = _join_process_group()
    model, data, truth, defaults = _model_and_data(path, text, seq_len, trust_code)
    fields = METHODS[method].config.model_fields
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ParamLensError(f"{method} has no setting {', '.join(unknown)}; settings: {', '.join(fields)}")
    names = {t.name for t in select(model, targets)}
    tied = {k: v for k, v in defaults.pop("tied", {}).items() if k in names and v in names}
    if tied and "tied" in fields:
        defaults["tied"] = tied
    try:
        cfg = METHODS[method].config(**{**defaults, **given})
    except ValueError as e:
        raise ParamLensError(f"invalid {method} settings: {e}") from None
    folder = resume if resume is not None else (new_run_dir(out_dir, f"{method}") if rank == 0 else None)
    result = decompose(model, data, targets, method, config=cfg, ground_truth=truth, folder=folder, resume=resume is not None,
                       eval_every=max(cfg.steps // 20, 1))
    if rank != 0:
        return result, None
    section = Section(f"{method.upper()} of {path.name}", text=result.summary().splitlines()[0],
                      figures=result.figures(folder), table=result.table())
    write_report(folder, f"ParamLens {method.upper()}: {path}", [], [section])
    return result, folder
