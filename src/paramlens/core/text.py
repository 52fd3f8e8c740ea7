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
        with open(path, encoding="utf-8", errors="replace") as f:  # only what is needed of a large file
            text = f.read(max_chars if max_chars else -1)
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


@dataclass(frozen=True)
class TextOptions:
    """What a language-model command reads: ``tokens`` tokens of ``corpus`` (a corpus name or a text file) in
    windows of ``context``, or the first ``tokens`` of a ``token_ids`` file (for models without a tokenizer)."""

    corpus: str = "fortunes"
    token_ids: Path | None = None
    tokens: int = 2048
    context: int = 64


def lm_windows(loaded: Any, text: TextOptions) -> Tensor:
    """The ``(n, T)`` token windows a language-model command reads (``loaded``: a
    :class:`~paramlens.core.loading.Loaded` language model)."""
    from paramlens.core.token_ids import read_token_ids

    vocab = loaded.module.get_input_embeddings().weight.shape[0]
    if text.token_ids is not None:
        windows = read_token_ids(text.token_ids, vocab, text.context, text.tokens)
    elif loaded.tokenizer is None:
        raise ParamLensError(f"{loaded.path or loaded.name}: no tokenizer comes with this model, so a text corpus "
                             "cannot be read; give token ids with --token-ids FILE")
    else:
        windows = corpus_windows(loaded.tokenizer, text.corpus, text.tokens, text.context)
    config = getattr(loaded.module, "config", None)
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if limit is not None and windows.shape[1] > limit:
        fix = f"use --context {limit} or less" if windows.shape[1] == text.context else \
            f"cut the windows in {text.token_ids} to {limit} tokens or fewer"
        raise ParamLensError(f"windows of {windows.shape[1]} tokens are longer than the {limit} positions "
                             f"{loaded.name} was built for; {fix}")
    return windows
