"""What ``paramlens bilinear`` does: train or load a bilinear classifier, read it from its weights, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramlens.bilinear.result import INTRO, ClassifierAnalysis, analyse
from paramlens.core.images import DATASETS, load_images
from paramlens.core.resolve import resolve
from paramlens.core.runs import new_run_dir
from paramlens.errors import ParamLensError, UsageError
from paramlens.models.bilinear_nets.classifier import ClassifierConfig, train_classifier
from paramlens.models.train import save_model
from paramlens.report.run import write_run


def run_bilinear(model: str, settings: dict[str, Any], out_dir: Path, progress: bool = True
                 ) -> tuple[ClassifierAnalysis, Path]:
    """``model``: a folder holding a saved bilinear classifier, or a dataset name (``fashion-mnist``,
    ``mnist``, ``digits``) to train one with ``settings`` (fields of :class:`ClassifierConfig`) first."""
    if model not in DATASETS and not Path(model).exists():
        raise ParamLensError(f"'{model}' is neither a model folder nor a dataset ({', '.join(DATASETS)})")
    if model not in DATASETS:
        if settings:
            raise UsageError(f"training settings ({', '.join(settings)}) only apply when training a new model")
        loaded = resolve(model)
        loaded.runnable("bilinear")
        if loaded.kind != "bilinear_classifier":
            raise ParamLensError(f"{model}: a {loaded.kind} model, not a bilinear classifier; give a saved classifier "
                                 "folder (paramlens bilinear <dataset> writes one) or a dataset "
                                 f"({', '.join(DATASETS)})")
        net = loaded.module
        if net.cfg.dataset is None:
            raise ParamLensError(f"{model}: the saved config names no dataset to evaluate on")
        data = load_images(net.cfg.dataset)
        folder = new_run_dir(out_dir, "bilinear")
    else:
        data = load_images(model)
        cfg = ClassifierConfig(dataset=model, d_input=data.n_pixels, n_classes=len(data.classes), **settings)
        folder = new_run_dir(out_dir, "bilinear")
        net, _ = train_classifier(cfg, data, folder=folder / "model", progress=progress)
        save_model(folder / "model", net, cfg)
    analysis = analyse(net, data)
    write_run(analysis, folder, f"ParamLens bilinear: {model}", heading=f"Bilinear classifier on {analysis.dataset}",
              intro=INTRO, config={"model": model, **settings})
    return analysis, folder
