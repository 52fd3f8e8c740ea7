"""Continuous sparsification: learn a binary mask over chosen weight matrices that keeps a task working.

One mask logit ``m`` per weight; the soft mask is ``sigmoid(T m)`` with the temperature ``T`` multiplied
by ``temp_growth`` every step, so masks harden toward 0/1. The model runs with every target replaced by
``W * mask`` through :func:`paramlens.core.weights.run_with` (the module is never edited). Loss: the task loss
plus ``lam`` times the mean soft mask over all masked weights. Training stops when fewer than
``undecided`` of the masks lie strictly between ``0.01`` and ``0.99`` (or after ``max_steps``), and the
final mask is ``m > 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from torch import Tensor, nn

from paramlens.core.fields import LearningRate, Seed
from paramlens.core.runs import LoopState, descend, fit_loop
from paramlens.core.weights import Target, frozen, matrices, run_with, select
from paramlens.errors import ParamLensError


class SparsifyConfig(BaseModel):
    lam: float = Field(1.0, ge=0, description="weight of the mean soft mask in the loss")
    init_logit: float = Field(1.0, description="starting mask logit (sigmoid(1) = 0.73: start near the full model)")
    lr: LearningRate = 0.05
    temp_growth: float = Field(1.001, ge=1.0)
    undecided: float = Field(0.01, gt=0, lt=1, description="stop when fewer masks than this share are undecided")
    max_steps: int = Field(5000, ge=1)
    check_every: int = Field(25, ge=1)
    seed: Seed = 0


@dataclass
class SparseMask:
    """``masks``: ``{target name: bool (d_out, d_in)}``; ``steps`` trained; ``undecided``: final share of soft
    masks strictly between 0.01 and 0.99; ``history``: ``[{"step", "task", "density", "undecided"}]``."""

    masks: dict[str, Tensor]
    steps: int
    undecided: float
    history: list[dict]

    @property
    def active(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))

    @property
    def total(self) -> int:
        return int(sum(m.numel() for m in self.masks.values()))

    def weights(self, model: nn.Module, keep: bool = True) -> dict[Target, Tensor]:
        """Replacement matrices of ``model``: ``W * mask`` (``keep``) or ``W * (1 - mask)`` (the model without
        the subnetwork)."""
        targets = select(model, list(self.masks))
        current = matrices(model, targets)
        for t in targets:
            if current[t.name].shape != self.masks[t.name].shape:
                raise ParamLensError(f"the mask for '{t.name}' is {tuple(self.masks[t.name].shape)} but the model's "
                                     f"matrix is {tuple(current[t.name].shape)}: the masks belong to another model")
        return {t: current[t.name] * (self.masks[t.name] if keep else ~self.masks[t.name]).to(current[t.name].dtype)
                for t in targets}


def sparsify(model: nn.Module, targets: list[Target], task_loss: Callable[[Callable[..., object], int], Tensor],
             cfg: SparsifyConfig | None = None, progress: bool = True, *, folder: str | Path | None = None,
             resume: bool = False) -> SparseMask:
    """Learn a mask over ``targets``. ``task_loss(run, step)`` computes the task loss for one batch, calling
    ``run(*model_args, **model_kwargs)`` to run the masked model. ``folder``: where the loop keeps its checkpoint
    (:func:`paramlens.core.runs.fit_loop`; torch's global generator is saved with it, so a ``task_loss`` drawing
    from it resumes exactly); ``resume``: continue from it."""
    cfg = cfg or SparsifyConfig()
    if not targets:
        raise ParamLensError("no target matrices to sparsify")
    torch.manual_seed(cfg.seed)
    weights = {t.name: w.detach() for t, w in zip(targets, matrices(model, targets).values())}
    logits = {t.name: torch.full(t.shape, cfg.init_logit, requires_grad=True) for t in targets}
    opt = torch.optim.Adam(logits.values(), lr=cfg.lr)
    total = sum(w.numel() for w in weights.values())
    state = LoopState(logits=logits, temp=1.0, undecided=1.0)

    def train(i: int) -> dict[str, float]:
        step = i + 1
        soft = {name: torch.sigmoid(state.temp * m) for name, m in logits.items()}
        replaced = {t: weights[t.name] * soft[t.name] for t in targets}
        task = task_loss(partial(run_with, model, replaced), step)
        density = sum(s.sum() for s in soft.values()) / total
        descend(opt, task + cfg.lam * density, lambda value: f"sparsification loss is {value} at step {step}; lower "
                "the learning rate (lr) or lam")
        state.temp *= cfg.temp_growth
        if step % cfg.check_every and step != cfg.max_steps:
            return {}
        with torch.no_grad():
            state.undecided = sum(float(((s > 0.01) & (s < 0.99)).sum()) for s in soft.values()) / total
        return {"task": float(task.detach()), "density": float(density.detach()), "undecided": state.undecided}

    with frozen(model):
        log = fit_loop(cfg.max_steps, train, {"masks": state, "optimizer": opt, "torch_rng": torch.default_generator},
                       folder=folder, resume=resume, log_every=cfg.check_every, description="continuous sparsification",
                       progress=progress, should_stop=lambda: state.undecided < cfg.undecided)
    history = [{k: entry[k] for k in ("step", "task", "density", "undecided")} for entry in log]
    masks = {name: (m.detach() > 0) for name, m in logits.items()}
    return SparseMask(masks, history[-1]["step"], state.undecided, history)
