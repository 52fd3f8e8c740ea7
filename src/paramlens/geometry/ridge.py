"""Ridge regression from streamed sums: add batches of ``(x, y)`` rows, solve once, never hold all rows."""

from __future__ import annotations

import torch
from torch import Tensor


def with_one(x: Tensor) -> Tensor:
    """``(N, d) -> (N, d + 1)``: a constant 1 appended (the intercept column)."""
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)


class RidgeSums:
    """Running ``[x, 1]^T [x, 1]`` ``(d + 1, d + 1)`` and ``[x, 1]^T y`` ``(d + 1, k)`` in float64."""

    def __init__(self, d_in: int, d_out: int):
        self.xx = torch.zeros(d_in + 1, d_in + 1, dtype=torch.float64)
        self.xy = torch.zeros(d_in + 1, d_out, dtype=torch.float64)
        self.n = 0

    def add(self, x: Tensor, y: Tensor) -> None:
        xa = with_one(x.double())
        self.xx += xa.T @ xa
        self.xy += xa.T @ y.double()
        self.n += len(x)

    def solve(self, alpha: float, relative: bool = False) -> Tensor:
        """``(d + 1, k)`` map of ``[x, 1]`` minimising ``|y - [x, 1] W|^2 + alpha' |W_x|^2`` (intercept not
        penalised); ``alpha' = alpha``, or ``alpha`` times the summed mean square of the inputs if ``relative``."""
        d = self.xx.shape[0] - 1
        penalty = alpha * (torch.diagonal(self.xx)[:d].mean() if relative else 1.0)
        reg = torch.zeros(d + 1, dtype=torch.float64)
        reg[:d] = penalty
        return torch.linalg.solve(self.xx + torch.diag(reg), self.xy)
