"""What ``paramlens geometry`` and ``paramlens rotation`` do: load a language model and its token windows, run
the analysis, write the run folder."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from paramlens.core.resolve import resolve_lm
from paramlens.core.text import TextOptions, lm_windows
from paramlens.geometry.layer_updates import GeometryConfig, LayerGeometry, layer_geometry
from paramlens.geometry.rotation import Rotation, rotation
from paramlens.report.run import write_run


def run_geometry(model: str, text: TextOptions, cfg: GeometryConfig, out_dir: Path,
                 trust_code: bool = False) -> tuple[LayerGeometry, Path]:
    loaded = resolve_lm(model, "geometry", trust_code=trust_code)
    result = layer_geometry(loaded.module, lm_windows(loaded, text), cfg, name=loaded.name)
    folder = write_run(result, out_dir, f"ParamLens geometry: {loaded.name}", name="geometry",
                       heading=f"Layer-update geometry of {loaded.name}",
                       config={"model": model, **asdict(text), **cfg.model_dump(mode="json")})
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
    folder = write_run([(f"Rotation toward input and output: {r.model}", r) for r in results], out_dir,
                       f"ParamLens rotation: {name}", name="rotation",
                       config={"model": model, **asdict(text), "subnetwork": subnetwork})
    return results, folder
