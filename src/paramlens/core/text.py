"""Text corpora that ship with Debian packages, read offline.

- ``fortunes``: every fortune in Debian ``fortunes`` (``/usr/share/games/fortunes/``), about 2.5 MB.
- ``bible``: the King James Bible from Debian ``bible-kjv`` (dumped by its ``bible`` program), about 4.3 MB.
- any other name is read as a UTF-8 text file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paramlens.errors import ParamLensError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
CORPORA = ("fortunes", "bible")


def _fortunes(folder: Path) -> str:
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8"))
    if not files:
        raise ParamLensError(f"no fortune files in {folder}: install Debian 'fortunes' (apt-get install fortunes)")
    texts = []
    for p in files:
        texts.extend(t.strip() for t in p.read_text(encoding="utf-8", errors="replace").split("\n%\n") if t.strip())
    return "\n\n".join(texts)


def _bible() -> str:
    if shutil.which("bible") is None:
        raise ParamLensError("the 'bible' program is missing: install Debian 'bible-kjv' (apt-get install bible-kjv)")
    dump = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    return "\n".join(re.sub(r"^\S+?\d+:\d+ ", "", line) for line in dump.splitlines() if line.strip())


def load_corpus(name: str | Path, max_chars: int | None = None) -> str:
    """The text of a named corpus (:data:`CORPORA`) or of a text file; at most ``max_chars`` characters."""
    if name == "fortunes":
        text = _fortunes(FORTUNES_DIR)
    elif name == "bible":
        text = _bible()
    else:
        path = Path(name)
        if not path.is_file():
            raise ParamLensError(f"'{name}' is neither a corpus ({', '.join(CORPORA)}) nor a text file")
        text = path.read_text(encoding="utf-8", errors="replace")
    return text[:max_chars] if max_chars else text


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """``(prefix, suffix)`` ids the tokenizer puts around every text by its own rule: BOS for Llama-family
    tokenizers that add one, ``[CLS]`` / ``[SEP]`` for BERT, nothing for GPT-2."""
    probe = "The quick brown fox"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start: start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return [], []


def wrap_windows(ids: Tensor, tokenizer: Any, context: int) -> Tensor:
    """``(n, context)`` windows of the token stream ``ids`` ``(N,)``: consecutive stretches, each wrapped in the
    tokenizer's special tokens (:func:`special_tokens`), as the model saw text in training (a trailing partial
    stretch is dropped)."""
    prefix, suffix = special_tokens(tokenizer)
    body = context - len(prefix) - len(suffix)
    if body < 1:
        raise ParamLensError(f"--context {context} leaves no room for text next to the tokenizer's "
                             f"{len(prefix) + len(suffix)} special tokens; use a longer context")
    n = len(ids) // body
    rows = ids[: n * body].view(n, body)
    return torch.cat([torch.tensor(prefix, dtype=torch.long).expand(n, -1), rows,
                      torch.tensor(suffix, dtype=torch.long).expand(n, -1)], dim=1)


def corpus_windows(tokenizer: Any, corpus: str | Path, n_tokens: int, context: int) -> Tensor:
    """``(n_tokens // context, context)`` token windows of ``corpus`` (a corpus name or a text file), each wrapped
    in the tokenizer's special tokens (:func:`wrap_windows`)."""
    n_windows = n_tokens // context
    if n_windows < 1:
        raise ParamLensError(f"--tokens {n_tokens} is less than one window of --context {context}")
    text = load_corpus(corpus, max_chars=max(20 * n_tokens, 10_000))
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    windows = wrap_windows(ids, tokenizer, context)
    if len(windows) < n_windows:
        raise ParamLensError(f"corpus '{corpus}' gives {len(ids)} tokens, {len(windows)} windows of --context "
                             f"{context}; {n_windows} were asked for: lower --tokens")
    return windows[:n_windows]


def read_token_ids(path: str | Path, vocab_size: int, context: int) -> Tensor:
    """Token ids from a file, as ``(n, T)`` windows: one integer tensor in any weights format ParamLens reads
    (``(n, T)`` kept as is, ``(n,)`` cut into windows of ``context``), or a text file of whitespace-separated
    integers, one window per line (all of one length). Every id must lie in ``[0, vocab_size)``."""
    from paramlens.core.loading import load, regular_file

    path = regular_file(path)
    if path.suffix in (".txt", ".csv", ".tsv"):
        ids = _ids_from_text(path)
    else:
        tensors = load(path, check_finite=False).tensors
        if len(tensors) != 1:
            raise ParamLensError(f"{path}: holds {len(tensors)} tensors ({', '.join(list(tensors)[:4])}); a token-id "
                                 "file holds exactly one integer tensor")
        ids = next(iter(tensors.values()))
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool or ids.dim() not in (1, 2):
        raise ParamLensError(f"{path}: token ids must be a 1-d or 2-d integer tensor, got {tuple(ids.shape)} "
                             f"{ids.dtype}")
    ids = ids.long()
    if ids.dim() == 1:
        if len(ids) < context:
            raise ParamLensError(f"{path}: {len(ids)} token ids are fewer than one window of --context {context}")
        ids = ids[: len(ids) // context * context].view(-1, context)
    if ids.numel() == 0:
        raise ParamLensError(f"{path}: holds no token ids")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ParamLensError(f"{path}: token ids range over [{low}, {high}], outside the model's vocabulary of "
                             f"{vocab_size} (ids 0..{vocab_size - 1})")
    return ids


def _ids_from_text(path: Path) -> Tensor:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                rows.append([int(v) for v in line.replace(",", " ").split()])
            except ValueError:
                raise ParamLensError(f"{path}, line {number}: not a list of integer token ids") from None
    if len({len(r) for r in rows}) > 1:
        raise ParamLensError(f"{path}: lines hold different numbers of ids ({sorted({len(r) for r in rows})[:5]}); "
                             "every line is one window of the same length")
    return torch.tensor(rows, dtype=torch.long)


@dataclass(frozen=True)
class TextOptions:
    """What a language-model command reads: ``tokens`` tokens of ``corpus`` (a corpus name or a text file) in
    windows of ``context``, or the windows of a ``token_ids`` file (for models without a tokenizer)."""

    corpus: str = "fortunes"
    token_ids: Path | None = None
    tokens: int = 2048
    context: int = 64


def lm_windows(loaded: Any, text: TextOptions) -> Tensor:
    """The ``(n, T)`` token windows a language-model command reads (``loaded``: a
    :class:`~paramlens.core.loading.Loaded` language model)."""
    vocab = loaded.module.get_input_embeddings().weight.shape[0]
    if text.token_ids is not None:
        windows = read_token_ids(text.token_ids, vocab, text.context)
    elif loaded.tokenizer is None:
        raise ParamLensError(f"{loaded.path or loaded.name}: no tokenizer comes with this model, so a text corpus "
                             "cannot be read; give token ids with --token-ids FILE")
    else:
        windows = corpus_windows(loaded.tokenizer, text.corpus, text.tokens, text.context)
    config = getattr(loaded.module, "config", None)
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if limit is not None and windows.shape[1] > limit:
        raise ParamLensError(f"windows of {windows.shape[1]} tokens are longer than the {limit} positions "
                             f"{loaded.name} was built for; use --context {limit} or less")
    return windows
