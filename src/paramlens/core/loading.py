"""Read weights from one file or Hugging Face folder, safely and with bounded memory.

:func:`load` recognises a file by its content (the suffix is only a hint): safetensors, any ``torch.save`` file
(zip or legacy, read by :mod:`paramlens.core.archive` without running pickled code), numpy ``.npz`` / ``.npy``,
GGUF, and Hugging Face model folders (see :mod:`paramlens.core.hf`). TransformerLens ``HookedTransformer``
state dicts become runnable Hugging Face models when their config is found (:mod:`paramlens.core.lens`).
Whatever the format, the result is one :class:`Loaded`; a file that holds weights but no architecture gives
``module=None`` and a ``note`` saying why, which is fine for ``inspect`` and ``reverse`` and one clear error
(:meth:`Loaded.runnable`) for commands that run the model. Every bad file raises one
:class:`~paramlens.ParamLensError` that names the file and the problem.
"""

from __future__ import annotations

import json
import math
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from paramlens.errors import ParamLensError

FORMATS = ("safetensors, torch.save files (.pt/.pth/.bin/.ckpt, zip or legacy), .npz/.npy, .gguf, a Hugging Face "
           "model folder")
WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights")


@dataclass
class Loaded:
    """A model (or just its weights) as read from one source.

    Attributes:
        path: the file or folder read (None for a built-in model trained on the spot).
        format: how it was stored: ``"safetensors"``, ``"torch zip"``, ``"torch legacy"``, ``"npz"``, ``"npy"``,
            ``"gguf"``, ``"hf"``, ``"run folder"`` or ``"built-in"``.
        tensors: every named tensor (a module's ``state_dict`` when there is a module).
        module: the runnable ``nn.Module``, or None when the source holds weights but no architecture.
        kind: what it is: ``"weights"`` (no architecture), ``"causal_lm"``, ``"encoder"``, ``"module"`` (any other
            runnable module), or a zoo kind (``"tms"``, ``"modular_addition"``, ...).
        tokenizer: the Hugging Face tokenizer stored with a language model, else None.
        name: a short name for titles.
        note: what a reader should know (why there is no module, which wrapper was unpacked, ...).
    """

    path: Path | None
    format: str
    tensors: dict[str, Tensor]
    module: nn.Module | None = None
    kind: str = "weights"
    tokenizer: Any = None
    name: str = ""
    note: str = ""

    @property
    def n_parameters(self) -> int:
        """Number of values, counting tensors shared between names (tied weights) once."""
        unique = {(t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)): t.numel()
                  for t in self.tensors.values()}
        return sum(unique.values())

    @property
    def is_language_model(self) -> bool:
        return self.kind in ("causal_lm", "encoder")

    def runnable(self, command: str) -> nn.Module:
        """The module, or one error saying that ``command`` needs an architecture this source does not hold."""
        if self.module is not None:
            return self.module
        why = f" ({self.note})" if self.note else ""
        raise ParamLensError(
            f"{self.path or self.name}: holds weights only, no architecture{why}; {command} runs the model, so give "
            "a Hugging Face folder, a .gguf file, a ParamLens run folder or built-in name, or a TransformerLens "
            "state dict with its config (paramlens inspect and paramlens reverse read weights-only files)")


def file_mode(path: Path, missing: str = "no such file or folder; check the path",
              unreadable: str = "cannot be read") -> int:
    """``path``'s ``st_mode`` (links followed); a path that does not exist raises ``"<path>: <missing>"``, one that
    cannot be examined ``"<path>: <unreadable> (<reason>)"``."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise ParamLensError(f"{path}: {missing}") from None
    except OSError as e:
        raise ParamLensError(f"{path}: {unreadable} ({e.strerror})") from None


def regular_file(path: str | Path) -> Path:
    """``path`` as a Path after checking that it is an existing regular file (FIFOs and devices would hang)."""
    path = Path(path)
    mode = file_mode(path)
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise ParamLensError(f"{path}: {what}; ParamLens reads {FORMATS}")
    return path


def sniff(path: Path) -> str:
    """The format of a regular file from its first bytes: ``"safetensors"``, ``"torch"``, ``"npz"``, ``"npy"``,
    ``"gguf"``; anything else raises naming what the file looks like."""
    from paramlens.core.archive import is_torch_file

    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise ParamLensError(f"{path}: cannot be read ({e.strerror or e})") from None
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:2] == b"PK":
        return "torch" if is_torch_file(path) else _zip_kind(path)
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80" and is_torch_file(path):
        return "torch"
    raise ParamLensError(f"{path}: {_looks_like(head)}, not a weights file; ParamLens reads {FORMATS}")


def _zip_kind(path: Path) -> str:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except Exception as e:  # noqa: BLE001 - zipfile raises many kinds for a damaged directory (NotImplementedError...)
        raise ParamLensError(f"{path}: a damaged zip file ({_first_line(e)})") from None
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    raise ParamLensError(f"{path}: a zip file that is neither a torch checkpoint (no data.pkl) nor an .npz archive")


def _looks_like(head: bytes) -> str:
    if not head:
        return "an empty file"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return f"an unknown binary file (starts {head[:8].hex()})"


def load(path: str | Path, *, trust_code: bool = False, check_finite: bool = True) -> Loaded:
    """Read the weights (and a runnable module where the source holds one) of a file or Hugging Face folder.

    Args:
        path: a weights file of any format in :data:`FORMATS`, or a Hugging Face model folder.
        trust_code: allow unpickling code: whole modules saved with ``torch.save`` become runnable, and model
            folders may run their own modelling code. Unpickling runs whatever code the file names: only pass
            True for files you trust. Without it no code from the file ever runs.
        check_finite: raise if a floating tensor holds NaN or Inf (set False to look at such files).
    """
    path = Path(path)
    if path.is_dir():
        from paramlens.core.hf import load_hf_folder

        loaded = load_hf_folder(path, trust_code)
    else:
        fmt = sniff(regular_file(path))
        if fmt == "gguf":
            from paramlens.core.hf import load_gguf

            loaded = load_gguf(path)
        elif fmt == "torch":
            loaded, root = _load_torch(path, trust_code)
            loaded = _maybe_lens(loaded, root)
        else:
            loaded = _maybe_lens(Loaded(path, fmt, read_tensors(path, fmt)), None)
    loaded = _widened(loaded)
    if check_finite:
        check_all_finite(loaded.tensors, loaded.path or path)
    loaded.name = loaded.name or path.name
    return loaded


def read_tensors(path: Path, fmt: str) -> dict[str, Tensor]:
    """Every tensor of a safetensors, ``.npz`` or ``.npy`` file."""
    if fmt == "safetensors":
        return _read_safetensors(path)
    from paramlens.core.arrays import read_npy, read_npz

    return read_npz(path) if fmt == "npz" else {path.stem: read_npy(path)}


_WIDER = {**{getattr(torch, n): torch.float32 for n in dir(torch) if n.startswith("float8_")},
          torch.uint16: torch.int64, torch.uint32: torch.int64, torch.uint64: torch.float64}


_READABLE = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
             torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool, *_WIDER}


def widen(t: Tensor, name: str, source: str | Path | None) -> Tensor:
    """``t`` in a dtype every analysis supports: float8 -> float32 and uint16/32 -> int64 (exact); uint64 -> float64
    (exact up to 2^53); torch implements few operations (min, isfinite, ...) on the narrow types. Packed 4-bit, bit
    and quantized types are one error naming ``source`` and the tensor ``name``."""
    if t.dtype not in _READABLE:
        raise ParamLensError(f"{source}: tensor '{name}' is of dtype {str(t.dtype).removeprefix('torch.')}, which "
                             "ParamLens cannot read (packed 4-bit, bit or quantized types); convert it to a float type")
    return t.to(_WIDER[t.dtype]) if t.dtype in _WIDER else t


def _widened(loaded: Loaded) -> Loaded:
    source = loaded.path or loaded.name
    narrow = sorted({str(t.dtype).removeprefix("torch.") for t in loaded.tensors.values() if t.dtype in _WIDER})
    loaded.tensors = {k: widen(v, k, source) for k, v in loaded.tensors.items()}
    if narrow:
        said = f"{', '.join(narrow)} tensors widened to float32/int64/float64 (same values)"
        loaded.note = f"{loaded.note}; {said}" if loaded.note else said
    return loaded


def check_all_finite(tensors: dict[str, Tensor], source: str | Path) -> None:
    """Raise naming the first tensor of ``tensors`` that holds NaN or Inf."""
    for name, t in tensors.items():
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise ParamLensError(
                    f"{source}: tensor '{name}' {tuple(t.shape)} has {bad} non-finite values (NaN/Inf); "
                    "the checkpoint is corrupt or its training diverged. Load it with check_finite=False, or "
                    "look at it with paramlens inspect"
                )


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, NotImplementedError) as e:
        raise ParamLensError(f"{path}: unreadable safetensors file ({_first_line(e)}); it is truncated, corrupt "
                             "or of a dtype torch does not read") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _load_torch(path: Path, trust_code: bool) -> tuple[Loaded, Any]:
    """The file's tensors and its unpickled object graph (code stays inert unless ``trust_code``)."""
    from paramlens.core.archive import open_archive

    archive = open_archive(path)
    if archive.pickles_code and trust_code:
        return _unpickle_trusted(path, archive.format), None
    tensors, note = _unique(archive.tensors)
    if archive.pickles_code:
        shown = ", ".join(archive.globals[:3]) + (" ..." if len(archive.globals) > 3 else "")
        what = "a whole pickled nn.Module" if archive.modules else "code"
        note = _joined(note, f"the file pickles {what} ({shown}); its tensors were read without running it, and "
                             "--trust-code (trust_code=True) would run it")
    else:
        tensors, unwrapped = _unwrap(archive.root, tensors)
        note = _joined(note, unwrapped)
    if not tensors:
        raise ParamLensError(f"{path}: the checkpoint holds no tensors ParamLens reads (found "
                             f"{type(archive.root).__name__}; numpy arrays and quantized tensors inside torch files "
                             "are not read)")
    return Loaded(path, archive.format, tensors, note=note), archive.root


def _joined(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _unique(found: list) -> tuple[dict[str, Tensor], str]:
    """``{name: tensor}`` of archive tensors; a name met twice (``{"a": {"b": x}, "a.b": y}`` flatten alike) gets
    ``#2``, ``#3`` ... so nothing is dropped, and an unnamed tensor (``torch.save(tensor)``) is called ``tensor``."""
    tensors: dict[str, Tensor] = {}
    clashes = 0
    for t in found:
        name, n = t.name or "tensor", 1
        while name in tensors:
            n += 1
            name = f"{t.name or 'tensor'}#{n}"
        clashes += n > 1
        tensors[name] = t.value
    said = f"{clashes} tensor names occur twice in the file; the later ones end in #2, #3, ..." if clashes else ""
    return tensors, said


def _unwrap(root: Any, tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """A training checkpoint ``{"model": state_dict, "optimizer": ..., "epoch": 3}`` -> the state dict's tensors
    (without the wrapper's prefix); a data-parallel ``module.`` prefix on every name is dropped too."""
    note = ""
    if isinstance(root, dict):
        for key in WRAPPERS:
            inner = root.get(key)
            if isinstance(inner, dict) and any(isinstance(v, Tensor) for v in inner.values()):
                prefix = f"{key}."
                tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                note = f"read the state dict stored under '{key}'"
                break
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
        note = _joined(note, "dropped the 'module.' prefix of a data-parallel model")
    return tensors, note


def _unpickle_trusted(path: Path, fmt: str) -> Loaded:
    """Full unpickling, reached only through ``trust_code=True``: runs the code the file names."""
    try:
        with warnings.catch_warnings():  # the user's code may warn (TorchScript, old classes): stderr stays one line
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=False)  # trust_code path
    except Exception as e:  # the user's own code ran and failed
        raise ParamLensError(f"{path}: unpickling with trust_code failed ({type(e).__name__}: "
                             f"{_first_line(e)})") from None
    if isinstance(obj, nn.Module):
        from paramlens.core.hf import model_kind

        is_transformers = hasattr(obj, "config") and hasattr(obj, "get_input_embeddings")
        kind = model_kind(obj) if is_transformers else "module"
        return Loaded(path, fmt, dict(obj.eval().state_dict()), obj, kind=kind)
    from paramlens.core.archive import tensors_in

    return Loaded(path, fmt, {t.name: t.value for t in tensors_in(obj)})


def _maybe_lens(loaded: Loaded, root: Any) -> Loaded:
    """A TransformerLens state dict becomes a runnable Hugging Face model when its config is found (``root``: the
    checkpoint's object graph, which may hold the config)."""
    from paramlens.core.lens import is_lens_state_dict, lens_to_hf

    if loaded.module is not None or not is_lens_state_dict(loaded.tensors):
        return loaded
    config, where = _lens_config(loaded.path, root)
    try:
        module = lens_to_hf(loaded.tensors, config, str(loaded.path))
    except ParamLensError as e:
        loaded.note = f"a TransformerLens state dict that cannot run as it is: {e}"
        loaded.tensors = {k: v for k, v in loaded.tensors.items() if not _lens_buffer(k)}
        return loaded
    return Loaded(loaded.path, loaded.format, dict(module.state_dict()), module, kind="causal_lm",
                  note=f"a TransformerLens model (config from {where}), run as {type(module).__name__}")


def _lens_buffer(name: str) -> bool:
    """TransformerLens attention buffers: ``IGNORE`` holds -inf by design, ``mask`` is the causal mask."""
    return re.search(r"\.attn\.(IGNORE|mask)$|rotary_(sin|cos)$", name) is not None


def _lens_config(path: Path, root: Any) -> tuple[dict | None, str]:
    """The HookedTransformer config stored with the weights: under ``config`` / ``cfg`` in the checkpoint, or in
    ``<stem>.config.json`` / ``config.json`` beside the file."""
    from paramlens.core.archive import plain

    if isinstance(root, dict):
        for key in ("config", "cfg"):
            if isinstance(root.get(key), dict):
                return plain(root[key]), f"'{key}' in the checkpoint"
    for candidate in (path.with_name(path.stem + ".config.json"), path.with_name("config.json")):
        if candidate.is_file():
            try:
                config = json.loads(regular_file(candidate).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ParamLensError(f"{candidate}: not a JSON config ({e})") from None
            if not isinstance(config, dict):
                raise ParamLensError(f"{candidate}: holds a JSON {type(config).__name__}, not a model config")
            return config, candidate.name
    return None, ""


@dataclass
class Inspection:
    """What :func:`inspect_loaded` found: where from (a path, or a built-in's name), the format, one row of
    statistics per tensor, and a note."""

    source: str
    format: str
    rows: list[dict[str, Any]]
    n_parameters: int
    note: str = ""


STATS_CHUNK = 1 << 22  # values per chunk: statistics cost a bounded float64 copy, whatever the tensor's size


def _finite_stats(t: Tensor) -> dict[str, Any]:
    """Count of non-finite values, and mean, std, min, max over the finite ones, in chunks (Chan et al.'s merge of
    per-chunk means and squared deviations keeps the std exact to rounding)."""
    n, mean, m2, lo, hi, bad = 0, 0.0, 0.0, math.inf, -math.inf, 0
    for chunk in t.detach().reshape(-1).split(STATS_CHUNK):
        f = chunk.double()
        f = f[torch.isfinite(f)]
        bad += chunk.numel() - f.numel()
        if not f.numel():
            continue
        k, chunk_mean = f.numel(), float(f.mean())
        chunk_m2 = float(((f - chunk_mean) ** 2).sum())
        delta, total = chunk_mean - mean, n + k
        mean, m2, n = mean + delta * k / total, m2 + chunk_m2 + delta**2 * n * k / total, total
        lo, hi = min(lo, float(f.min())), max(hi, float(f.max()))
    row: dict[str, Any] = {"nonfinite": bad}
    if n:
        row.update(mean=mean, std=math.sqrt(m2 / (n - 1)) if n > 1 else 0.0, min=lo, max=hi)
    return row


def describe(tensors: dict[str, Tensor]) -> list[dict[str, Any]]:
    """One row per tensor: name, shape, dtype, numel, and over the finite values mean, std, min, max; with the
    count of non-finite values."""
    rows = []
    for name, t in tensors.items():
        row: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
                               "numel": t.numel()}
        if t.numel() and not t.is_complex() and t.dtype != torch.bool:
            row.update(_finite_stats(t))
        rows.append(row)
    return rows


def inspect_loaded(loaded: Loaded) -> Inspection:
    """Statistics of every tensor of a resolved model (non-finite values counted, never refused)."""
    source = str(loaded.path) if loaded.path is not None else loaded.name
    return Inspection(source, loaded.format, describe(loaded.tensors), loaded.n_parameters, loaded.note)
