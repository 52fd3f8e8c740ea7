"""Order the blocks of a residual network from input/output data.

The network is ``x_{k+1} = x_k + C_k ReLU(E_k x_k + e_k) + c_k`` for ``n`` blocks in an unknown order, then
``y = F x_n + f``. Given the paired blocks and rows ``(x, y)`` it produced, :func:`order_blocks` searches for
the order that reproduces ``y``:

1. Seeds: orders from weight and data statistics (alignment of each block's write directions with the
   readout ``F``, update size on the inputs, ...), searched from in order of their error until one search
   ends exact.
2. Moves: every swap of two blocks and every move of one block to another position. All moves are scored in
   one batched pass: the changed stretch of the network is run exactly from the cached stream at its start,
   and its effect on the output is carried to the end by the per-row output Jacobian at its end (first order).
   Several misplaced blocks often hide each other (fixing one alone makes the output worse), so pairs of moves
   on disjoint stretches are scored too, by adding their predicted output changes.
3. The best predicted candidates are run exactly; the first that lowers the error is kept. The search ends
   when the error is at rounding level, or no candidate helps (then the next seed is tried).

Search runs on a subset of rows in float32; the answer is checked on every row in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


@dataclass(frozen=True)
class Move:
    """Positions ``lo..hi`` of the order are replaced by ``window`` (the same blocks, rearranged)."""

    lo: int
    window: tuple[int, ...]

    @property
    def hi(self) -> int:
        return self.lo + len(self.window) - 1

    def apply(self, order: list[int]) -> list[int]:
        return order[: self.lo] + list(self.window) + order[self.hi + 1:]

    def overlaps(self, other: Move) -> bool:
        return not (self.hi < other.lo or other.hi < self.lo)


def moves(order: list[int], reach: int) -> list[Move]:
    """Every swap and every single-block move between positions at most ``reach`` apart."""
    out = []
    n = len(order)
    for p in range(n):
        for q in range(p + 1, min(n, p + reach + 1)):
            seg = order[p: q + 1]
            out.append(Move(p, (seg[-1], *seg[1:-1], seg[0])))  # swap
            if q > p + 1:  # (next to each other, a move is the swap)
                out.append(Move(p, (*seg[1:], seg[0])))  # block at p moves to q
                out.append(Move(p, (seg[-1], *seg[:-1])))  # block at q moves to p
    return out


@dataclass
class SearchWork:
    """The work of an order search: rounds of moves, candidate orders scored by the first-order model, and
    candidate orders run exactly."""

    rounds: int = 0
    candidates_scored: int = 0
    candidates_run: int = 0


@dataclass
class OrderSearch:
    """How the search went: the order found, its mean squared error on all rows (float64), whether that is
    exact (rounding level), the seed it came from, the work done, and the error after each round of each
    start (search rows, float32)."""

    order: list[int]
    mse: float
    exact: bool
    seed: str
    work: SearchWork
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


def _mse(blocks: Blocks, order: list[int], x: Tensor, y: Tensor) -> float:
    return float(((blocks.output(blocks.streams(order, x)[-1]) - y) ** 2).mean())


def _rounding_level(y: Tensor) -> float:
    """The mean squared error below which an order counts as reproducing ``y`` exactly."""
    return 1e-10 * float((y.double() ** 2).mean()) + 1e-12


def predicted_changes(blocks: Blocks, cands: list[Move], h: Tensor, g: Tensor, chunk: int) -> Tensor:
    """``(len(cands), R * o)``: each move's first-order change of the output, from the streams ``h``
    ``(n + 1, R, d)`` of the current order (:meth:`Blocks.streams`) and their output Jacobians ``g``
    ``(n + 1, R, o, d)`` (:meth:`Blocks.output_jacobians`); moves are run ``chunk`` at a time."""
    out = torch.empty(len(cands), h.shape[1] * g.shape[2], dtype=h.dtype)
    by_len: dict[int, list[int]] = {}
    for i, m in enumerate(cands):
        by_len.setdefault(len(m.window), []).append(i)
    for length, idx in by_len.items():
        for s in range(0, len(idx), chunk):
            part = idx[s: s + chunk]
            lo = torch.tensor([cands[i].lo for i in part])
            win = torch.tensor([cands[i].window for i in part])
            z = h[lo]
            for t in range(length):
                z = z + blocks.update(win[:, t], z)
            diff = z - h[lo + length]
            out[part] = torch.einsum("mrd,mrod->mro", diff, g[lo + length]).flatten(1)
    return out


def _best_combinations(d: np.ndarray, e: np.ndarray, cands: list[Move], top: int) -> list[tuple[float, list[int]]]:
    """Single moves and disjoint pairs, ranked by predicted ``||e - sum of changes||^2``."""
    ee = float(e @ e)
    norms = (d * d).sum(1)
    corr = d @ e
    single = ee - 2 * corr + norms
    pick = np.unique(np.concatenate([np.argsort(single)[:top], np.argsort(-corr / np.sqrt(norms + 1e-30))[:top]]))
    gram = d[pick] @ d[pick].T
    pair = single[pick][:, None] + single[pick][None, :] - ee + 2 * gram
    lo = np.array([cands[i].lo for i in pick])
    hi = np.array([cands[i].hi for i in pick])
    disjoint = (hi[:, None] < lo[None, :]) | (hi[None, :] < lo[:, None])
    pair = np.where(np.triu(disjoint, 1), pair, np.inf)
    ranked = [(float(single[i]), [int(i)]) for i in np.argsort(single)[:top]]
    flat = np.argsort(pair, axis=None)[:top]
    for f in flat:
        a, b = np.unravel_index(f, pair.shape)
        if np.isfinite(pair[a, b]):
            ranked.append((float(pair[a, b]), [int(pick[a]), int(pick[b])]))
    ranked.sort(key=lambda t: t[0])
    return ranked


def _descend(fast: Blocks, order: list[int], cur: float, xs: Tensor, ys: Tensor, floor: float, reach: int,
             reach_floor: int, tries: int, max_rounds: int, top: int, chunk: int, work: SearchWork,
             history: list[float], progress) -> tuple[list[int], float]:
    """Improve ``order`` (error ``cur``) by rounds of scored moves until the error reaches ``floor`` or nothing
    helps."""
    n = fast.n
    span = n  # reach of this round's moves: the longest move accepted lately, widened when stuck
    for _ in range(max_rounds):
        if cur <= floor:
            break
        work.rounds += 1
        h = fast.streams(order, xs)
        g = fast.output_jacobians(order, h)
        e = (ys - fast.output(h[-1])).flatten().double().numpy()
        cands = moves(order, min(reach, span))
        d = predicted_changes(fast, cands, h, g, chunk).double().numpy()
        work.candidates_scored += len(cands)
        taken: list[Move] = []
        runs = 0
        for _, combo in _best_combinations(d, e, cands, top):
            chosen = [cands[i] for i in combo]
            if any(m.overlaps(t) for m in chosen for t in taken):
                continue
            if runs == tries:
                break
            new = order
            for m in chosen:
                new = m.apply(new)
            loss = _mse(fast, new, xs, ys)
            runs += 1
            if loss < cur:
                order, cur = new, loss
                taken += chosen
        work.candidates_run += runs
        history.append(cur)
        if progress is not None:
            progress(work.rounds, cur)
        if taken:
            span = min(n, max(reach_floor, 2 * max(len(m.window) for m in taken)))
        elif span < min(reach, n):
            span = n
        else:
            break
    return order, cur


def order_blocks(blocks: Blocks, x: Tensor, y: Tensor, *, search_rows: int = 256, starts: int = 3,
                 reach: int | None = None, tries: int = 32, reach_floor: int = 8, max_rounds: int = 500,
                 top: int = 200, chunk: int = 512, progress=None) -> OrderSearch:
    """Find the order of ``blocks`` that maps ``x`` ``(R, d)`` to ``y`` ``(R, o)``.

    ``search_rows``: rows used while searching (all rows are used for the final check); ``starts``: seed
    orders to search from, best first, until one reaches an exact fit; ``reach``: the largest distance a
    move carries a block (default: the whole network); ``tries``: candidates run exactly per round;
    ``max_rounds``: per start; ``progress``: optional callable ``(round, mse)``.
    """
    reach = blocks.n if reach is None else reach
    fast = blocks.to(torch.float32)
    xs, ys = x[:search_rows].to(torch.float32), y[:search_rows].to(torch.float32)
    seeds = seed_orders(fast, xs)
    scored = sorted((_mse(fast, o, xs, ys), name) for name, o in seeds.items())
    floor = _rounding_level(ys)
    work = SearchWork(candidates_run=len(seeds))
    best = (float("inf"), [], "")
    history: list[list[float]] = []
    for start_mse, name in scored[:starts]:
        history.append([start_mse])
        order, cur = _descend(fast, seeds[name], start_mse, xs, ys, floor, reach, reach_floor, tries, max_rounds,
                              top, chunk, work, history[-1], progress)
        if not best[1] or cur < best[0]:  # (an error that overflowed to NaN still leaves an order to report)
            best = (cur, order, name)
        if cur <= floor:
            break
    _, order, seed = best
    exact64 = blocks.to(torch.float64)
    mse = _mse(exact64, order, x.double(), y.double())
    exact = mse <= _rounding_level(y)
    return OrderSearch(order, mse, exact, seed, work, history)
