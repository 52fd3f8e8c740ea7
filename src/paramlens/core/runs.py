"""Run folders, results that save and load, and a resumable training loop.

A run folder holds ``config.json`` (the pydantic config), ``result.json`` (numbers, strings, lists),
``tensors.safetensors`` (every tensor of the result), PNG figures, ``checkpoint.pt`` while a loop runs,
``index.html`` once a report is written, and ``.lock`` (the pid of the process writing it).

Every file is written to a temporary file of its own in the same folder and renamed into place, so a reader sees
the old file or the new one, never a torn one, however many processes write. A damaged file is one
:class:`ParamLensError` line naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from paramlens.errors import Interrupted, ParamLensError

CONFIG, RESULT, TENSORS, CHECKPOINT = "config.json", "result.json", "tensors.safetensors", "checkpoint.pt"
LOCK = ".lock"
R = TypeVar("R", bound="Result")
C = TypeVar("C", bound=BaseModel)


def new_run_dir(root: str | Path, name: str) -> Path:
    """A fresh folder ``root/name-YYYYmmdd-HHMMSS`` (``-2``, ``-3`` ... if taken), created by this call.

    Safe with many processes starting at once: each candidate is created with an exclusive ``mkdir``, so a folder
    another process got is never returned and a lost race only moves on to the next suffix.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ParamLensError(f"{root}: not a folder; choose another output folder")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 100_000):
            path = root / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
            try:
                path.mkdir(exist_ok=False)
            except FileExistsError:
                continue
            return path
    except OSError as e:  # no permission, read-only file system, a path inside /proc ...
        raise ParamLensError(f"{root}: cannot create a run folder there ({e.strerror}); choose another output "
                             "folder (--out)") from None
    raise ParamLensError(f"{root}: every name {name}-{stamp}-N is taken; choose another output folder")


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, which races with other threads)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        return 0o022


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a new temporary file beside ``path``, flush it to disk, then rename it to ``path``.

    Each call has its own temporary name, so concurrent writers never share one; a failed write removes its
    temporary file and leaves ``path`` as it was.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
    try:
        tmp.open("xb").close()  # claims the name; "x" fails rather than reuse someone else's file
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # writers that make private temp files (safetensors) would leave 0600
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder/.lock`` (an exclusive ``flock``, holding this process's pid) while writing a run.

    A second holder, in another process or this one, is refused at once with one line naming the holder's pid. The
    operating system drops the lock when its holder exits, so a killed run never leaves its folder locked.
    """
    folder = Path(folder)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ParamLensError(f"{folder} is in use by another paramlens process (pid {_holder(fd)}); "
                                 "wait for it or choose another folder") from None
        pid = str(os.getpid()).encode()
        os.pwrite(fd, pid, 0)
        os.ftruncate(fd, len(pid))
        try:
            yield folder
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int) -> str:
    """The pid in a held lock file; its holder writes it just after locking, so an empty file is read again."""
    for _ in range(100):
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if pid:
            return pid
        time.sleep(0.002)
    return "unknown"


def _reason(e: BaseException) -> str:
    """The first line of an exception's message (shortened), or its type when it has none."""
    lines = str(e).strip().splitlines()
    return lines[0][:160] if lines else type(e).__name__


def _read_json(path: Path) -> Any:
    """The JSON value in ``path``; one error line naming it when it is unreadable or not JSON."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ParamLensError(f"{path}: not a readable JSON file ({_reason(e)})") from None


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """Every tensor in ``path``; one error line naming it when the file is damaged."""
    try:
        return load_file(path)
    except Exception as e:  # safetensors reports a damaged header, a short file or a bad dtype in its own error type
        why = _reason(e)
        raise ParamLensError(f"{path}: unreadable safetensors file ({why}); it is damaged, write it again") from None


def save_config(folder: str | Path, config: BaseModel) -> None:
    """Write ``config`` to ``folder/config.json``, creating the folder if needed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / CONFIG, lambda p: p.write_text(config.model_dump_json(indent=2)))


def load_config(folder: str | Path, cls: type[C]) -> C:
    """The config in ``folder/config.json`` as ``cls``; a missing, damaged or other kind of config is one line."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ParamLensError(f"{path}: missing; {folder} is not a {cls.__name__} run")
    try:
        return cls.model_validate_json(path.read_bytes())
    except OSError as e:
        raise ParamLensError(f"{path}: unreadable ({_reason(e)})") from None
    except ValidationError as e:
        invalid = e.errors()[0]["type"] == "json_invalid"
        what = "a readable JSON file" if invalid else f"a valid {cls.__name__}"
        why = e.errors()[0]["msg"] if invalid else _problems(e)
        raise ParamLensError(f"{path}: not {what} ({why}), so not a {cls.__name__} run") from None


def _problems(e: ValidationError) -> str:
    """``field: message`` of the first problem pydantic found, and how many more there are."""
    first = e.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" and {e.error_count() - 1} more" if e.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{first['msg']}{more}"


def _show(value: Any) -> str:
    """A config value as the user would type it (strings quoted)."""
    return repr(value) if isinstance(value, str) else str(value)


def resume_config(folder: str | Path, cls: type[C], given: dict[str, Any], override: Sequence[str] = ()) -> C:
    """The config saved in ``folder/config.json`` (validated as ``cls``), with the fields in ``given`` (what the user
    asked for this time) checked against it: a field whose value differs is an error naming every differing field, its
    saved and its new value, unless it is listed in ``override`` (then the new value is used). Fields of ``given`` that
    ``cls`` does not have are an error too. Nothing is written."""
    saved = load_config(folder, cls)
    fields = cls.model_fields
    unknown = [k for k in [*given, *override] if k not in fields]
    if unknown:
        raise ParamLensError(f"resume {folder}: {cls.__name__} has no setting {', '.join(dict.fromkeys(unknown))}; "
                             f"settings: {', '.join(fields)}")
    idle = [k for k in override if k not in given]
    if idle:
        raise ParamLensError(f"resume {folder}: --override {', '.join(idle)} gives no new value; pass it as well")
    try:
        asked = cls.model_validate({**saved.model_dump(), **given})
    except ValidationError as e:
        raise ParamLensError(f"resume {folder}: invalid settings ({_problems(e)})") from None
    differ = [k for k in given if getattr(asked, k) != getattr(saved, k) and k not in override]
    if differ:
        shown = ", ".join(f"{k} differs (saved {_show(getattr(saved, k))}, now {_show(getattr(asked, k))})"
                          for k in differ)
        raise ParamLensError(f"resume {folder}: {shown}; rerun without them to continue the saved run, "
                             f"or pass --override {','.join(differ)} to change them")
    return asked


def require_checkpoint(folder: str | Path) -> Path:
    """``folder/checkpoint.pt``, or one line saying why there is nothing to resume from."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ParamLensError(f"{folder}: no checkpoint to resume from (no such folder)")
    path = folder / CHECKPOINT
    if not path.is_file():
        raise ParamLensError(f"{folder}: no checkpoint to resume from ({CHECKPOINT} missing: the run stopped before "
                             "its first checkpoint or is not a training run); start it again without resuming")
    return path


@dataclasses.dataclass
class Result:
    """Base of every method's result: a dataclass that saves to and loads from a run folder.

    Fields holding a tensor or a ``dict[str, Tensor]`` go to ``tensors.safetensors``; every other field
    must be JSON-serialisable and goes to ``result.json``. Subclasses override :meth:`summary`, :meth:`table` and
    :meth:`figures`; :func:`paramlens.report.run.write_run` turns them into a run folder and its page.
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
        atomic_write(folder / RESULT, lambda p: p.write_text(json.dumps(plain, indent=2)))
        seen: set[int] = set()
        for key, t in tensors.items():  # safetensors refuses tensors that share memory (one mask for two targets)
            if t.untyped_storage().data_ptr() in seen:
                tensors[key] = t.clone()
            seen.add(tensors[key].untyped_storage().data_ptr())
        if tensors:
            atomic_write(folder / TENSORS, lambda p: save_file(tensors, str(p)))
        return folder

    @classmethod
    def load(cls: type[R], folder: str | Path) -> R:
        """The result saved in ``folder``; a missing, damaged or incomplete file is one line naming it."""
        folder = Path(folder)
        path = folder / RESULT
        if not path.is_file():
            raise ParamLensError(f"{path}: missing; run the analysis first or check the folder")
        plain = _read_json(path)
        if not isinstance(plain, dict) or plain.pop("kind", None) != cls.kind:
            raise ParamLensError(f"{path}: holds a different result type; expected '{cls.kind}'")
        tensors = _read_safetensors(folder / TENSORS) if (folder / TENSORS).is_file() else {}
        values: dict[str, Any] = dict(plain)
        for key, t in tensors.items():
            name, slash, sub = key.partition("/")
            if slash:  # a dict field (its key may be "", e.g. the root module's name)
                values.setdefault(name, {})[sub] = t
            else:
                values[name] = t
        cls._check_fields(folder, plain, tensors)
        return cls(**values)

    @classmethod
    def _check_fields(cls, folder: Path, plain: dict[str, Any], tensors: dict[str, Tensor]) -> None:
        """Refuse saved values that are not fields of ``cls``, and fields that were saved nowhere.

        Every JSON field is written to ``result.json`` whatever its value, so a field found in neither file is a
        tensor that ``tensors.safetensors`` lost.
        """
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        for path, names in ((folder / RESULT, set(plain)), (folder / TENSORS, {k.partition("/")[0] for k in tensors})):
            unknown = sorted(names - fields.keys())
            if unknown:
                raise ParamLensError(f"{path}: {', '.join(unknown)} not part of a '{cls.kind}' result; "
                                     "written by another version? Run the analysis again")
        saved = set(plain) | {k.partition("/")[0] for k in tensors}
        missing = [n for n, f in fields.items() if n not in saved and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            state = "lacks" if (folder / TENSORS).is_file() else "is missing, with"
            raise ParamLensError(f"{folder / TENSORS}: {state} the tensors {', '.join(missing)} of this "
                                 f"'{cls.kind}' result; run the analysis again")

    def summary(self) -> str:
        """A few lines for the terminal (and the report's text)."""
        return self.kind

    def table(self) -> list[dict[str, Any]]:
        """The main figures as rows (dicts with the same keys) for the report; empty when there is no table."""
        return []

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        """Write PNG figures into ``folder``, each file name starting with ``prefix``; return
        ``[(file name, caption)]``."""
        return []


def _state_of(obj: Any) -> Any:
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


class LoopState:
    """Values a training loop carries from step to step besides its modules, optimizers and generators: a
    temperature, counters, running sums, tensors it updates in place. Given to :func:`fit_loop` in ``stateful``,
    they are saved in every checkpoint and restored on resume; keyword arguments name them, attributes hold them.

    Tensors, and dicts of tensors, are restored in place (an optimizer holding them keeps them) and must keep
    their names and shapes; other values (numbers, strings, lists of them) are replaced by the saved ones.
    """

    def __init__(self, **values: Any) -> None:
        vars(self).update(values)

    def state_dict(self) -> dict[str, Any]:
        return {name: _detached(value) for name, value in vars(self).items()}

    def load_state_dict(self, state: Any) -> None:
        if not isinstance(state, dict) or state.keys() != vars(self).keys():
            names = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"holds {names}, needs {sorted(vars(self))}")
        for name, value in state.items():
            setattr(self, name, _fill(getattr(self, name), value, name))


def _detached(value: Any) -> Any:
    """``value`` with its tensors (also those in a dict) detached from autograd, for saving."""
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value


def _fill(current: Any, saved: Any, name: str) -> Any:
    """``current`` with ``saved`` copied into its tensors in place when it is a tensor or a dict of them; else
    ``saved``, when it is a value of the same kind."""
    if isinstance(current, Tensor):
        if not isinstance(saved, Tensor) or saved.shape != current.shape:
            raise ValueError(f"{name} is {_shape(saved)}, needs {_shape(current)}")
        with torch.no_grad():
            current.copy_(saved)
        return current
    if isinstance(current, dict) and any(isinstance(v, Tensor) for v in current.values()):
        if not isinstance(saved, dict) or saved.keys() != current.keys():
            raise ValueError(f"{name} does not hold the tensors {', '.join(map(str, current))}")
        for key in current:
            _fill(current[key], saved[key], f"{name}.{key}")
        return current
    numbers = (int, float)
    if type(saved) is not type(current) and not (isinstance(saved, numbers) and isinstance(current, numbers)):
        raise ValueError(f"{name} is a {type(saved).__name__}, needs a {type(current).__name__}")
    return saved


def _restore(obj: Any, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


def _shape(t: Any) -> str:
    """``3x4`` for a tensor (``scalar`` for 0-d), the type name for anything else."""
    if not isinstance(t, Tensor):
        return type(t).__name__
    return "x".join(map(str, t.shape)) or "scalar"


def state_mismatch(module: nn.Module, state: Any) -> str | None:
    """Why ``state`` does not fit ``module`` (missing, unexpected or misshapen tensors), or None when it fits."""
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not a state dict"
    need = module.state_dict()
    problems = []
    for what, names in (("missing", need.keys() - state.keys()), ("unexpected", state.keys() - need.keys())):
        if names:
            shown = sorted(map(str, names))
            problems.append(f"{what} {', '.join(shown[:5])}{' ...' if len(shown) > 5 else ''}")
    for name in (n for n in need if n in state):
        have, want = state[name], need[name]
        if isinstance(want, Tensor) and (not isinstance(have, Tensor) or have.shape != want.shape):
            problems.append(f"{name} is {_shape(state[name])}, needs {_shape(need[name])}")
    return "; ".join(problems[:6]) or None


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint in ``path`` (tensors and plain data only), with the keys :func:`fit_loop` writes. The file is
    first read by the bounded archive reader, so a damaged or hostile file (a zip bomb) is refused before torch
    unpacks it."""
    from paramlens.core.archive import open_archive

    try:
        open_archive(path)
    except ParamLensError as e:
        why = str(e).removeprefix(f"{path}: ")
        raise ParamLensError(f"{path}: unreadable checkpoint ({why}); the file is damaged, start the run again "
                             "without resuming") from None
    try:
        with warnings.catch_warnings():  # a damaged file may first warn about its pickle protocol
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file fails as a zip, a pickle or a short read
        why = "not a tensor-only torch checkpoint" if "Weights only load failed" in str(e) else _reason(e)
        raise ParamLensError(f"{path}: unreadable checkpoint ({why}); the file is damaged, start the run again "
                             "without resuming") from None
    if not isinstance(saved, dict) or not {"step", "history", "states"} <= saved.keys():
        raise ParamLensError(f"{path}: not a paramlens training checkpoint (needs step, history and states)")
    return saved


def _checked_progress(path: Path, saved: dict[str, Any], n_steps: int) -> tuple[int, list[dict[str, float]]]:
    """The step and metric log of a loaded checkpoint, checked for a run of ``n_steps``."""
    step = saved["step"]
    if not isinstance(step, int) or not 0 <= step <= n_steps:
        raise ParamLensError(f"{path}: saved at step {step}, outside this run's {n_steps} steps")
    try:
        history = json.loads(saved["history"])
    except (TypeError, ValueError):
        history = None
    if not isinstance(history, list) or not all(isinstance(h, dict) and "seconds" in h for h in history):
        raise ParamLensError(f"{path}: its metric log is damaged; start the run again without resuming")
    return step, history


def _restore_all(path: Path, states: Any, stateful: dict[str, Any]) -> None:
    """Load every saved state into ``stateful``, after checking the names and every module's tensors."""
    if not isinstance(states, dict) or states.keys() != stateful.keys():
        names = sorted(states) if isinstance(states, dict) else []
        raise ParamLensError(f"{path}: holds the states {names}, this run needs {sorted(stateful)}; "
                             "a checkpoint of another kind of run")
    for name, obj in stateful.items():
        problem = state_mismatch(obj, states[name]) if isinstance(obj, nn.Module) else None
        if problem:
            raise ParamLensError(f"{path}: state '{name}' does not fit this run ({problem})")
    for name, obj in stateful.items():
        try:
            _restore(obj, states[name])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise ParamLensError(f"{path}: state '{name}' does not fit this run ({_reason(e)})") from None


def _resume(folder: Path | None, stateful: dict[str, Any], n_steps: int) -> tuple[int, list[dict[str, float]], Any]:
    """Restore ``stateful`` from ``folder``'s checkpoint; the step, the metric log and the file's identity."""
    if folder is None:
        raise ParamLensError("resume needs a run folder that holds a checkpoint")
    path = require_checkpoint(folder)
    identity = _identity(path)
    saved = _load_checkpoint(path)
    start, history = _checked_progress(path, saved, n_steps)
    _restore_all(path, saved["states"], stateful)
    return start, history, identity


def _identity(path: Path) -> tuple[int, int, int]:
    """What changes when a file is replaced or rewritten."""
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


@contextlib.contextmanager
def _writing(folder: Path | None, write: bool, resumed_from: Any) -> Iterator[None]:
    """Hold the run folder's lock while this process writes it; check the checkpoint it resumed from is unchanged."""
    if folder is None or not write:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with run_lock(folder):
        if resumed_from is not None and _identity(folder / CHECKPOINT) != resumed_from:
            raise ParamLensError(f"{folder / CHECKPOINT}: replaced by another process while this run started; "
                                 "resume again")
        yield


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
    on_start: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    stop_when: Callable[[dict[str, float]], bool] | None = None,
) -> list[dict[str, float]]:
    """Run ``step(i)`` for ``i`` in ``range(n_steps)`` with a progress bar, checkpoints and resume.

    Args:
        step: one optimisation step; returns metrics (floats) for the log.
        stateful: everything whose state decides the rest of the run (model, optimizer, scheduler, generators, with
            ``torch.default_generator`` for torch's global one, and :class:`LoopState`); saved in each checkpoint and
            restored on resume, so a resumed run ends bit-identical to an uninterrupted one with the same seed.
        folder: run folder for ``checkpoint.pt``; None disables checkpoints. The writing process holds the
            folder's lock (:func:`run_lock`) for the whole run, so a second run on it is refused.
        resume: continue from ``folder/checkpoint.pt``, which must exist and fit ``stateful``; it is read and
            checked before anything is written.
        write: write checkpoints (False for all but one process of a data-parallel run; all of them
            still read the checkpoint on resume).
        checkpoint_every: steps between checkpoints. Ctrl-C finishes the current step, writes a
            checkpoint and raises :class:`~paramlens.errors.Interrupted`; a second Ctrl-C stops at once.
        on_start: called once the run is ready to step, holding the folder's lock (a resumed run: after its
            checkpoint was read and found to fit), e.g. to write the run's settings only once they are known to
            be valid for it.
        should_stop: asked before the first step and after each; True ends the run there, its last step logged and
            checkpointed (a resumed run that had stopped takes no step). It must read only state in ``stateful``.
        stop_when: asked of each log entry (a resumed run: of its last saved one first); True ends the run after
            that step, as ``should_stop`` does.

    Returns:
        The metric log: one dict (with ``"step"`` and ``"seconds"`` of wall time since the start, resumed
        runs included) every ``log_every`` steps and at the last step (the one it stopped after, if stopped early).
    """
    folder = Path(folder) if folder is not None else None
    start, history, resumed_from = _resume(folder, stateful, n_steps) if resume else (0, [], None)
    ckpt = folder / CHECKPOINT if folder is not None else None

    def save(done: int) -> None:
        if ckpt is not None and write:
            states = {k: _state_of(v) for k, v in stateful.items()}
            state = {"step": done, "history": json.dumps(history), "states": states}
            atomic_write(ckpt, lambda p: torch.save(state, p))

    where = f"checkpoint in {ckpt}, continue with --resume" if ckpt else "no run folder, nothing saved"
    with _writing(folder, write, resumed_from):
        if on_start is not None:
            on_start()
        _run_steps(n_steps, start, step, history, save, where, checkpoint_every=checkpoint_every, log_every=log_every,
                   description=description, progress=progress, should_stop=should_stop or (lambda: False),
                   stop_when=stop_when or (lambda entry: False))
    return history


LINE_EVERY_S = 60.0  # seconds between progress lines when stderr is not a terminal (a shorter loop prints none)


def _run_steps(n_steps: int, start: int, step: Callable[[int], dict[str, float]], history: list[dict[str, float]],
               save: Callable[[int], None], where: str, *, checkpoint_every: int, log_every: int, description: str,
               progress: bool, should_stop: Callable[[], bool],
               stop_when: Callable[[dict[str, float]], bool]) -> None:
    """The loop of :func:`fit_loop` from step ``start``: appends to ``history``, calls ``save(steps done)`` at each
    checkpoint, on Ctrl-C (``where`` tells the user what was kept) and when ``should_stop()`` ends the run."""
    if should_stop() or (history and stop_when(history[-1])):
        return
    interrupted = []

    def on_interrupt(signum: int, frame: Any) -> None:
        if interrupted:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        interrupted.append(signum)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_interrupt) if in_main else None
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    started = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    err = Console(stderr=True)
    lines = progress and not err.is_terminal  # a log file gets a plain line now and then instead of a bar
    last_line = time.perf_counter() - started  # the first line comes after a period, the last only after a first
    printed = False
    try:
        with Progress(*columns, disable=not progress, transient=True, console=err) as bar:
            task = bar.add_task(description, total=n_steps, completed=start)
            for i in range(start, n_steps):
                metrics = step(i)
                stop = should_stop()
                if (i + 1) % log_every == 0 or i + 1 == n_steps or stop:
                    elapsed = time.perf_counter() - started
                    history.append({"step": i + 1, "seconds": elapsed, **{k: float(v) for k, v in metrics.items()}})
                    shown = " ".join(f"{k}={v:.3g}" for k, v in metrics.items())
                    bar.update(task, description=f"{description} {shown}")
                    if lines and (elapsed - last_line >= LINE_EVERY_S or (printed and i + 1 == n_steps)):
                        print(f"{description} step {i + 1}/{n_steps} {elapsed:.0f}s {shown}", file=sys.stderr,
                              flush=True)
                        last_line, printed = elapsed, True
                    stop = stop or stop_when(history[-1])
                bar.advance(task)
                if (i + 1) % checkpoint_every == 0 or interrupted or i + 1 == n_steps or stop:
                    save(i + 1)
                if stop:
                    break
                if interrupted and i + 1 < n_steps:
                    raise Interrupted(f"interrupted after step {i + 1} of {n_steps}; {where}")
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def descend(optimizer: torch.optim.Optimizer, loss: Tensor, failed: Callable[[float], str]) -> None:
    """One step of ``optimizer`` down ``loss``; a loss that is not finite stops first with the error
    ``failed(its value)``."""
    if not torch.isfinite(loss):
        raise ParamLensError(failed(loss.item()))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
