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
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from torch import Tensor, nn

from paramlens.core.fields import Seed
from paramlens.core.runs import LoopState, fit_loop
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
                               n: int, cfg: LLCConfig | None = None, progress: bool = False, *,
                               folder: str | Path | None = None, resume: bool = False) -> tuple[float, float]:
    """``(LLC, its standard error over chains)`` at the model's current weights. ``loss_of(run, step)``: the
    mean loss of one batch (``step >= 0``) or of all ``n`` samples (``step = -1``), running the model through
    ``run(*args, **kwargs)``; ``n``: the number of samples ``L_n`` averages over. The chains run one after another
    as one loop of ``chains * steps`` steps; ``folder``: where it keeps its checkpoint
    (:func:`paramlens.core.runs.fit_loop`; torch's global generator is saved with it, so a ``loss_of`` drawing
    batches from it resumes exactly); ``resume``: continue from it."""
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
        chain_means = _chain_mean_losses(model, w_star, loss_of, nbeta, cfg, g, progress, folder, resume)
        estimates = [nbeta * (chain_mean - base) for chain_mean in chain_means]
    mean = sum(estimates) / len(estimates)
    spread = math.sqrt(sum((e - mean) ** 2 for e in estimates) / max(len(estimates) - 1, 1) / len(estimates))
    return mean, spread


def _chain_mean_losses(model: nn.Module, w_star: dict[Target, Tensor], loss_of: Callable[[Callable, int], Tensor],
                       nbeta: float, cfg: LLCConfig, g: torch.Generator, progress: bool, folder: str | Path | None,
                       resume: bool) -> list[float]:
    """``cfg.chains`` SGLD chains from ``w_star``, one after another; each chain's mean batch loss after burn-in."""
    w = {t: v.clone().requires_grad_(True) for t, v in w_star.items()}
    state = LoopState(w={t.name: v for t, v in w.items()}, losses=[], means=[])

    def sgld(i: int) -> dict[str, float | Tensor]:
        chain, step = divmod(i, cfg.steps)
        if step == 0:  # a new chain starts from w_star
            with torch.no_grad():
                for t, v in w.items():
                    v.copy_(w_star[t])
        loss = loss_of(partial(run_with, model, w), step)
        if not torch.isfinite(loss):
            raise ParamLensError(f"SGLD loss is {loss.item()} at step {step} of chain {chain}; lower eps")
        grads = torch.autograd.grad(loss, list(w.values()))
        with torch.no_grad():
            for (t, v), grad in zip(w.items(), grads):
                drift = nbeta * grad + cfg.gamma * (v - w_star[t])
                v.add_(-cfg.eps / 2 * drift + math.sqrt(cfg.eps) * torch.randn(v.shape, generator=g))
        if step >= cfg.burn_in:
            state.losses.append(float(loss.detach()))
        if step + 1 == cfg.steps:
            state.means.append(sum(state.losses) / len(state.losses))
            state.losses = []
        return {"chain": chain + 1, "loss": loss.detach()}

    fit_loop(cfg.chains * cfg.steps, sgld, {"chains": state, "generator": g, "torch_rng": torch.default_generator},
             folder=folder, resume=resume, description=f"SGLD, {cfg.chains} chains", progress=progress)
    return state.means
