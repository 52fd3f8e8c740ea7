"""Load weights from disk, safely by default.

:func:`load` reads safetensors files, ``torch.save`` state dicts (with ``weights_only=True``), whole
modules saved with ``torch.save`` (only with ``trust_code=True``), Hugging Face model folders, GGUF files
(dequantized through transformers, cached) and numpy ``.npz`` archives of named arrays. Any other file, a
missing or truncated one, or non-finite weights raise one :class:`~paramlens.ParamLensError` that names
the file and the fix.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from paramlens.errors import ParamLensError

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
FORMATS = ".safetensors, .pt/.pth/.bin/.ckpt, .npz, .gguf, or a Hugging Face model folder (with config.json)"


@dataclass
class Loaded:
    """What :func:`load` found.

    Attributes:
        path: the file or folder read.
        format: ``"safetensors"``, ``"state_dict"``, ``"module"``, ``"hf"``, ``"gguf"`` or ``"npz"``.
        tensors: every named tensor, in file order (a module's ``state_dict`` for module formats).
        module: the runnable ``nn.Module`` for module formats (``module``, ``hf``, ``gguf``), else None.
    """

    path: Path
    format: str
    tensors: dict[str, Tensor]
    module: nn.Module | None = None

    @property
    def n_parameters(self) -> int:
        """Number of values, counting tensors shared between names (tied weights) once."""
        unique = {(t.data_ptr(), tuple(t.shape)): t.numel() for t in self.tensors.values()}
        return sum(unique.values())


def cache_dir() -> Path:
    """Where dequantized GGUF models are kept: ``$PARAMLENS_CACHE`` or ``~/.cache/paramlens``."""
    return Path(os.environ.get("PARAMLENS_CACHE", Path.home() / ".cache" / "paramlens"))


def load(path: str | Path, *, trust_code: bool = False, check_finite: bool = True) -> Loaded:
    """Read weights (and a runnable module where the format holds one) from ``path``.

    Args:
        path: a file or a Hugging Face model folder.
        trust_code: allow unpickling arbitrary code, needed for whole modules saved with ``torch.save``.
            Unpickling runs whatever code the file names: only pass True for files you trust.
        check_finite: raise if any floating tensor holds NaN or Inf.
    """
    path = Path(path)
    if not path.exists():
        raise ParamLensError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ParamLensError(f"{path}: a folder without config.json; ParamLens reads {FORMATS}")
        loaded = _load_hf(path, None)
    elif path.suffix == ".safetensors":
        loaded = Loaded(path, "safetensors", _read_safetensors(path))
    elif path.suffix in TORCH_SUFFIXES:
        loaded = _load_torch(path, trust_code)
    elif path.suffix == ".npz":
        loaded = Loaded(path, "npz", _read_npz(path))
    elif path.suffix == ".gguf":
        loaded = _load_gguf(path)
    else:
        raise ParamLensError(f"{path}: unknown format '{path.suffix}'; ParamLens reads {FORMATS}")
    if check_finite:
        check_all_finite(loaded.tensors, path)
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
    except (SafetensorError, OSError) as e:
        raise ParamLensError(f"{path}: unreadable safetensors file ({e}); it is truncated or corrupt") from None


def _read_npz(path: Path) -> dict[str, Tensor]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: torch.from_numpy(np.array(archive[name])) for name in archive.files}
    except ValueError as e:
        raise ParamLensError(
            f"{path}: .npz holds pickled objects ({e}); ParamLens reads only plain numeric arrays"
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ParamLensError(f"{path}: unreadable .npz ({e}); it is truncated or corrupt") from None


def _flatten_tensors(obj: Any, prefix: str = "") -> dict[str, Tensor]:
    """Nested dicts/lists of tensors (a state dict, or ``{"model": ..., "step": ...}``) -> dotted names."""
    out: dict[str, Tensor] = {}
    if isinstance(obj, Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_flatten_tensors(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


def _load_torch(path: Path, trust_code: bool) -> Loaded:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"code ({found.group(1)})" if found else "code"
        if not trust_code:
            raise CodeInPickleError(
                f"{path}: the checkpoint pickles {what}, and unpickling it would run that code. Read its "
                "tensors safely with paramlens.core.archive.read_archive (CLI: paramlens inspect), save a "
                "state_dict instead, or pass trust_code=True (CLI: --trust-code) if you trust its source"
            ) from None
        obj = _unpickle_trusted(path)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ParamLensError(f"{path}: unreadable torch checkpoint ({e}); it is truncated or corrupt") from None
    if isinstance(obj, nn.Module):
        return Loaded(path, "module", dict(obj.state_dict()), obj)
    tensors = _flatten_tensors(obj)
    if not tensors:
        raise ParamLensError(f"{path}: the checkpoint holds no tensors (found {type(obj).__name__})")
    return Loaded(path, "state_dict", tensors)


def _unpickle_trusted(path: Path) -> Any:
    """Full unpickling, reached only through ``trust_code=True``: runs the code the file names."""
    return torch.load(path, map_location="cpu", weights_only=False)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ParamLensError(
            "reading Hugging Face folders and GGUF files needs transformers: pip install 'paramlens[hf]'"
        ) from None
    return transformers


def _load_hf(folder: Path, gguf_file: str | None) -> Loaded:
    tf = _transformers()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        config = tf.AutoConfig.from_pretrained(folder, **kwargs)
        heads = ("LMHeadModel", "CausalLM")
        causal = gguf_file is not None or any(a.endswith(heads) for a in config.architectures or [])
        auto = tf.AutoModelForCausalLM if causal else tf.AutoModel
        model = auto.from_pretrained(folder, config=config, torch_dtype=torch.float32, **kwargs)
    except ImportError as e:
        raise ParamLensError(f"{folder}: a package is missing ({e}); pip install 'paramlens[hf]'") from None
    except (OSError, ValueError, KeyError) as e:
        raise ParamLensError(f"{folder}: transformers cannot read this model ({e})") from None
    model.eval()
    fmt = "gguf" if gguf_file else "hf"
    return Loaded(folder / gguf_file if gguf_file else folder, fmt, dict(model.state_dict()), model)


def load_tokenizer(path: str | Path) -> Any:
    """The transformers tokenizer stored with a Hugging Face folder or inside a GGUF file."""
    tf = _transformers()
    path = Path(path)
    try:
        if path.suffix == ".gguf":
            return tf.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        return tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ParamLensError(f"{path}: no tokenizer found ({e}); pass token ids instead of text") from None


def _load_gguf(path: Path) -> Loaded:
    """Dequantize a GGUF file once through transformers, then reuse the float32 copy from the cache."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir() / "gguf" / f"{path.stem}-{key}"
    if (cached / "config.json").is_file():
        loaded = _load_hf(cached, None)
    else:
        from safetensors.torch import save_model

        loaded = _load_hf(path.parent, path.name)
        tmp = cached.with_name(cached.name + ".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        config = loaded.module.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = [type(loaded.module).__name__]
        config.save_pretrained(tmp)
        save_model(loaded.module, str(tmp / "model.safetensors"))  # drops the duplicate of tied weights
        tmp.replace(cached)
    loaded.path, loaded.format = path, "gguf"
    return loaded


class CodeInPickleError(ParamLensError):
    """A checkpoint pickles code; it loads only with ``trust_code=True``."""


@dataclass
class Inspection:
    """What :func:`inspect` found in a file: its format, one row of statistics per tensor, and a note."""

    path: Path
    format: str
    rows: list[dict[str, Any]]
    n_parameters: int
    note: str = ""


def describe(tensors: dict[str, Tensor]) -> list[dict[str, Any]]:
    """One row per tensor: name, shape, dtype, numel, mean, std, min, max, non-finite count."""
    rows = []
    for name, t in tensors.items():
        row: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
                               "numel": t.numel()}
        if t.numel() and not t.is_complex() and t.dtype != torch.bool:
            f = t.detach().double()
            finite = f[torch.isfinite(f)]
            row["nonfinite"] = int(f.numel() - finite.numel())
            if finite.numel():
                row.update(mean=float(finite.mean()), std=float(finite.std()) if finite.numel() > 1 else 0.0,
                           min=float(finite.min()), max=float(finite.max()))
        rows.append(row)
    return rows


def inspect(path: str | Path, *, trust_code: bool = False) -> Inspection:
    """Statistics of every tensor in ``path``, non-finite values counted rather than refused.

    A torch checkpoint that pickles code is read with :func:`~paramlens.core.archive.read_archive`
    (no code runs) unless ``trust_code`` is set.
    """
    path = Path(path)
    try:
        loaded = load(path, trust_code=trust_code, check_finite=False)
    except CodeInPickleError:
        from paramlens.core.archive import read_archive

        loaded = Loaded(path, "torch archive", {t.name: t.value for t in read_archive(path)})
        note = "the file pickles code; its tensors were read without running it (trust_code=True loads it whole)"
        return Inspection(path, loaded.format, describe(loaded.tensors), loaded.n_parameters, note)
    return Inspection(loaded.path, loaded.format, describe(loaded.tensors), loaded.n_parameters)
