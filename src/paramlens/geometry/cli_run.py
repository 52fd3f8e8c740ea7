"""What ``paramlens geometry`` and ``paramlens rotation`` do: load a language model and its token windows, run
the analysis, write the report."""

from __future__ import annotations

from pathlib import Path

from paramlens.core.resolve import resolve_lm
from paramlens.core.runs import new_run_dir
from paramlens.core.text import TextOptions, lm_windows
from paramlens.geometry.layer_updates import GeometryConfig, LayerGeometry, layer_geometry
from paramlens.geometry.rotation import Rotation, rotation
from paramlens.report import Section, write_report


def run_geometry(model: str, text: TextOptions, cfg: GeometryConfig, out_dir: Path,
                 trust_code: bool = False) -> tuple[LayerGeometry, Path]:
    loaded = resolve_lm(model, "geometry", trust_code=trust_code)
    result = layer_geometry(loaded.module, lm_windows(loaded, text), cfg, name=loaded.name)
    folder = new_run_dir(out_dir, "geometry")
    result.save(folder)
    rows = [{**r, "KL": result.kl[r["layer"]]} for r in result.rows(cfg.primary)]
    write_report(folder, f"ParamLens geometry: {loaded.name}", [], [Section(
        title=f"Layer-update geometry of {loaded.name}", text=result.summary(), figures=result.figures(folder),
        table=rows)])
    return result, folder


def run_rotation(model: str, text: TextOptions, out_dir: Path, subnetwork: Path | None = None,
                 trust_code: bool = False) -> tuple[list[Rotation], Path]:
    """Rotation of the model, and with ``subnetwork`` (a ``paramlens bigram`` run folder) of the model reduced to
    that subnetwork."""
    from paramlens.subnetwork.bigram import BigramSubnetwork

    loaded = resolve_lm(model, "rotation", trust_code=trust_code)
    net, name = loaded.module, loaded.name
    windows = lm_windows(loaded, text)
    results = [rotation(net, windows, name=name)]
    if subnetwork is not None:
        weights = BigramSubnetwork.load(subnetwork).weights(net)
        results.append(rotation(net, windows, name=f"{name} (subnetwork)", weights=weights))
    folder = new_run_dir(out_dir, "rotation")
    for i, r in enumerate(results):
        r.save(folder / f"rotation_{i}")
    sections = [Section(title=f"Rotation toward input and output: {r.model}", text=r.summary(),
                        figures=r.figures(folder, prefix=f"{i}_")) for i, r in enumerate(results)]
    write_report(folder, f"ParamLens rotation: {name}", [], sections)
    return results, folder
