"""Information in the weights (Achille & Soatto 2018): how much noise each weight tolerates.

Every target weight gets multiplicative log-normal noise ``w = w_hat * exp(sqrt(alpha) xi - alpha / 2)``,
``xi ~ N(0, 1)`` (mean-preserving), with ``w_hat`` fixed and ``log alpha`` learned per weight to minimise
``task loss (one noise sample per step) + beta * (-1/2 sum log alpha)``. A weight that tolerates a lot of noise
(large ``alpha``) stores little about the data; ``I(w; D) ~ -1/2 sum log alpha`` (in nats, up to an additive
constant: differences between layers or models are meaningful, the absolute value is not). The noisy weights
enter the model through :func:`paramlens.core.weights.run_with`.

The curvature bound: with ``H`` the Hessian of the task loss in the weights, a Gaussian approximation gives
the optimum ``alpha_i = beta / (w_i^2 H_ii)``, i.e. ``I ~ 1/2 sum log(w_i^2 H_ii / beta)`` over weights with
``w_i^2 H_ii > beta``; ``diag H`` is estimated with Hutchinson's estimator ``E[v * (H v)]`` (Rademacher ``v``).
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
from paramlens.core.runs import LoopState, Result, descend, fit_loop
from paramlens.core.weights import Target, frozen, matrices, run_with
from paramlens.errors import ParamLensError


class InformationConfig(BaseModel):
    beta: float = Field(1e-3, gt=0, description="weight of the information term (per weight, in loss units)")
    steps: int = Field(1000, ge=1)
    lr: LearningRate = 0.05
    init_log_alpha: float = -8.0
    hutchinson_samples: int = Field(16, ge=1)
    seed: Seed = 0


@dataclass
class WeightInformation(Result):
    """Per target: ``info[name]`` = ``-1/2 sum log alpha`` (nats, up to a constant), ``per_weight[name]`` its mean
    over the target's weights, ``bound[name]`` the curvature bound; ``log_alpha``: the learned ``(d_out, d_in)``
    maps; ``loss_clean`` / ``loss_noisy``: task loss without / with the learned noise."""

    kind = "weight_information"
    info: dict[str, float]
    per_weight: dict[str, float]
    bound: dict[str, float]
    log_alpha: dict[str, Tensor]
    loss_clean: float
    loss_noisy: float
    beta: float

    @property
    def total(self) -> float:
        return float(sum(self.info.values()))

    def summary(self) -> str:
        lines = [f"information in the weights (beta {self.beta:g}); task loss clean {self.loss_clean:.4f}, "
                 f"with the learned noise {self.loss_noisy:.4f}"]
        for name in self.info:
            lines.append(f"  {name}: {self.info[name]:.1f} nats ({self.per_weight[name]:.3f} per weight); "
                         f"curvature bound {self.bound[name]:.1f}")
        lines.append(f"  total {self.total:.1f} nats")
        return "\n".join(lines)

    def table(self) -> list[dict]:
        return [{"layer": n, "nats": self.info[n], "nats per weight": self.per_weight[n], "curvature bound":
                 self.bound[n]} for n in self.info]

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        from paramlens.report import plots

        names = list(self.info)
        fig, (ax,) = plots.panels(1, max(4, 1.2 * len(names)), 3)
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [self.per_weight[n] for n in names], width=0.4, label="-1/2 log alpha per weight")
        ax.bar([i + 0.2 for i in x], [self.bound[n] / self.log_alpha[n].numel() for n in names], width=0.4,
               label="curvature bound per weight")
        ax.set_xticks(list(x), names, rotation=30, fontsize=7)
        ax.set_ylabel("nats per weight")
        ax.legend(fontsize=7)
        return [plots.save(fig, folder / f"{prefix}information.png", "Information per weight in each layer, learned and from curvature.")]


def _noisy(w: dict[str, Tensor], log_alpha: dict[str, Tensor], targets: list[Target]) -> dict[Target, Tensor]:
    out = {}
    for t in targets:
        alpha = log_alpha[t.name].exp()
        out[t] = w[t.name] * torch.exp(alpha.sqrt() * torch.randn_like(alpha) - alpha / 2)
    return out


def hessian_diagonal(loss_of: Callable[[dict[Target, Tensor]], Tensor], w: dict[str, Tensor], targets: list[Target],
                     samples: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Hutchinson estimate of ``diag H`` of ``loss_of(weights)`` at ``w``: mean of ``v * (H v)``. Attention runs
    on PyTorch's plain ("math") kernel here: the fused CPU kernels have no second derivative."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params = {t.name: w[t.name].clone().requires_grad_(True) for t in targets}
    with sdpa_kernel(SDPBackend.MATH):
        loss = loss_of({t: params[t.name] for t in targets})
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    est = {name: torch.zeros_like(p) for name, p in params.items()}
    for _ in range(samples):
        vs = [torch.randint(0, 2, p.shape, generator=generator).to(p.dtype) * 2 - 1 for p in params.values()]
        hv = torch.autograd.grad(grads, list(params.values()), grad_outputs=vs, retain_graph=True)
        for (name, e), v, h in zip(est.items(), vs, hv):
            e += v * h / samples
    return {k: v.detach() for k, v in est.items()}


def weight_information(model: nn.Module, targets: list[Target], task_loss: Callable[[Callable, int], Tensor],
                       cfg: InformationConfig | None = None, progress: bool = True, *,
                       folder: str | Path | None = None, resume: bool = False) -> WeightInformation:
    """Learn per-weight noise on ``targets``. ``task_loss(run, step)`` returns the task loss of one batch,
    calling ``run(*model_args, **model_kwargs)`` to run the model with the current weights; ``step = -1``
    asks for a fixed evaluation batch. ``folder``: where the loop keeps its checkpoint
    (:func:`paramlens.core.runs.fit_loop`; torch's global generator, which draws the noise, is saved with it);
    ``resume``: continue from it."""
    cfg = cfg or InformationConfig()
    if not targets:
        raise ParamLensError("no target matrices given")
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    with frozen(model):
        w = {name: m.detach() for name, m in matrices(model, targets).items()}
        log_alpha = {t.name: torch.full(t.shape, cfg.init_log_alpha, requires_grad=True) for t in targets}
        opt = torch.optim.Adam(log_alpha.values(), lr=cfg.lr)

        def step(i: int) -> dict[str, Tensor]:
            task = task_loss(partial(run_with, model, _noisy(w, log_alpha, targets)), i)
            info = sum(-0.5 * la.sum() for la in log_alpha.values())
            descend(opt, task + cfg.beta * info, lambda value: f"information loss is {value} at step {i}; lower the "
                    "learning rate (InformationConfig.lr) or --beta")
            return {"task": task.detach(), "information": info.detach()}

        fit_loop(cfg.steps, step, {"noise": LoopState(log_alpha=log_alpha), "optimizer": opt,
                                   "torch_rng": torch.default_generator},
                 folder=folder, resume=resume, description="learning weight noise", progress=progress)
        with torch.no_grad():
            clean = float(task_loss(partial(run_with, model, {t: w[t.name] for t in targets}), -1))
            noisy_loss = float(task_loss(partial(run_with, model, _noisy(w, log_alpha, targets)), -1))
        diag = hessian_diagonal(lambda ws: task_loss(partial(run_with, model, ws), -1), w, targets,
                                cfg.hutchinson_samples, g)
    info = {n: float(-0.5 * la.detach().sum()) for n, la in log_alpha.items()}
    per_weight = {n: info[n] / log_alpha[n].numel() for n in info}
    bound = {n: float(0.5 * torch.log((w[n] ** 2 * diag[n] / cfg.beta).clamp_min(1.0)).sum()) for n in info}
    return WeightInformation(info, per_weight, bound, {n: la.detach() for n, la in log_alpha.items()}, clean,
                             noisy_loss, cfg.beta)
