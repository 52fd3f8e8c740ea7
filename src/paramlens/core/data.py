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
