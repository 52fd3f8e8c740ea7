"""Token ids given as a file, for models without a tokenizer (TransformerLens task models, bare model folders)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from paramlens.errors import ParamLensError

MAX_LINE = 1 << 20  # characters in one line of a text file of ids


def read_token_ids(path: str | Path, vocab_size: int, context: int, max_tokens: int | None = None) -> Tensor:
    """Token ids from a file, as ``(n, T)`` windows: one integer tensor in any weights format ParamLens reads
    (``(n, T)`` kept as is, ``(n,)`` cut into windows of ``context``), or a text file (``.txt``, ``.csv``, ``.tsv``)
    of integers separated by spaces or commas, one window per line (all of one length). With ``max_tokens``, only
    the first ``max(1, max_tokens // T)`` windows are kept. Every id must lie in ``[0, vocab_size)``."""
    from paramlens.core.loading import load, regular_file

    path = regular_file(path)
    if path.suffix in (".txt", ".csv", ".tsv"):
        ids = _ids_from_text(path, max_tokens)
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
    if max_tokens is not None:
        ids = ids[: max(1, max_tokens // ids.shape[1])]
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ParamLensError(f"{path}: token ids range over [{low}, {high}], outside the model's vocabulary of "
                             f"{vocab_size} (ids 0..{vocab_size - 1})")
    return ids


def _ids_from_text(path: Path, max_tokens: int | None) -> Tensor:
    """One window per line; reading stops once ``max_tokens`` ids are in (lines are read one at a time, each at
    most :data:`MAX_LINE` characters)."""
    rows: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), ""), 1):
            if len(line) > MAX_LINE:
                raise ParamLensError(f"{path}, line {number}: longer than {MAX_LINE:,} characters; one window of ids "
                                     "per line")
            if line.strip():
                rows.append(_parse(line, path, number))
            if max_tokens is not None and rows and len(rows) * len(rows[0]) >= max_tokens:
                break
    if len({len(r) for r in rows}) > 1:
        raise ParamLensError(f"{path}: lines hold different numbers of ids ({sorted({len(r) for r in rows})[:5]}); "
                             "every line is one window of the same length")
    return torch.tensor(rows, dtype=torch.long)


def _parse(line: str, path: Path, number: int) -> list[int]:
    try:
        values = [int(v) for v in line.replace(",", " ").split()]
    except ValueError:
        raise ParamLensError(f"{path}, line {number}: not a list of integer token ids") from None
    if any(not -(2**63) <= v < 2**63 for v in values):
        raise ParamLensError(f"{path}, line {number}: an id beyond 64-bit integers; token ids are small integers")
    return values
