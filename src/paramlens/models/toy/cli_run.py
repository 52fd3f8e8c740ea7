"""What ``paramlens train-toy`` does: check the settings (or the run being resumed), train, save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from paramlens.core.memory import check_fits
from paramlens.core.runs import new_run_dir, resume_config, save_config
from paramlens.errors import UsageError
from paramlens.models.toy import ZOO, save_model


def _check_memory(kind: str, cfg: Any) -> None:
    """Refuse sizes that cannot fit: parameters with gradients and Adam states, and a batch through the widest layer
    (the model is built on the meta device, so nothing is allocated)."""
    with torch.device("meta"):
        model = ZOO[kind].model(cfg)
    params = sum(p.numel() for p in model.parameters())
    widest = max((max(p.shape) for p in model.parameters() if p.dim()), default=1)
    check_fits(16 * params + 32 * cfg.batch_size * widest, f"train-toy {kind} with {params:,} parameters",
               "lower --features / --hidden")


def run_train_toy(kind: str, given: dict[str, Any], out_dir: Path, resume: Path | None,
                  override: list[str]) -> tuple[Path, float]:
    """Train the toy ``kind`` with the settings ``given`` (or continue the run in ``resume``); returns the run folder
    and the final loss."""
    entry = ZOO[kind]
    if resume is not None:
        folder, cfg = resume, resume_config(resume, entry.config, given, override)
    else:
        unknown = [k for k in given if k not in entry.config.model_fields]
        if unknown:
            raise UsageError(f"{kind} has no option {', '.join(unknown)}")
        cfg = entry.config(**given)
        _check_memory(kind, cfg)
        folder = new_run_dir(out_dir, kind)
    # config.json is written once the run is known to be valid (a resume: its checkpoint fits the settings)
    model, history = entry.train(cfg, folder=folder, resume=resume is not None,
                                 on_start=lambda: save_config(folder, cfg))
    save_model(folder, model, cfg)
    return folder, history[-1]["loss"]
