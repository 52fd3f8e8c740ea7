"""Data sources: anything with ``sample(n, generator) -> Tensor`` feeds a trainer or a method.

Sampling takes an explicit ``torch.Generator`` so that a seeded run draws the same batches every time and
a resumed run continues the same stream (the generator's state is checkpointed with the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from paramlens.errors import ParamLensError


class DataSource(Protocol):
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` inputs, ``(n, *input_shape)``."""
        ...


@dataclass(frozen=True)
class SparseFeatures:
    """Independent sparse features: each is ``U(low, high)`` with probability ``p``, else exactly 0.

    Attributes:
        n_features: input width.
        p: probability that a feature is active.
        low, high: range of an active feature's value.
    """

    n_features: int
    p: float
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 1.0:
            raise ParamLensError(f"feature probability must be in (0, 1], got {self.p}")

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, n_features)`` float32."""
        active = torch.rand(n, self.n_features, generator=generator) < self.p
        values = torch.rand(n, self.n_features, generator=generator) * (self.high - self.low) + self.low
        return values * active


@dataclass(frozen=True)
class TokenWindows:
    """Random windows of ``length`` tokens from one long token stream (a tokenised corpus).

    Attributes:
        tokens: ``(n_tokens,)`` int64 token ids.
        length: tokens per window.
    """

    tokens: Tensor
    length: int

    def __post_init__(self) -> None:
        if self.tokens.dim() != 1 or self.tokens.is_floating_point():
            raise ParamLensError(f"tokens must be a 1-d integer tensor, got {tuple(self.tokens.shape)} {self.tokens.dtype}")
        if len(self.tokens) <= self.length:
            raise ParamLensError(f"a corpus of {len(self.tokens)} tokens is too short for windows of {self.length}")

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, length)`` int64."""
        starts = torch.randint(0, len(self.tokens) - self.length, (n,), generator=generator)
        return self.tokens[starts[:, None] + torch.arange(self.length)]


def text_tokens(path: str | Path, tokenizer: Any, max_chars: int = 2_000_000) -> Tensor:
    """Tokenise (the first ``max_chars`` characters of) a text file into one ``(n_tokens,)`` stream."""
    path = Path(path)
    if not path.is_file():
        raise ParamLensError(f"{path}: no such text file")
    text = path.read_text(encoding="utf-8", errors="replace")[:max_chars]
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
    return ids.long()


@dataclass(frozen=True)
class RandomTokens:
    """Uniformly random token sequences ``(n, length)``: a stand-in corpus for tests and smoke runs."""

    vocab_size: int
    length: int

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randint(0, self.vocab_size, (n, self.length), generator=generator)
