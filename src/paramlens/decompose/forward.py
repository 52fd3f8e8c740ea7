"""Forward passes shared by the decomposition methods: capture target inputs, compare outputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from paramlens.core.weights import LinearMap, MapSlots, Target, maps_replaced
from paramlens.errors import ParamLensError


def logits_of(out: Any) -> Tensor:
    """The tensor a model returns, or ``.logits`` of a transformers output."""
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    raise ParamLensError(f"the model returned {type(out).__name__}; decomposition needs a tensor or .logits")


@torch.no_grad()
def capture(model: nn.Module, targets: Sequence[Target], x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """``(output, {target name: the input the target module received})`` of one plain forward."""
    inputs: dict[str, Tensor] = {}
    handles = [
        model.get_submodule(t.name).register_forward_pre_hook(lambda m, args, _n=t.name: inputs.__setitem__(_n, args[0]))
        for t in targets
    ]
    try:
        out = logits_of(model(x))
    finally:
        for h in handles:
            h.remove()
    return out, inputs


def run_maps(model: nn.Module, maps: Mapping[Target, LinearMap], x: Tensor, slots: MapSlots | None = None) -> Tensor:
    """The model's output with the given targets' maps replaced (through ``slots``, installed :class:`MapSlots` of
    these targets on ``model``, when given: inside a compiled function)."""
    if slots is None:
        with maps_replaced(model, maps):
            return logits_of(model(x))
    with slots.filled(maps):
        return logits_of(model(x))


KL_CHUNK = 1 << 22  # logits per chunk of the KL: 16 MiB of float32 intermediates at a time


def _kl_sum(out: Tensor, target: Tensor) -> Tensor:
    """``sum over rows of KL(softmax(target) || softmax(out))`` for ``(rows, vocab)`` logits."""
    logp, logq = F.log_softmax(target.float(), dim=-1), F.log_softmax(out.float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum()


def output_loss(out: Tensor, target: Tensor, kind: str) -> Tensor:
    """``"mse"``: mean squared error; ``"kl"``: KL(target || out) of next-token distributions, mean per token.

    The KL runs over chunks of tokens, each recomputed in the backward pass (activation checkpointing), so a large
    vocabulary costs the logits themselves plus one chunk, not several full copies of them."""
    if kind == "mse":
        return (out - target).pow(2).mean()
    out, target = out.reshape(-1, out.shape[-1]), target.reshape(-1, target.shape[-1])
    rows = max(1, KL_CHUNK // out.shape[-1])
    if len(out) <= rows or not torch.is_grad_enabled():
        return _kl_sum(out, target) / len(out)
    total = sum(checkpoint(_kl_sum, o, t, use_reentrant=False) for o, t in zip(out.split(rows), target.split(rows)))
    return total / len(out)


def faithfulness(model: nn.Module, targets: Sequence[Target], weight: Callable[[Target], Tensor]) -> Tensor:
    """``sum_t ||W_t - weight(t)||^2 / N``: how far the decomposition's sums are from the target weights
    (``N``: number of target weights)."""
    sq = sum((t.matrix(model).detach() - weight(t)).pow(2).sum() for t in targets)
    return sq / sum(t.shape[0] * t.shape[1] for t in targets)


Coefficient = Annotated[float, Field(ge=0)]
"""The weight of one loss in the total: the config field ``<loss>_coeff`` (see :func:`with_total`)."""


def weighted_total(losses: dict[str, Tensor], coefficients: dict[str, float]) -> Tensor:
    """``sum_k coefficients[k] * losses[k]``."""
    return sum(c * losses[k] for k, c in coefficients.items())


def with_total(losses: dict[str, Tensor], cfg: Any) -> dict[str, Tensor]:
    """``losses`` with ``"total"`` added: ``sum_k cfg.<k>_coeff * losses[k]``, summed in the order of ``losses``."""
    losses["total"] = weighted_total(losses, {k: getattr(cfg, f"{k}_coeff") for k in losses})
    return losses
