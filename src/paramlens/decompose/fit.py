"""The training loop shared by SPD and APD: seeded batches, data parallelism, checks, evaluation.

Data parallel: when ``torch.distributed`` is initialised (``torchrun``), every process draws the same
global batch and noise (each method's ``draw_noise``) from the same seeded generator and keeps its own
slice; gradients are averaged with one all-reduce per step. The result equals single-process training on the same global batch (up to
float summation order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from pydantic import BaseModel
from torch import Tensor, nn

from paramlens.core.data import DataSource
from paramlens.core.runs import fit_loop, save_config
from paramlens.core.weights import Target, frozen, select
from paramlens.decompose.evaluate import evaluate
from paramlens.decompose.forward import capture
from paramlens.decompose.result import Decomposition
from paramlens.errors import ParamLensError
from paramlens.core.ground_truth import GroundTruth

DECOMPOSABLE = ("linear", "conv1d", "embedding")


class Method(Protocol):
    name: str
    config: type[BaseModel]

    def build(self, model: nn.Module, targets: Sequence[Target], cfg: Any) -> nn.Module: ...
    def losses(self, dec: nn.Module, model: nn.Module, x: Tensor, target_out: Tensor, inputs: dict[str, Tensor],
               cfg: Any, noise: Any) -> dict[str, Tensor]: ...
    def draw_noise(self, cfg: Any, targets: Sequence[Target], inputs: dict[str, Tensor], target_out: Tensor,
                   generator: torch.Generator, rows: slice) -> Any: ...
    def importance(self, dec: nn.Module, model: nn.Module, x: Tensor, inputs: dict[str, Tensor]) -> dict[str, Tensor]: ...
    def outputs_along(self, dec: nn.Module, target: Target, directions: Tensor) -> Tensor: ...
    def read_directions(self, dec: nn.Module, target: Target) -> Tensor: ...


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_targets(model: nn.Module, patterns: str | Sequence[str]) -> list[Target]:
    targets = select(model, patterns)
    for t in targets:
        if t.kind not in DECOMPOSABLE:
            raise ParamLensError(f"'{t.name}' is a {t.kind} layer; decomposition supports {', '.join(DECOMPOSABLE)}")
        w = t.matrix(model)
        if not torch.isfinite(w).all():
            raise ParamLensError(f"target '{t.name}' has non-finite weights; nothing to decompose")
    return targets


def lr_factor(cfg: BaseModel, step: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up over the first ``lr_warmup_frac`` of the steps, then
    constant, or cosine decay to 0 at the last step."""
    warm = int(cfg.lr_warmup_frac * cfg.steps)
    if step < warm:
        return (step + 1) / warm
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(cfg.steps - 1 - warm, 1)
    return math.cos(0.5 * math.pi * min(step - warm, span) / span)


def fit(
    method: Method,
    model: nn.Module,
    data: DataSource,
    patterns: str | Sequence[str],
    cfg: BaseModel,
    *,
    ground_truth: GroundTruth | None = None,
    folder: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    log_every: int = 100,
    eval_every: int | None = None,
    eval_size: int | None = None,
    checkpoint_every: int = 1000,
    on_start: Callable[[], None] | None = None,
) -> Decomposition:
    """Decompose ``model``'s targets with ``method``; see :func:`paramlens.decompose.decompose`."""
    targets = check_targets(model, patterns)
    rank, world = _world()
    if cfg.batch_size % world:
        raise ParamLensError(f"batch_size {cfg.batch_size} does not split over {world} processes")
    local = cfg.batch_size // world
    if eval_every:  # log on every evaluation step so its scores reach the history
        log_every = math.gcd(log_every, eval_every)
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        dec = method.build(model, targets, cfg)
        initial = {k: v.clone() for k, v in dec.state_dict().items()}
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    params = [p for p in dec.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, cfg))
    eval_gen = torch.Generator().manual_seed(cfg.seed + 2)
    if eval_size is None:  # 4096 feature vectors for toy models; one batch of token windows for LMs
        eval_size = 4096 if data.sample(1, torch.Generator()).is_floating_point() else cfg.batch_size
    eval_x = data.sample(eval_size, eval_gen)
    rows = slice(rank * local, (rank + 1) * local)

    def step(i: int) -> dict[str, float]:
        x = data.sample(cfg.batch_size, generator)[rows]
        target_out, inputs = capture(model, targets, x)
        noise = method.draw_noise(cfg, targets, inputs, target_out, generator, rows)
        losses = method.losses(dec, model, x, target_out, inputs, cfg, noise)
        for name, value in losses.items():
            if not torch.isfinite(value):
                raise ParamLensError(
                    f"loss '{name}' is {float(value.detach())} at step {i}; stopped (the run folder keeps its last "
                    "checkpoint, if one was written): lower the learning rate or check the model's activations"
                )
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        if world > 1:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= world
            for p, chunk in zip(params, flat.split([p.numel() for p in params])):
                p.grad = chunk.view_as(p)
        opt.step()
        sched.step()
        logged = {k: float(v.detach()) for k, v in losses.items()}
        if eval_every and (i + 1) % eval_every == 0:
            logged.update(evaluate(method, dec, model, targets, eval_x, cfg, ground_truth, generator=None).scalars)
        return logged

    def started() -> None:  # config.json is written once the run is known to be valid (a resume: its checkpoint fits)
        save_config(folder, cfg)
        if on_start is not None:
            on_start()

    with frozen(model):
        history = fit_loop(cfg.steps, step, {"decomposition": dec, "optimizer": opt, "scheduler": sched,
                                             "generator": generator},
                           folder=folder, resume=resume, checkpoint_every=checkpoint_every, write=rank == 0,
                           log_every=log_every, description=method.name, progress=progress and rank == 0,
                           on_start=started if folder is not None and rank == 0 else None)
        final = evaluate(method, dec, model, targets, eval_x, cfg, ground_truth, generator=torch.Generator().manual_seed(cfg.seed + 3))
        current = {k: v.clone() for k, v in dec.state_dict().items()}
        dec.load_state_dict(initial)
        chance = evaluate(method, dec, model, targets, eval_x, cfg, ground_truth, generator=torch.Generator().manual_seed(cfg.seed + 3))
        dec.load_state_dict(current)
    result = Decomposition.from_fit(method.name, cfg, targets, dec, history, final, chance)
    if folder is not None and rank == 0:
        result.save(folder)
    return result
