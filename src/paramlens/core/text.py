"""Text corpora that ship with Debian packages, read offline.

- ``fortunes``: every fortune in Debian ``fortunes`` (``/usr/share/games/fortunes/``), about 2.5 MB.
- ``bible``: the King James Bible from Debian ``bible-kjv`` (dumped by its ``bible`` program), about 4.3 MB.
- any other name is read as a UTF-8 text file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
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


def corpus_token_ids(tokenizer: Any, corpus: str | Path, n_tokens: int) -> Tensor:
    """The first ``n_tokens`` ids of ``corpus`` (a corpus name or a text file) under a Hugging Face ``tokenizer``."""
    text = load_corpus(corpus, max_chars=max(20 * n_tokens, 10_000))
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)[:n_tokens]
    if len(ids) < n_tokens:
        raise ParamLensError(f"corpus '{corpus}' gives {len(ids)} tokens; {n_tokens} were asked for")
    return ids
