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

import torch
from pydantic import BaseModel, Field
from torch import Tensor, nn

from paramlens.core.fields import LearningRate, Seed
from paramlens.core.progress import progress as progress_bar
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
             cfg: SparsifyConfig | None = None, progress: bool = True) -> SparseMask:
    """Learn a mask over ``targets``. ``task_loss(run, step)`` computes the task loss for one batch, calling
    ``run(*model_args, **model_kwargs)`` to run the masked model."""
    cfg = cfg or SparsifyConfig()
    if not targets:
        raise ParamLensError("no target matrices to sparsify")
    torch.manual_seed(cfg.seed)
    weights = {t.name: w.detach() for t, w in zip(targets, matrices(model, targets).values())}
    logits = {t.name: torch.full(t.shape, cfg.init_logit, requires_grad=True) for t in targets}
    opt = torch.optim.Adam(logits.values(), lr=cfg.lr)
    total = sum(w.numel() for w in weights.values())
    temp, history, undecided, step = 1.0, [], 1.0, 0
    with frozen(model), progress_bar(disable=not progress) as bar:
        task_bar = bar.add_task("continuous sparsification", total=cfg.max_steps)
        for step in range(1, cfg.max_steps + 1):
            soft = {name: torch.sigmoid(temp * m) for name, m in logits.items()}
            replaced = {t: weights[t.name] * soft[t.name] for t in targets}
            task = task_loss(partial(run_with, model, replaced), step)
            density = sum(s.sum() for s in soft.values()) / total
            loss = task + cfg.lam * density
            if not torch.isfinite(loss):
                raise ParamLensError(f"sparsification loss is {loss.item()} at step {step}; lower the learning rate "
                                     "(lr) or lam")
            opt.zero_grad()
            loss.backward()
            opt.step()
            temp *= cfg.temp_growth
            bar.advance(task_bar)
            if step % cfg.check_every == 0 or step == cfg.max_steps:
                with torch.no_grad():
                    undecided = sum(float(((s > 0.01) & (s < 0.99)).sum()) for s in soft.values()) / total
                history.append({"step": step, "task": float(task.detach()), "density": float(density.detach()),
                                "undecided": undecided})
                if undecided < cfg.undecided:
                    break
    masks = {name: (m.detach() > 0) for name, m in logits.items()}
    return SparseMask(masks, step, undecided, history)
