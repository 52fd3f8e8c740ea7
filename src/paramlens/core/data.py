"""Data sources: anything with ``sample(n, generator) -> Tensor`` feeds a trainer or a method.

Sampling takes an explicit ``torch.Generator`` so that a seeded run draws the same batches every time and
a resumed run continues the same stream (the generator's state is checkpointed with the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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


@dataclass(frozen=True)
class TokenRows:
    """Random rows of fixed token windows ``(n, T)`` (a tokenised corpus with each window's special tokens, or the
    windows of a token-id file)."""

    windows: Tensor

    def __post_init__(self) -> None:
        if self.windows.dim() != 2 or self.windows.is_floating_point() or len(self.windows) == 0:
            raise ParamLensError(f"token windows must be a non-empty (n, T) integer tensor, got "
                                 f"{tuple(self.windows.shape)} {self.windows.dtype}")

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, T)`` int64."""
        return self.windows[torch.randint(0, len(self.windows), (n,), generator=generator)]


@dataclass(frozen=True)
class RandomTokens:
    """Uniformly random token sequences ``(n, length)``: a stand-in corpus for tests and smoke runs."""

    vocab_size: int
    length: int

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randint(0, self.vocab_size, (n, self.length), generator=generator)
