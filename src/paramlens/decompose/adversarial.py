"""Adversarial masks for SPD: the mask sources that make the masked model's output worst, by projected gradient
ascent.

A mask is ``m = g + (1 - g) s`` with ``s`` in ``[0, 1]`` (the stochastic loss draws ``s ~ U(0, 1)``). Here ``s``
climbs the output loss by ``steps`` signed-gradient steps of size ``step_size``, each clipped back to ``[0, 1]``,
with the importances and the subcomponents held fixed. Sources are either fresh (``(..., C)`` per input, started
from a uniform draw, forgotten after the batch) or persistent (``(C,)`` per target, shared by every input,
carried from step to step so the search continues where it stopped). Under ``torch.distributed`` the gradient of
persistent sources is averaged over the processes, so every process keeps the same sources.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor


def masks_from(importance: dict[str, Tensor], sources: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{target: g + (1 - g) s}`` for importances ``(..., C)`` and sources ``(..., C)`` or ``(C,)``."""
    return {n: g + (1 - g) * sources[n] for n, g in importance.items()}


def pgd_sources(loss_of: Callable[[dict[str, Tensor]], Tensor], importance: dict[str, Tensor],
                start: dict[str, Tensor], steps: int, step_size: float, shared: bool) -> dict[str, Tensor]:
    """The sources after ``steps`` of projected signed-gradient ascent on ``loss_of(masks)`` from ``start``.

    Args:
        loss_of: the output loss of the model run with ``{target: mask (..., C)}``.
        importance: ``{target: (..., C)}``, held fixed (detached).
        start: ``{target: (..., C) or (C,)}`` sources in ``[0, 1]``.
        shared: the sources are persistent (their gradient is averaged over processes under torch.distributed).
    Returns:
        ``{target: sources}`` in ``[0, 1]``, detached, shaped as ``start``.
    """
    g = {n: v.detach() for n, v in importance.items()}
    sources = {n: v.detach() for n, v in start.items()}
    for _ in range(steps):
        leaves = {n: v.clone().requires_grad_(True) for n, v in sources.items()}
        with torch.enable_grad():
            grads = torch.autograd.grad(loss_of(masks_from(g, leaves)), list(leaves.values()))
        if shared and dist.is_available() and dist.is_initialized():
            flat = torch.cat([gr.reshape(-1) for gr in grads])
            dist.all_reduce(flat)
            grads = flat.split([gr.numel() for gr in grads])
        sources = {n: (v + step_size * gr.view_as(v).sign()).clamp(0.0, 1.0)
                   for (n, v), gr in zip(sources.items(), grads)}
    return sources
