"""A residual network held as stacked blocks: ``x_{k+1} = x_k + C_k ReLU(E_k x_k + e_k) + c_k``, then the readout
``y = F x_n + f``, run in any block order; and the error of an order against given outputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Blocks:
    """``n`` residual blocks and the readout: ``expand`` ``(n, h, d)``, ``expand_bias`` ``(n, h)``, ``contract``
    ``(n, d, h)``, ``contract_bias`` ``(n, d)``, ``readout`` ``(o, d)``, ``readout_bias`` ``(o,)``."""

    expand: Tensor
    expand_bias: Tensor
    contract: Tensor
    contract_bias: Tensor
    readout: Tensor
    readout_bias: Tensor

    @property
    def n(self) -> int:
        return self.expand.shape[0]

    def to(self, dtype: torch.dtype) -> Blocks:
        return Blocks(*(t.to(dtype) for t in (self.expand, self.expand_bias, self.contract, self.contract_bias,
                                                self.readout, self.readout_bias)))

    def update(self, b: Tensor | int, h: Tensor) -> Tensor:
        """Block ``b``'s update ``C ReLU(E h + e) + c`` of streams ``h`` ``(..., R, d)``; ``b`` may be a batch
        of block indices matching ``h``'s leading dimension."""
        e, eb, c, cb = self.expand[b], self.expand_bias[b], self.contract[b], self.contract_bias[b]
        return torch.relu(h @ e.transpose(-1, -2) + eb.unsqueeze(-2)) @ c.transpose(-1, -2) + cb.unsqueeze(-2)

    def streams(self, order: list[int], x: Tensor) -> Tensor:
        """``(n + 1, R, d)``: the stream before each block of ``order`` and after the last."""
        out = [x]
        for b in order:
            out.append(out[-1] + self.update(b, out[-1]))
        return torch.stack(out)

    def output(self, h: Tensor) -> Tensor:
        return h @ self.readout.T + self.readout_bias

    def output_jacobians(self, order: list[int], streams: Tensor) -> Tensor:
        """``(n + 1, R, o, d)``: d output / d stream at each position, per row."""
        g = self.readout.expand(streams.shape[1], *self.readout.shape)
        out = [g]
        for k in reversed(range(len(order))):
            b = order[k]
            active = (streams[k] @ self.expand[b].T + self.expand_bias[b] > 0).to(g.dtype)
            g = g + ((g @ self.contract[b]) * active.unsqueeze(1)) @ self.expand[b]
            out.append(g)
        return torch.stack(out[::-1])


def mse_of_orders(blocks: Blocks, orders: list[list[int]], x: Tensor, y: Tensor) -> list[float]:
    """Mean squared error of the network run in each of ``orders`` (together, as one batch) on inputs ``x``
    ``(R, d)`` against outputs ``y`` ``(R, o)``."""
    if not orders:
        return []
    index = torch.tensor(orders)
    z = x.expand(len(orders), *x.shape)
    for k in range(index.shape[1]):
        z = z + blocks.update(index[:, k], z)
    return ((blocks.output(z) - y) ** 2).mean((1, 2)).tolist()


def mse(blocks: Blocks, order: list[int], x: Tensor, y: Tensor) -> float:
    """:func:`mse_of_orders` of one order."""
    return mse_of_orders(blocks, [order], x, y)[0]
