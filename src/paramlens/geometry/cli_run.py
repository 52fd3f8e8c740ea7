"""What ``paramlens geometry`` and ``paramlens rotation`` do: load a language model and a corpus, run the
analysis, write the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from paramlens.core.runs import new_run_dir
from paramlens.core.text import corpus_token_ids
from paramlens.geometry.layer_updates import GeometryConfig, LayerGeometry, layer_geometry
from paramlens.geometry.rotation import Rotation, rotation
from paramlens.models.lm.pretrained import load_lm
from paramlens.report import Section, write_report


def run_geometry(model: str, corpus: str, n_tokens: int, cfg: GeometryConfig, out_dir: Path) -> tuple[LayerGeometry, Path]:
    net, tokenizer, name = load_lm(model)
    result = layer_geometry(net, corpus_token_ids(tokenizer, corpus, n_tokens), cfg, name=name)
    folder = new_run_dir(out_dir, "geometry")
    result.save(folder)
    rows = [{**r, "KL": result.kl[r["layer"]]} for r in result.rows(cfg.primary)]
    write_report(folder, f"ParamLens geometry: {name}", [], [Section(
        title=f"Layer-update geometry of {name}", text=result.summary(), figures=result.figures(folder), table=rows)])
    return result, folder


def run_rotation(model: str, corpus: str, n_tokens: int, context: int, out_dir: Path,
                 weights_from: Callable[[nn.Module], dict] | None = None) -> tuple[list[Rotation], Path]:
    """Rotation of the model, and of the model with ``weights_from(model)`` substituted when given."""
    net, tokenizer, name = load_lm(model)
    ids = corpus_token_ids(tokenizer, corpus, n_tokens)
    results = [rotation(net, ids, context=context, name=name)]
    if weights_from is not None:
        results.append(rotation(net, ids, context=context, name=f"{name} (subnetwork)", weights=weights_from(net)))
    folder = new_run_dir(out_dir, "rotation")
    for i, r in enumerate(results):
        r.save(folder / f"rotation_{i}")
    sections = [Section(title=f"Rotation toward input and output: {r.model}", text=r.summary(),
                        figures=r.figures(folder, prefix=f"{i}_")) for i, r in enumerate(results)]
    write_report(folder, f"ParamLens rotation: {name}", [], sections)
    return results, folder
