"""The global step of the block-order search: a regression on which of each two blocks runs first.

Around an order, the network's output is close to linear in the blocks' pairwise precedences. When block ``i``
runs before block ``j``, ``i``'s update passes through ``j``, which adds (to first order, per row)
``c_ij = G_j J_j u_i`` to the output: ``u_i`` is ``i``'s update on the stream it reads, ``J_j`` the Jacobian of
``j``'s update at the stream ``j`` reads, and ``G_j`` the Jacobian of the output with respect to the stream
after ``j``. Flipping the precedence of ``i`` and ``j`` therefore changes the output by ``±(c_ij - c_ji)``, and the
precedences ``s_ij`` (1: ``i`` first) that explain the remaining error on the search rows solve a least-squares
problem with one unknown per pair. Its ridge solution, pulled toward the current order with a trust strength,
ranks the blocks by how many others they precede (a Borda count), which is the next order. One regression gives
one candidate order per strength; the caller runs them exactly and keeps the best.

Unlike moves of single blocks, one step reorders every block at once, so an order from weight statistics with
hundreds of inverted pairs is typically exact after a few steps. Memory stays bounded: with many blocks only the
pairs that sit close in the current order are unknowns (:data:`MAX_PAIRS`), and the rows used shrink so that
the per-pair effects fit in :data:`MAX_VALUES` numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from paramlens.reverse.residual_blocks import Blocks

TRUST = (1e-3, 1e-2, 1e-1, 1.0)  # ridge strengths, relative to the mean diagonal of the normal equations
MAX_PAIRS = 2048
MAX_VALUES = 1 << 26


def _positions(order: list[int]) -> Tensor:
    """``where[b]``: the position of block ``b`` in ``order``."""
    where = torch.empty(len(order), dtype=torch.long)
    where[torch.tensor(order)] = torch.arange(len(order))
    return where


def _pairs(where: Tensor) -> tuple[Tensor, Tensor]:
    """The pairs ``i < j`` that are unknowns: all, or those closest in the current order (``where[b]``: the
    position of block ``b``) up to :data:`MAX_PAIRS`."""
    n = len(where)
    first, second = torch.triu_indices(n, n, 1)
    gap = (where[first] - where[second]).abs()
    if len(gap) > MAX_PAIRS:
        keep = gap <= gap.sort().values[MAX_PAIRS - 1]
        first, second = first[keep], second[keep]
    return first, second


def pair_effects(blocks: Blocks, order: list[int], x: Tensor) -> tuple[Tensor, Tensor]:
    """``c`` ``(n, n, R * o)``: ``c[i, j]`` = the output change, per row and output, that block ``i``'s update
    causes by passing through block ``j`` (first order, at the streams of ``order`` on inputs ``x`` ``(R, d)``);
    and the output of ``order`` ``(R * o,)``."""
    where = _positions(order)
    h = blocks.streams(order, x)
    g = blocks.output_jacobians(order, h)  # (n + 1, R, o, d)
    h_in, g_out = h[where], g[where + 1]  # per block: the stream it reads, d output / d stream after it
    u = blocks.update(torch.arange(blocks.n), h_in)  # (n, R, d)
    active = (h_in @ blocks.expand.transpose(1, 2) + blocks.expand_bias.unsqueeze(1) > 0).to(h.dtype)
    through = torch.einsum("jrod,jdh->jroh", g_out, blocks.contract) * active.unsqueeze(2)
    through = torch.einsum("jroh,jhd->jrod", through, blocks.expand)  # G_j J_j, (n, R, o, d)
    c = torch.einsum("jrod,ird->ijro", through, u).flatten(2)
    return c, blocks.output(h[-1]).flatten()


def precedence_orders(blocks: Blocks, order: list[int], x: Tensor, y: Tensor,
                      trust: tuple[float, ...] = TRUST) -> list[list[int]]:
    """One candidate order per trust strength (see the module docstring), from ``order`` and the rows ``x``
    ``(R, d)``, ``y`` ``(R, o)``; none when the regression is not finite (overflowing streams)."""
    n = blocks.n
    if n < 2:
        return []
    o, d = blocks.readout.shape
    rows = max(1, min(len(x), MAX_VALUES // (n * n * o + (n + 1) * o * d)))
    c, out = pair_effects(blocks, order, x[:rows])
    where = _positions(order)
    first, second = _pairs(where)
    a = (c[first, second] - c[second, first]).T  # (rows * o, pairs): output change when i goes first
    if not torch.isfinite(a).all() or not torch.isfinite(out).all():
        return []
    now = (where[first] < where[second]).to(torch.float64)
    gram = (a.T @ a).double()
    rhs = (a.T @ (y[:rows].flatten() - out)).double() + gram @ now
    scale = float(gram.diagonal().mean()) + 1e-30
    eye = torch.eye(len(now), dtype=torch.float64)
    current = torch.tensor(order)
    orders = []
    for strength in trust:
        factor, failed = torch.linalg.cholesky_ex(gram + strength * scale * eye)
        if failed:
            continue
        s = torch.cholesky_solve((rhs + strength * scale * now).unsqueeze(1), factor).squeeze(1)
        before = (where.unsqueeze(1) < where.unsqueeze(0)).to(torch.float64)  # pairs left out keep their order
        before[first, second], before[second, first] = s, 1 - s
        wins = before.sum(1)[current]  # ties keep the current order
        orders.append(current[torch.argsort(-wins, stable=True)].tolist())
    return orders
