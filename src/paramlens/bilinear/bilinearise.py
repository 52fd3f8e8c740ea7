"""Turn gated MLPs (SwiGLU, GeGLU, ReGLU) into bilinear ones, measure what that changes, and fine-tune
with the gate's activation annealed toward the identity so the model learns to live without it.

Works on any module whose MLPs have ``gate_proj``, ``up_proj``, ``down_proj`` and ``act_fn`` (Llama,
Mistral, Qwen2, SmolLM2, the in-project tiny LM).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.core.data import TokenWindows
from paramlens.core.runs import fit_loop
from paramlens.errors import ParamLensError


def gated_mlps(model: nn.Module) -> dict[str, nn.Module]:
    """``{name: module}`` of every gated MLP in ``model``."""
    found = {n: m for n, m in model.named_modules()
             if all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn"))}
    if not found:
        raise ParamLensError(f"{type(model).__name__} has no gated MLP (gate_proj, up_proj, down_proj, act_fn)")
    return found


class Blend(nn.Module):
    """``(1 - alpha) act(x) + alpha x``: the gate activation on its way to the identity (``alpha`` in [0, 1])."""

    def __init__(self, act: nn.Module, alpha: float = 0.0):
        super().__init__()
        self.act, self.alpha = act, alpha

    def forward(self, x: Tensor) -> Tensor:
        if self.alpha >= 1.0:
            return x
        return (1.0 - self.alpha) * self.act(x) + self.alpha * x


def bilinearise(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every gate activation replaced by the identity (the weights are unchanged);
    a Hugging Face config is updated to ``hidden_act="linear"`` so the copy saves as a bilinear model."""
    return _identity_gates(copy.deepcopy(model))


def _identity_gates(model: nn.Module) -> nn.Module:
    """In place: every gate activation becomes the identity (and the HF config says so)."""
    for mlp in gated_mlps(model).values():
        mlp.act_fn = nn.Identity()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "hidden_act"):
        config.hidden_act = "linear"
    return model


@dataclass
class BilinearError:
    """How far a bilinearised model is from the original on the same token windows.

    Attributes:
        kl: mean KL(original || bilinear) of next-token distributions, nats per token.
        top1_agreement: share of positions whose most likely next token is the same.
        ce_original, ce_bilinear: next-token cross-entropy of each, nats per token.
        mlp_relative_error: ``{mlp name: ||mlp_bilinear(x) - mlp(x)|| / ||mlp(x)||}`` on the original model's
            own MLP inputs.
    """

    kl: float
    top1_agreement: float
    ce_original: float
    ce_bilinear: float
    mlp_relative_error: dict[str, float]


def _logits(model: nn.Module, tokens: Tensor) -> Tensor:
    out = model(input_ids=tokens) if hasattr(model, "config") else model(tokens)
    return (out.logits if hasattr(out, "logits") else out).float()


@torch.no_grad()
def compare(original: nn.Module, bilinear: nn.Module, tokens: Tensor) -> BilinearError:
    """Run both models on ``tokens`` ``(batch, seq)`` and measure the difference."""
    inputs: dict[str, Tensor] = {}
    mlps = gated_mlps(original)
    hooks = [m.register_forward_hook(lambda mod, args, out, n=n: inputs.__setitem__(n, args[0].detach()))
             for n, m in mlps.items()]
    try:
        lo = _logits(original, tokens)
    finally:
        for h in hooks:
            h.remove()
    lb = _logits(bilinear, tokens)
    logp_o, logp_b = F.log_softmax(lo, -1), F.log_softmax(lb, -1)
    kl = float((logp_o.exp() * (logp_o - logp_b)).sum(-1).mean())
    target = tokens[:, 1:].reshape(-1)
    ce = [float(F.cross_entropy(lp[:, :-1].reshape(-1, lp.shape[-1]), target)) for lp in (logp_o, logp_b)]
    twins = gated_mlps(bilinear)
    errors = {}
    for n, x in inputs.items():
        ref = mlps[n](x)
        errors[n] = float((twins[n](x) - ref).norm() / ref.norm().clamp_min(1e-12))
    return BilinearError(kl, float((lo.argmax(-1) == lb.argmax(-1)).float().mean()), ce[0], ce[1], errors)


def anneal_to_bilinear(model: nn.Module, data: TokenWindows, steps: int, lr: float = 1e-4, batch_size: int = 8,
                       anneal_fraction: float = 0.5, seed: int = 0, folder: str | Path | None = None,
                       progress: bool = True) -> tuple[nn.Module, list[dict[str, float]]]:
    """Fine-tune a copy of ``model`` on next-token prediction while every gate activation moves linearly
    from itself to the identity over the first ``anneal_fraction`` of ``steps``; the rest train the
    exactly bilinear model. Returns ``(bilinear model, loss log with "alpha")``."""
    out = copy.deepcopy(model)
    blends = []
    for mlp in gated_mlps(out).values():
        mlp.act_fn = Blend(mlp.act_fn)
        blends.append(mlp.act_fn)
    out.train()
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in out.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ramp = max(1, int(anneal_fraction * steps))

    def step(i: int) -> dict[str, float]:
        alpha = min(1.0, (i + 1) / ramp)
        for b in blends:
            b.alpha = alpha
        x = data.sample(batch_size, generator)
        logits = _logits(out, x)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "alpha": alpha}

    history = fit_loop(steps, step, {"model": out, "optimizer": opt, "generator": generator}, folder=folder,
                       description="anneal to bilinear", progress=progress)
    out.eval()
    return _identity_gates(out), history
