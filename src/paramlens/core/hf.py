"""Hugging Face model folders and GGUF files as runnable models, with their tokenizers; nothing is downloaded.

Every weight file of a folder is checked by ParamLens's own readers before transformers opens it (safetensors
headers, shards named by an index, ``pytorch_model.bin`` read without running pickled code), so a damaged or
hostile file is one clear error. GGUF files are validated (:mod:`paramlens.core.gguf`), dequantized once
through transformers and cached as a Hugging Face folder (tokenizer included) under :func:`cache_dir`; a lock
makes concurrent processes fill the cache once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from paramlens.core.loading import Loaded, regular_file
from paramlens.errors import ParamLensError

HEADS = ("LMHeadModel", "CausalLM")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")


def cache_dir() -> Path:
    """Where dequantized GGUF models are kept: ``$PARAMLENS_CACHE`` (when set and not empty) or
    ``~/.cache/paramlens``."""
    return Path(os.environ.get("PARAMLENS_CACHE") or Path.home() / ".cache" / "paramlens")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ParamLensError(
            "reading Hugging Face folders and GGUF files needs transformers: pip install 'paramlens[hf]'"
        ) from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # ParamLens shows its own progress; stderr stays one line per error
    return transformers


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.exists():
        raise ParamLensError(f"{folder}: a folder without config.json, so neither a Hugging Face model nor a "
                             "ParamLens run folder")
    try:
        config = json.loads(regular_file(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ParamLensError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ParamLensError(f"{path}: not a Hugging Face config (no model_type)")
    return config


def _weight_files(folder: Path) -> list[Path]:
    """The weight files a folder's model will read: single files or the shards an index names."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).exists():
            try:
                shards = sorted(set(json.loads(regular_file(folder / index).read_text())["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
                raise ParamLensError(f"{folder / index}: not a valid shard index ({type(e).__name__}: {e})") from None
            outside = [s for s in shards if not isinstance(s, str) or Path(s).name != s]
            if outside:
                raise ParamLensError(f"{folder / index}: names a shard outside the folder ({outside[0]!r}); shards are "
                                     "plain file names beside the index")
            return [folder / s for s in shards]
    found = [folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).exists()]
    if not found:
        raise ParamLensError(f"{folder}: no model.safetensors, pytorch_model.bin or shard index; the folder holds "
                             "a config but no weights")
    return found[:1]


def _check_weight_file(path: Path, trust_code: bool) -> None:
    """Read ``path`` with ParamLens's own readers first: damaged or code-pickling files fail here, clearly."""
    from paramlens.core.archive import open_archive
    from paramlens.core.loading import sniff

    fmt = sniff(regular_file(path))
    if fmt == "safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                list(f.keys())
        except (SafetensorError, OSError, ValueError) as e:
            raise ParamLensError(f"{path}: unreadable safetensors file ({e}); it is truncated or corrupt") from None
    elif fmt == "torch":
        archive = open_archive(path)
        if archive.pickles_code and not trust_code:
            raise ParamLensError(f"{path}: the weights file pickles code ({', '.join(archive.globals[:3])}); "
                                 "loading the model would run it. Convert it to safetensors, or pass --trust-code "
                                 "if you trust its source (paramlens inspect reads its tensors safely)")
    else:
        raise ParamLensError(f"{path}: a {fmt} file where transformers expects safetensors or a torch file")


def model_kind(model: Any) -> str:
    """``"causal_lm"`` for a transformers model with an LM head, ``"encoder"`` for other transformers models."""
    return "causal_lm" if any(type(model).__name__.endswith(h) for h in HEADS) else "encoder"


def load_hf_folder(folder: Path, trust_code: bool = False) -> Loaded:
    """A Hugging Face model folder as a runnable float32 model in eval mode, with its tokenizer when it has one."""
    config = _config(folder)
    if config.get("auto_map") and not trust_code:
        raise ParamLensError(f"{folder}: the model needs its own Python code (auto_map in config.json); pass "
                             "--trust-code if you trust its source")
    for path in _weight_files(folder):
        _check_weight_file(path, trust_code)
    model = _from_pretrained(folder, trust_code, causal=any(a.endswith(HEADS) for a in config.get("architectures")
                                                            or []))
    tokenizer = load_tokenizer(folder) if any((folder / n).is_file() for n in TOKENIZER_FILES) else None
    note = "" if tokenizer is not None else "no tokenizer in the folder: give token ids (--token-ids FILE)"
    return Loaded(folder, "hf", dict(model.state_dict()), model, kind=model_kind(model), tokenizer=tokenizer,
                  name=folder.name, note=note)


def _from_pretrained(folder: Path, trust_code: bool, causal: bool, **kwargs: Any) -> Any:
    """The float32 eval-mode model of ``folder``; weights the model needs and the files lack are an error (transformers
    would initialise them at random and carry on)."""
    tf = _transformers()
    auto = tf.AutoModelForCausalLM if causal else tf.AutoModel
    try:
        model, info = auto.from_pretrained(folder, dtype=torch.float32, local_files_only=True,
                                           trust_remote_code=trust_code, output_loading_info=True, **kwargs)
    except ImportError as e:
        raise ParamLensError(f"{folder}: a package is missing ({e}); pip install 'paramlens[hf]'") from None
    except Exception as e:  # transformers raises many types for configs and weights it cannot use
        where = folder / kwargs["gguf_file"] if "gguf_file" in kwargs else folder
        raise ParamLensError(f"{where}: transformers cannot build this model ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''})") from None
    _smoke_test(model, folder)
    missing, unused = sorted(info.get("missing_keys", ())), sorted(info.get("unexpected_keys", ()))
    if missing:
        extra = f"; it holds {len(unused)} tensors the model does not use (first: {unused[0]})" if unused else ""
        raise ParamLensError(f"{folder}: the weights lack {len(missing)} tensors the {type(model).__name__} needs "
                             f"(first: {missing[0]}){extra}; transformers would fill them at random")
    return model.eval()


def _smoke_test(model: Any, where: Path) -> None:
    """Run the model once on two tokens: a config that contradicts its weights or itself fails here, as one line
    about the model, not later inside an analysis."""
    try:
        with torch.no_grad():
            model(input_ids=torch.zeros(1, 2, dtype=torch.long))
    except Exception as e:  # noqa: BLE001 - any failure of the user's model means the same thing
        raise ParamLensError(f"{where}: the model fails on a 2-token input ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); its config and "
                             "weights do not make a working model") from None


def load_tokenizer(path: str | Path) -> Any:
    """The transformers tokenizer of a Hugging Face folder, or stored inside a GGUF file."""
    tf = _transformers()
    path = Path(path)
    try:
        if path.suffix == ".gguf":
            return tf.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        return tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the same thing to the user
        raise ParamLensError(f"{path}: its tokenizer cannot be read ({type(e).__name__}: {str(e)[:200]}); give "
                             "token ids instead (--token-ids FILE)") from None


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock`` (waiting for other processes) for the block."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
    except OSError as e:
        raise ParamLensError(f"{lock.parent}: the GGUF cache cannot be written there ({e.strerror}); set "
                             "PARAMLENS_CACHE to a writable folder") from None
    with handle as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_gguf(path: Path) -> Loaded:
    """A GGUF file, dequantized once through transformers, then read back from the cache as a Hugging Face folder."""
    from paramlens.core.gguf import read_gguf_header

    header = read_gguf_header(path)  # a damaged or hostile header is one clear error here, never inside transformers
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir() / "gguf" / f"{path.stem}-{key}"
    try:
        with _locked(cached.with_name(cached.name + ".lock")):
            if not (cached / "config.json").is_file():
                _fill_cache(path, cached)
    except ParamLensError as e:  # transformers cannot build this architecture: its tensors can still be read
        return Loaded(path, "gguf", _dequantized(path), name=path.name,
                      note=f"weights only: {e} (architecture {header.architecture!r})")
    loaded = load_hf_folder(cached)
    loaded.path, loaded.format, loaded.name = path, "gguf", path.name
    return loaded


def _dequantized(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a (validated) GGUF file, dequantized to float32, named as the file names them."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {t.name: torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).astype("float32", copy=True))
            for t in reader.tensors}


def _fill_cache(path: Path, cached: Path) -> None:
    """Dequantize ``path`` into a fresh temporary folder beside ``cached``, then move it into place."""
    from safetensors.torch import save_model

    model = _from_pretrained(path.parent, False, causal=True, gguf_file=path.name)
    tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=cached.name + "."))
    try:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = [type(model).__name__]
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))  # drops the duplicate of tied weights
        load_tokenizer(path).save_pretrained(tmp)
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(tmp, cached)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
