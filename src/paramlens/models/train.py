"""Seeded, resumable training shared by the model zoo, and saving models to run folders."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from paramlens.core.data import DataSource
from paramlens.core.runs import CONFIG, fit_loop, save_config
from paramlens.errors import ParamLensError

MODEL_FILE = "model.safetensors"


class TrainConfig(BaseModel):
    """Optimisation settings shared by the zoo (Adam with decoupled weight decay, cosine decay to zero)."""

    n_steps: int = Field(5000, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(5e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module with the global RNG seeded to ``seed``, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def train(
    model: nn.Module,
    source: DataSource,
    loss_fn: Callable[[nn.Module, Tensor], Tensor],
    cfg: TrainConfig,
    *,
    folder: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``model`` in place on batches from ``source``; returns the loss log.

    Same ``cfg.seed`` -> same batches and the same final weights; with ``folder`` the run checkpoints and
    ``resume=True`` continues an interrupted run to the identical result.
    """
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, decoupled_weight_decay=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / cfg.n_steps)))

    def step(_: int) -> dict[str, float]:
        loss = loss_fn(model, source.sample(cfg.batch_size, generator))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss.item()}

    stateful = {"model": model, "optimizer": opt, "scheduler": sched, "generator": generator}
    return fit_loop(
        cfg.n_steps, step, stateful, folder=folder, resume=resume, description=f"train {type(model).__name__}",
        progress=progress, checkpoint_every=max(cfg.n_steps // 10, 100),
    )


def save_model(folder: str | Path, model: nn.Module, cfg: BaseModel) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
    folder = Path(folder)
    save_config(folder, cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / MODEL_FILE))
    return folder


def read_saved(folder: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """``(config dict, state dict)`` of a model saved with :func:`save_model`."""
    folder = Path(folder)
    for name in (CONFIG, MODEL_FILE):
        if not (folder / name).is_file():
            raise ParamLensError(f"{folder / name}: missing; not a saved model folder "
                                 "(paramlens train-toy and paramlens bilinear write them)")
    return json.loads((folder / CONFIG).read_text()), load_file(folder / MODEL_FILE)
