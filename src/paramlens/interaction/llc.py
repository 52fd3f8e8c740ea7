"""The local learning coefficient (LLC): one number for how degenerate a trained network is (Lau et al. 2023).

Near a minimum ``w*`` of the empirical loss ``L_n`` (a mean negative log-likelihood over ``n`` samples), the
tempered, localised posterior ``p(w) ~ exp(-n beta L_n(w) - gamma / 2 |w - w*|^2)`` is sampled with SGLD:

    w <- w - eps / 2 * (n beta grad L_batch(w) + gamma (w - w*)) + N(0, eps)

and ``LLC = n beta (E_p[L_n(w)] - L_n(w*))`` with ``n beta = n / log n``. A regular model with ``d`` effective
parameters has ``LLC = d / 2``; every direction the loss ignores (a degenerate parameter) lowers it. Only the
target matrices (:mod:`paramlens.core.weights`) move; everything else stays at its trained value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from pydantic import BaseModel, Field
from torch import Tensor, nn

from paramlens.core.fields import Seed
from paramlens.core.progress import track
from paramlens.core.weights import Target, frozen, matrices, run_with
from paramlens.errors import ParamLensError


class LLCConfig(BaseModel):
    steps: int = Field(1000, ge=1, description="SGLD steps per chain, burn-in included")
    burn_in: int = Field(200, ge=0)
    chains: int = Field(2, ge=1)
    eps: float = Field(1e-3, gt=0, description="SGLD step size")
    gamma: float = Field(100.0, ge=0, description="localisation strength")
    seed: Seed = 0


def local_learning_coefficient(model: nn.Module, targets: list[Target], loss_of: Callable[[Callable, int], Tensor],
                               n: int, cfg: LLCConfig | None = None, progress: bool = False) -> tuple[float, float]:
    """``(LLC, its standard error over chains)`` at the model's current weights. ``loss_of(run, step)``: the
    mean loss of one batch (``step >= 0``) or of all ``n`` samples (``step = -1``), running the model through
    ``run(*args, **kwargs)``; ``n``: the number of samples ``L_n`` averages over."""
    cfg = cfg or LLCConfig()
    if cfg.burn_in >= cfg.steps:
        raise ParamLensError(f"burn_in {cfg.burn_in} leaves no SGLD steps of {cfg.steps} to average")
    if n < 2:
        raise ParamLensError(f"n = {n}: the LLC needs at least two samples")
    nbeta = n / math.log(n)
    with frozen(model):
        w_star = {t: m.detach().clone() for t, m in zip(targets, matrices(model, targets).values())}
        with torch.no_grad():
            base = float(loss_of(partial(run_with, model, w_star), -1))
        g = torch.Generator().manual_seed(cfg.seed)
        estimates = [nbeta * (_chain_mean_loss(model, w_star, loss_of, nbeta, cfg, g, chain, progress) - base)
                     for chain in range(cfg.chains)]
    mean = sum(estimates) / len(estimates)
    spread = math.sqrt(sum((e - mean) ** 2 for e in estimates) / max(len(estimates) - 1, 1) / len(estimates))
    return mean, spread


def _chain_mean_loss(model: nn.Module, w_star: dict[Target, Tensor], loss_of: Callable[[Callable, int], Tensor],
                     nbeta: float, cfg: LLCConfig, g: torch.Generator, chain: int, progress: bool) -> float:
    """One SGLD chain from ``w_star``; the mean batch loss after burn-in."""
    w = {t: v.clone().requires_grad_(True) for t, v in w_star.items()}
    losses = []
    for step in track(range(cfg.steps), description=f"SGLD chain {chain + 1}/{cfg.chains}", disable=not progress):
        loss = loss_of(partial(run_with, model, w), step)
        if not torch.isfinite(loss):
            raise ParamLensError(f"SGLD loss is {loss.item()} at step {step} of chain {chain}; lower eps")
        grads = torch.autograd.grad(loss, list(w.values()))
        with torch.no_grad():
            for (t, v), grad in zip(w.items(), grads):
                drift = nbeta * grad + cfg.gamma * (v - w_star[t])
                v.add_(-cfg.eps / 2 * drift + math.sqrt(cfg.eps) * torch.randn(v.shape, generator=g))
        if step >= cfg.burn_in:
            losses.append(float(loss.detach()))
    return sum(losses) / len(losses)
