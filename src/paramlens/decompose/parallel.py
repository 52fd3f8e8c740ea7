"""Sharding a decomposition over the processes of a ``torchrun`` (``parallel="fsdp"``, FSDP2).

Every submodule of the decomposition that holds parameters of its own (SPD: each target's subcomponents and gates;
APD: the factor dicts ``A`` and ``B``) becomes one FSDP2 unit, and :class:`ShardedLosses`, the root, holds the rest.
Each process keeps ``1 / world`` of every parameter (dimension 0), of its gradient and of its optimiser state.

The methods read their parameters through plain methods (``weight()``, ``inner()``), not ``forward``, so FSDP's
forward hooks would not gather them: the root's ``forward`` runs the method's losses after gathering every unit,
and FSDP's backward hooks then reduce-scatter the gradients (mean over the processes) and free the gathered copies.

Checkpoints hold full tensors, as an unsharded run's do (:class:`FullState`), so a run saved under one layout resumes
under the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from paramlens.core.runs import state_mismatch
from paramlens.errors import Interrupted


class ShardedLosses(nn.Module):
    """The root FSDP module around ``dec``: ``forward(*args)`` is ``losses(dec, *args)`` with every unit gathered.

    Args:
        losses: the method's losses, ``(dec, model, x, target_out, inputs, cfg, noise) -> {name: scalar}``.
        dec: the decomposition module, sharded in place (its parameters become ``DTensor`` shards).
        device: the device type of the process group's tensors (``"cpu"`` with gloo).
    """

    def __init__(self, losses: Callable[..., dict[str, Tensor]], dec: nn.Module, device: str):
        super().__init__()
        self.dec, self.losses = dec, losses
        mesh = init_device_mesh(device, (dist.get_world_size(),))
        owners = [m for m in dec.modules() if m is not dec and next(m.parameters(recurse=False), None) is not None]
        for unit in reversed(owners):  # innermost first, as fully_shard requires
            fully_shard(unit, mesh=mesh)
        fully_shard(self, mesh=mesh)
        self.units: list[FSDPModule] = [m for m in dec.modules() if isinstance(m, FSDPModule)]

    def forward(self, *args: Any) -> dict[str, Tensor]:
        for unit in self.units:
            unit.unshard()
        return self.losses(self.dec, *args)


def on_first(flag: bool) -> bool:
    """Process 0's ``flag``, on every process (collective)."""
    shared = [flag]
    dist.broadcast_object_list(shared, src=0)
    return bool(shared[0])


def gathered(state: Any, keep: bool = True) -> Any:
    """``state`` (a state dict, nested dicts and lists) with each ``DTensor`` replaced by the full tensor and every
    other tensor cloned. Collective: every process calls it at once on a state of the same structure; ``keep``
    False returns None (the process only takes part)."""
    if isinstance(state, DTensor):
        full = state.full_tensor()
        return full if keep else None
    if isinstance(state, Tensor):
        return state.detach().clone() if keep else None
    if isinstance(state, dict):
        return {k: gathered(v, keep) for k, v in state.items()}
    if isinstance(state, list):
        return [gathered(v, keep) for v in state]
    return state


def _shard_as(full: Any, like: Tensor) -> Any:
    """``full`` cut to this process's shard of ``like`` when ``like`` is a ``DTensor`` of the same global shape
    (no communication: every process holds ``full``); else ``full`` itself."""
    if isinstance(like, DTensor) and isinstance(full, Tensor) and full.shape == like.shape:
        return distribute_tensor(full.to(like.dtype), like.device_mesh, like.placements, src_data_rank=None)
    return full


def load_module(module: nn.Module, full: dict[str, Tensor]) -> None:
    """Load the full (unsharded) state dict ``full`` into the sharded ``module``; a mismatch raises ValueError."""
    problem = state_mismatch(module, full)
    if problem:
        raise ValueError(problem)
    current = module.state_dict()
    module.load_state_dict({k: _shard_as(v, current[k]) for k, v in full.items()})


def load_optimizer(opt: torch.optim.Optimizer, full: dict[str, Any]) -> None:
    """Load a full optimiser state dict (as an unsharded run's ``opt.state_dict()``) into ``opt``, whose parameters
    are sharded: each state tensor shaped like its parameter is cut to this process's shard."""
    params = [p for group in opt.param_groups for p in group["params"]]
    state = {i: {k: _shard_as(v, params[i]) for k, v in s.items()} for i, s in full["state"].items()}
    opt.load_state_dict({**full, "state": state})


class FullState:
    """A sharded module or optimiser as :func:`~paramlens.core.runs.fit_loop` saves and restores it: full tensors.

    Gathering is collective while only process 0 writes checkpoints, so the training step calls :meth:`take` on every
    process at each step that ends with a checkpoint; :meth:`state_dict` returns that copy, and refuses (an
    :class:`~paramlens.errors.Interrupted` naming the step) when asked at any other step, as after Ctrl-C.
    """

    def __init__(self, obj: nn.Module | torch.optim.Optimizer, keep: bool):
        self.obj, self.keep = obj, keep
        self.full: dict[str, Any] | None = None
        self.taken, self.now = -1, -1

    def take(self, step: int) -> None:
        """Gather the full state after ``step`` steps (every process; only a keeping one stores it)."""
        self.full, self.taken = gathered(self.obj.state_dict(), self.keep), step

    def state_dict(self) -> dict[str, Any]:
        if self.taken != self.now or self.full is None:
            raise Interrupted(f"stopped after step {self.now}; with parallel=fsdp a checkpoint is written only at "
                              "every checkpoint_every steps and at the end, so the run folder keeps its last one "
                              "(if any), which --resume continues from")
        return self.full

    def load_state_dict(self, full: dict[str, Any]) -> None:
        if isinstance(self.obj, nn.Module):
            load_module(self.obj, full)
        else:
            load_optimizer(self.obj, full)
