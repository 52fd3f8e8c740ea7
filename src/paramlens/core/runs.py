"""Run folders, results that save and load, and a resumable training loop.

A run folder holds ``config.json`` (the pydantic config), ``result.json`` (numbers, strings, lists),
``tensors.safetensors`` (every tensor of the result), PNG figures, ``checkpoint.pt`` while a loop runs,
and ``index.html`` once a report is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file
from torch import Tensor

from paramlens.errors import ParamLensError

CONFIG, RESULT, TENSORS, CHECKPOINT = "config.json", "result.json", "tensors.safetensors", "checkpoint.pt"
R = TypeVar("R", bound="Result")
C = TypeVar("C", bound=BaseModel)


def new_run_dir(root: str | Path, name: str) -> Path:
    """A fresh folder ``root/name-YYYYmmdd-HHMMSS`` (suffixed if taken); never reuses an existing one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{name}-{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_config(folder: str | Path, config: BaseModel) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / CONFIG, lambda p: p.write_text(config.model_dump_json(indent=2)))


def load_config(folder: str | Path, cls: type[C]) -> C:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ParamLensError(f"{path}: missing; this folder is not a ParamLens run")
    try:
        return cls.model_validate_json(path.read_text())
    except ValidationError as e:
        raise ParamLensError(f"{path}: not a valid {cls.__name__} ({e.error_count()} problems: {e.errors()[0]['msg']})") from None


@dataclasses.dataclass
class Result:
    """Base of every method's result: a dataclass that saves to and loads from a run folder.

    Fields holding a tensor or a ``dict[str, Tensor]`` go to ``tensors.safetensors``; every other field
    must be JSON-serialisable and goes to ``result.json``. Subclasses override :meth:`summary` and
    :meth:`figures`.
    """

    kind: ClassVar[str] = "result"

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, Tensor] = {}
        plain: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                tensors[f.name] = value.detach().cpu().contiguous()
            elif isinstance(value, dict) and value and all(isinstance(v, Tensor) for v in value.values()):
                for key, t in value.items():
                    tensors[f"{f.name}/{key}"] = t.detach().cpu().contiguous()
            else:
                plain[f.name] = value
        _atomic_write(folder / RESULT, lambda p: p.write_text(json.dumps(plain, indent=2)))
        seen: set[int] = set()
        for key, t in tensors.items():  # safetensors refuses tensors that share memory (one mask for two targets)
            if t.untyped_storage().data_ptr() in seen:
                tensors[key] = t.clone()
            seen.add(tensors[key].untyped_storage().data_ptr())
        if tensors:
            _atomic_write(folder / TENSORS, lambda p: save_file(tensors, str(p)))
        return folder

    @classmethod
    def load(cls: type[R], folder: str | Path) -> R:
        folder = Path(folder)
        path = folder / RESULT
        if not path.is_file():
            raise ParamLensError(f"{path}: missing; run the analysis first or check the folder")
        plain = json.loads(path.read_text())
        if plain.pop("kind", None) != cls.kind:
            raise ParamLensError(f"{path}: holds a different result type; expected '{cls.kind}'")
        values: dict[str, Any] = dict(plain)
        if (folder / TENSORS).is_file():
            for key, t in load_file(folder / TENSORS).items():
                name, slash, sub = key.partition("/")
                if slash:  # a dict field (its key may be "", e.g. the root module's name)
                    values.setdefault(name, {})[sub] = t
                else:
                    values[name] = t
        return cls(**values)

    def summary(self) -> str:
        """A few lines for the terminal."""
        return self.kind

    def figures(self, folder: Path) -> list[tuple[str, str]]:
        """Write PNG figures into ``folder``; return ``[(file name, caption)]``."""
        return []


def _state_of(obj: Any) -> Any:
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def _restore(obj: Any, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


def fit_loop(
    n_steps: int,
    step: Callable[[int], dict[str, float]],
    stateful: dict[str, Any],
    *,
    folder: str | Path | None = None,
    resume: bool = False,
    checkpoint_every: int = 1000,
    log_every: int = 100,
    description: str = "training",
    progress: bool = True,
    write: bool = True,
) -> list[dict[str, float]]:
    """Run ``step(i)`` for ``i`` in ``range(n_steps)`` with a progress bar, checkpoints and resume.

    Args:
        step: one optimisation step; returns metrics (floats) for the log.
        stateful: everything whose state decides the rest of the run (model, optimizer, scheduler,
            ``torch.Generator``); saved in each checkpoint and restored on resume, so a resumed run ends
            bit-identical to an uninterrupted one with the same seed.
        folder: run folder for ``checkpoint.pt``; None disables checkpoints.
        resume: continue from ``folder/checkpoint.pt`` if it exists.
        write: write checkpoints (False for all but one process of a data-parallel run; all of them
            still read the checkpoint on resume).
        checkpoint_every: steps between checkpoints. Ctrl-C finishes the current step, writes a
            checkpoint and raises :class:`ParamLensError`; a second Ctrl-C stops at once.

    Returns:
        The metric log: one dict (with ``"step"`` and ``"seconds"`` of wall time since the start, resumed
        runs included) every ``log_every`` steps and at the last step.
    """
    ckpt = None
    if folder is not None:
        if write:
            Path(folder).mkdir(parents=True, exist_ok=True)
        ckpt = Path(folder) / CHECKPOINT
    start, history = 0, []
    if resume:
        if ckpt is None:
            raise ParamLensError("resume needs a run folder that holds a checkpoint")
        if ckpt.is_file():
            saved = torch.load(ckpt, map_location="cpu", weights_only=True)
            for name, obj in stateful.items():
                _restore(obj, saved["states"][name])
            start, history = saved["step"], json.loads(saved["history"])

    def save(done: int) -> None:
        if ckpt is not None and write:
            state = {"step": done, "history": json.dumps(history), "states": {k: _state_of(v) for k, v in stateful.items()}}
            _atomic_write(ckpt, lambda p: torch.save(state, p))

    interrupted = []

    def on_interrupt(signum: int, frame: Any) -> None:
        if interrupted:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        interrupted.append(signum)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_interrupt) if in_main else None
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    started = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    try:
        with Progress(*columns, disable=not progress, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task(description, total=n_steps, completed=start)
            for i in range(start, n_steps):
                metrics = step(i)
                if (i + 1) % log_every == 0 or i + 1 == n_steps:
                    elapsed = time.perf_counter() - started
                    history.append({"step": i + 1, "seconds": elapsed, **{k: float(v) for k, v in metrics.items()}})
                    shown = " ".join(f"{k}={v:.3g}" for k, v in metrics.items())
                    bar.update(task, description=f"{description} {shown}")
                bar.advance(task)
                if (i + 1) % checkpoint_every == 0 or interrupted or i + 1 == n_steps:
                    save(i + 1)
                if interrupted and i + 1 < n_steps:
                    where = f"checkpoint in {ckpt}, continue with --resume" if ckpt else "no run folder, nothing saved"
                    raise ParamLensError(f"interrupted after step {i + 1} of {n_steps}; {where}")
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return history
