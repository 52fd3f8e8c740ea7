"""What ``paramlens geometry`` and ``paramlens rotation`` do: load a language model and a corpus, run the
analysis, write the report."""

from __future__ import annotations

from pathlib import Path

import torch

from paramlens.core.runs import new_run_dir
from paramlens.core.text import load_corpus
from paramlens.errors import ParamLensError
from paramlens.geometry.layer_updates import GeometryConfig, LayerGeometry, layer_geometry
from paramlens.geometry.rotation import Rotation, rotation
from paramlens.models.lm.pretrained import load_lm
from paramlens.report import Section, write_report


def corpus_ids(tokenizer, corpus: str, n_tokens: int) -> torch.Tensor:
    """The first ``n_tokens`` token ids of ``corpus`` (a corpus name or a text file)."""
    text = load_corpus(corpus, max_chars=max(20 * n_tokens, 10_000))
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)[:n_tokens]
    if len(ids) < n_tokens:
        raise ParamLensError(f"corpus '{corpus}' gives {len(ids)} tokens; {n_tokens} were asked for")
    return ids


def run_geometry(model: str, corpus: str, n_tokens: int, cfg: GeometryConfig, out_dir: Path) -> tuple[LayerGeometry, Path]:
    net, tokenizer, name = load_lm(model)
    result = layer_geometry(net, corpus_ids(tokenizer, corpus, n_tokens), cfg, name=name)
    folder = new_run_dir(out_dir, "geometry")
    result.save(folder)
    rows = [{k: v for k, v in r.items()} | {"KL": result.kl[r["layer"]]} for r in result.rows(cfg.primary)]
    write_report(folder, f"ParamLens geometry: {name}", [], [Section(
        title=f"Layer-update geometry of {name}", text=result.summary(), figures=result.figures(folder), table=rows)])
    return result, folder


def run_rotation(model: str, corpus: str, n_tokens: int, context: int, out_dir: Path) -> tuple[Rotation, Path]:
    net, tokenizer, name = load_lm(model)
    result = rotation(net, corpus_ids(tokenizer, corpus, n_tokens), context=context, name=name)
    folder = new_run_dir(out_dir, "rotation")
    result.save(folder)
    write_report(folder, f"ParamLens rotation: {name}", [], [Section(
        title=f"Rotation toward input and output: {name}", text=result.summary(), figures=result.figures(folder))])
    return result, folder
