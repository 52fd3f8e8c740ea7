"""Order the blocks of a residual network from input/output data.

The network is ``x_{k+1} = x_k + C_k ReLU(E_k x_k + e_k) + c_k`` for ``n`` blocks in an unknown order, then
``y = F x_n + f``. Given the paired blocks and rows ``(x, y)`` it produced, :func:`order_blocks` searches for
the order that reproduces ``y``:

1. Seeds: orders from weight and data statistics (alignment of each block's write directions with the
   readout ``F``, contract norm, update size on the inputs, ...), searched from in order of their error until
   one search ends exact.
2. Steps (:mod:`paramlens.reverse.precedence`): a regression on which of each two blocks runs first reorders
   all blocks at once; its candidate orders are run exactly and the best is kept while it lowers the error.
   Moves of single blocks (swaps, shifts) fix one inverted stretch at a time and misplaced blocks hide each
   other from them; a step fixes hundreds of inverted pairs together, so a few steps usually reach the exact
   order.

The search runs on a subset of rows in float32; the answer is checked on every row in float64. An order counts
as exact when its mean squared error is at rounding level (1e-10 of the outputs' mean square).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.errors import ParamLensError
from paramlens.reverse.precedence import precedence_orders
from paramlens.reverse.residual_blocks import Blocks, mse, mse_of_orders


@dataclass
class OrderSearch:
    """How the search went: the order found, its mean squared error on all rows (float64), whether that is
    exact (rounding level), the seed it came from, the steps kept and the candidate orders run exactly (all
    starts), and the error after each step of each start (search rows, float32)."""

    order: list[int]
    mse: float
    exact: bool
    seed: str
    steps: int
    orders_run: int
    history: list[list[float]]


def seed_orders(blocks: Blocks, x: Tensor) -> dict[str, list[int]]:
    """Candidate starting orders, ``{description: order}``, from per-block statistics of ``blocks`` and the
    inputs ``x`` ``(R, d)``: each statistic sorted ascending and descending."""
    c = blocks.contract
    write = (blocks.readout @ c).flatten(1).norm(dim=1) / c.flatten(1).norm(dim=1)
    stats = {
        "readout alignment": write,
        "contract norm": c.flatten(1).norm(dim=1),
        "update size on inputs": torch.stack([blocks.update(b, x).norm(dim=1).mean() for b in range(blocks.n)]),
        "self-interaction trace": torch.einsum("bdh,bhd->b", c, blocks.expand),
    }
    out = {}
    for name, v in stats.items():
        asc = torch.argsort(v).tolist()
        out[f"{name}, ascending"] = asc
        out[f"{name}, descending"] = asc[::-1]
    return out


def rounding_level(y: Tensor) -> float:
    """The mean squared error below which an order counts as reproducing ``y`` exactly."""
    return 1e-10 * float((y.double() ** 2).mean()) + 1e-12


def _descend(fast: Blocks, order: list[int], xs: Tensor, ys: Tensor, floor: float, max_steps: int,
             history: list[float], progress) -> tuple[list[int], float, int]:
    """Steps from ``order`` (error ``history[-1]``) while one lowers the error, until it reaches ``floor`` or
    after ``max_steps``; appends each step's error to ``history``. Returns the order, its error and the number
    of candidate orders run."""
    cur, runs = history[-1], 0
    for _ in range(max_steps):
        if cur <= floor:
            break
        cands = precedence_orders(fast, order, xs, ys)
        errors = [e if math.isfinite(e) else math.inf for e in mse_of_orders(fast, cands, xs, ys)]
        runs += len(cands)
        best = min(range(len(cands)), key=errors.__getitem__, default=None)
        if best is None or not errors[best] < cur:
            break
        order, cur = cands[best], errors[best]
        history.append(cur)
        if progress is not None:
            progress(len(history) - 1, cur)
    return order, cur, runs


def order_blocks(blocks: Blocks, x: Tensor, y: Tensor, *, search_rows: int = 1024, starts: int = 3,
                 max_steps: int = 100, seeds: dict[str, list[int]] | None = None, progress=None) -> OrderSearch:
    """Find the order of ``blocks`` that maps ``x`` ``(R, d)`` to ``y`` ``(R, o)``.

    ``search_rows``: rows used while searching (all rows are used for the final check); ``starts``: seed
    orders to search from, best first, until one reaches an exact fit; ``max_steps``: per start; ``seeds``:
    starting orders ``{description: order}`` (default: :func:`seed_orders`); ``progress``: optional callable
    ``(step, mse)``.
    """
    fast = blocks.to(torch.float32)
    xs, ys = x[:search_rows].to(torch.float32), y[:search_rows].to(torch.float32)
    seeds = seed_orders(fast, xs) if seeds is None else seeds
    if not seeds:
        raise ParamLensError("no seed orders to search from")
    for name, order in seeds.items():
        if sorted(order) != list(range(blocks.n)):
            raise ParamLensError(f"seed order '{name}' is not a permutation of the {blocks.n} blocks")
    scored = sorted(zip(mse_of_orders(fast, list(seeds.values()), xs, ys), seeds))
    floor = rounding_level(ys)
    best = (math.inf, [], "")
    history: list[list[float]] = []
    runs = len(seeds)
    for start_mse, name in scored[:starts]:
        history.append([start_mse])
        order, cur, tried = _descend(fast, seeds[name], xs, ys, floor, max_steps, history[-1], progress)
        runs += tried
        if not best[1] or cur < best[0]:  # (an error that overflowed to NaN still leaves an order to report)
            best = (cur, order, name)
        if cur <= floor:
            break
    _, order, seed = best
    error = mse(blocks.to(torch.float64), order, x.double(), y.double())
    steps = sum(len(h) - 1 for h in history)
    return OrderSearch(order, error, error <= rounding_level(y), seed, steps, runs, history)
