"""Seeded, resumable training shared by the model zoo, and saving models to run folders."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from paramlens.core.data import DataSource
from paramlens.core.fields import LearningRate, Seed
from paramlens.core.runs import CONFIG, atomic_write, fit_loop, save_config, state_mismatch
from paramlens.errors import ParamLensError

MODEL_FILE = "model.safetensors"


class TrainConfig(BaseModel):
    """Optimisation settings shared by the zoo (Adam with decoupled weight decay, cosine decay to zero)."""

    n_steps: int = Field(5000, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: LearningRate = 5e-3
    weight_decay: float = Field(0.0, ge=0)
    seed: Seed = 0


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
    on_start: Callable[[], None] | None = None,
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
        progress=progress, checkpoint_every=max(cfg.n_steps // 10, 100), on_start=on_start,
    )


def save_model(folder: str | Path, model: nn.Module, cfg: BaseModel) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (each renamed into place when complete)."""
    folder = Path(folder)
    save_config(folder, cfg)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / MODEL_FILE, lambda p: save_file(state, str(p)))
    return folder


def validated(cls: type[BaseModel], raw: dict, folder: Path) -> Any:
    """``raw`` (a saved config.json) as ``cls``; a config that does not validate is one error naming the file."""
    from pydantic import ValidationError

    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise ParamLensError(f"{folder / CONFIG}: not a valid {cls.__name__} ({'.'.join(map(str, first['loc']))}: "
                             f"{first['msg']})") from None


def read_saved(folder: str | Path, build: Callable[[dict], nn.Module] | None = None) -> tuple[dict, Any]:
    """``(config dict, state dict)`` of a model saved with :func:`save_model`.

    With ``build`` (config dict -> a freshly built model), ``(config dict, model)``: the saved tensors are checked
    against the model ``build`` returns and loaded into it. A missing or damaged file, or tensors that do not fit the
    model, are one error naming the file.
    """
    folder = Path(folder)
    for name in (CONFIG, MODEL_FILE):
        if not (folder / name).is_file():
            raise ParamLensError(f"{folder / name}: missing; not a saved model folder "
                                 "(paramlens train-toy and paramlens bilinear write them)")
    try:
        config = json.loads((folder / CONFIG).read_bytes())
    except (OSError, ValueError) as e:
        raise ParamLensError(f"{folder / CONFIG}: not a readable JSON file ({str(e)[:160]})") from None
    if not isinstance(config, dict):
        raise ParamLensError(f"{folder / CONFIG}: holds a JSON {type(config).__name__}, not a model config")
    try:
        state = load_file(folder / MODEL_FILE)
    except Exception as e:  # safetensors reports a damaged header or a short file in its own error type
        raise ParamLensError(f"{folder / MODEL_FILE}: unreadable safetensors file ({str(e)[:160]}); "
                             "it is damaged, save the model again") from None
    if build is None:
        return config, state
    model = build(config)
    problem = state_mismatch(model, state)
    if problem:
        raise ParamLensError(f"{folder / MODEL_FILE}: does not fit the {config.get('kind', 'saved')} model ({problem})")
    model.load_state_dict(state)
    return config, model
