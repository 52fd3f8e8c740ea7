"""Put a residual network cut into shuffled pieces back together.

The pieces are linear layers (one weight and one bias each) of ``x <- x + C ReLU(E x + e) + c`` blocks
and a final readout ``y = F x + f``. Expand pieces ``E`` are ``(h, d)``, contract pieces ``C`` are
``(d, h)``, the readout is ``(o, d)``. Piece files and data rows are read by :mod:`paramlens.reverse.pieces`
(any weights format; the target column named or ``pred``).

1. Pairing, from weights alone: ``C E`` of a block's own two pieces has a strongly signed trace (training
   keeps each block close to an isometry, which makes ``diag(C E)`` negative), while mismatched pairs give
   traces near zero. The pairs maximising ``sum |trace(C E)|`` are found with the Hungarian algorithm.
2. Ordering, from data: :func:`paramlens.reverse.block_order.order_blocks`.
3. Verification: the assembled network is run on every row in float64.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from paramlens.core.runs import Result
from paramlens.core.threads import one_thread
from paramlens.errors import ParamLensError
from paramlens.reverse.block_order import order_blocks
from paramlens.reverse.pieces import Piece, listed, load_pieces, load_rows
from paramlens.reverse.residual_blocks import Blocks


@dataclass
class Pairing:
    """Piece indices: ``blocks[k] = (expand, contract)``, ``final``; ``margin``: forbidding any one chosen pair
    lowers the best total ``sum |trace(C E)|`` by at least this fraction (near 0: an ambiguous pairing)."""

    blocks: list[tuple[int, int]]
    final: int
    margin: float


def pair_pieces(pieces: list[Piece]) -> Pairing:
    shapes = {tuple(p.weight.shape) for p in pieces}
    wide = [s for s in shapes if s[0] > s[1]]
    if len(wide) != 1:
        raise ParamLensError(f"expected one expand shape (h, d) with h > d among the pieces; shapes: {sorted(shapes)}")
    h, d = wide[0]
    expand = [i for i, p in enumerate(pieces) if tuple(p.weight.shape) == (h, d)]
    contract = [i for i, p in enumerate(pieces) if tuple(p.weight.shape) == (d, h)]
    final = [i for i, p in enumerate(pieces) if p.weight.shape[1] == d and p.weight.shape[0] != h]
    if len(expand) != len(contract) or len(final) != 1:
        raise ParamLensError(f"{len(expand)} expand {(h, d)}, {len(contract)} contract {(d, h)} and {len(final)} "
                             f"readout (o, {d}) pieces; a residual network needs equal counts and one readout")
    e = torch.stack([pieces[i].weight for i in expand])
    c = torch.stack([pieces[i].weight for i in contract])
    score = torch.einsum("ehd,cdh->ec", e, c).abs().numpy()  # |trace(C_c E_e)|
    if not np.isfinite(score).all():
        raise ParamLensError("pairing scores |trace(C E)| overflow float64: the piece weights are too large to pair")
    rows, cols = linear_sum_assignment(-score)
    total = score[rows, cols].sum()
    drops = []
    for r, k in zip(rows, cols):  # how much worse the best pairing gets when this pair is forbidden
        banned = score.copy()
        banned[r, k] = -1e30
        rr, cc = linear_sum_assignment(-banned)
        drops.append((total - banned[rr, cc].sum()) / total)
    return Pairing([(expand[r], contract[k]) for r, k in zip(rows, cols)], final[0], float(min(drops)))


def stack_blocks(pieces: list[Piece], pairing: Pairing) -> Blocks:
    """The paired pieces as :class:`Blocks` (block ``k`` = ``pairing.blocks[k]``), float64."""
    def stack(side: int, weight: bool) -> Tensor:
        return torch.stack([pieces[pair[side]].weight if weight else pieces[pair[side]].bias for pair in pairing.blocks])

    final = pieces[pairing.final]
    return Blocks(stack(0, True), stack(0, False), stack(1, True), stack(1, False), final.weight, final.bias)


@dataclass
class Reassembly(Result):
    """A re-assembled network.

    Attributes:
        pieces: piece file names. skipped: files of the folder that are not pieces. order: piece indices in
            network order ``[E_0, C_0, E_1, C_1, ..., readout]``. pairing_margin: see :class:`Pairing`.
        inputs, targets, unused_columns: the CSV columns read as inputs and as the network's outputs, and the
            columns not read; targets_chosen: how the targets were chosen (``named``, ``default`` or ``by position``).
        mse: mean squared error of the assembled network against the targets on all ``n_rows`` rows (float64);
            exact: at rounding level. seed: the starting order used.
        steps, orders_run: search work (steps kept, candidate orders run exactly; see
            :mod:`paramlens.reverse.block_order`). history: error after each step, per start. seconds: wall
            time, reading the files included.
    """

    kind = "reverse_reassemble"
    pieces: list[str]
    skipped: list[str]
    order: list[int]
    pairing_margin: float
    inputs: list[str]
    targets: list[str]
    unused_columns: list[str]
    targets_chosen: str
    mse: float
    exact: bool
    seed: str
    steps: int
    orders_run: int
    history: list[list[float]]
    n_rows: int
    seconds: float

    def _data_line(self) -> str:
        target = ", ".join(f"'{t}'" for t in self.targets)
        unused = f"; not used: {listed(self.unused_columns)}" if self.unused_columns else ""
        return f"data: target {target} ({self.targets_chosen}); inputs {listed(self.inputs)}{unused}"

    def summary(self) -> str:
        n = (len(self.order) - 1) // 2
        verdict = "exact: the given outputs are reproduced" if self.exact else "NOT exact: best order found"
        skipped = [f"not pieces (skipped): {listed(self.skipped)}"] if self.skipped else []
        hint = [] if self.exact or self.targets_chosen == "named" else [
            "if that column is not the network's own output, name the right one with --target-column"]
        return "\n".join([
            f"{len(self.pieces)} pieces -> {n} blocks + readout; pairing margin {self.pairing_margin:.1%}",
            *skipped,
            self._data_line(),
            f"order ({verdict}; MSE {self.mse:.3g} on {self.n_rows:,} rows):",
            " ".join(str(i) for i in self.order),
            f"search: {self.steps} steps from '{self.seed}', {self.orders_run:,} orders run; {self.seconds:.1f} s",
            *hint,
        ])

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        from paramlens.report import plots

        fig, (ax,) = plots.panels(1, 5, 3)
        for i, errors in enumerate(self.history):
            ax.semilogy(range(len(errors)), [max(v, 1e-16) for v in errors], marker=".", label=f"start {i + 1}")
        ax.legend()
        ax.set_xlabel("search step")
        ax.set_ylabel("MSE on search rows")
        ax.set_title("Re-assembly: error per step")
        return [plots.save(fig, folder / f"{prefix}reassemble_history.png", "Error of the best order after each search "
                           "step, per seed order searched from (log scale).")]


def reassemble(folder: str | Path, data: str | Path, *, target_column: list[str] | None = None,
               search_rows: int = 1024, progress: bool = True) -> Reassembly:
    """Pair, order and verify the pieces in ``folder`` against the rows in ``data`` (CSV); ``target_column``:
    the CSV columns holding the network's outputs (default: ``pred``; see :mod:`paramlens.reverse.pieces`).
    Runs on one thread (:func:`paramlens.core.threads.one_thread`: 48 blocks and 10,000 rows take 3.4 s with one
    other busy process on a 2-core machine, against 52 s with two threads)."""
    with one_thread():
        return _reassemble(folder, data, target_column, search_rows, progress)


def _reassemble(folder: str | Path, data: str | Path, target_column: list[str] | None, search_rows: int,
                progress: bool) -> Reassembly:
    start = time.perf_counter()
    pieces, skipped = load_pieces(folder)
    pairing = pair_pieces(pieces)
    e0, _ = pairing.blocks[0]
    x, y, cols = load_rows(data, pieces[e0].weight.shape[1], pieces[pairing.final].weight.shape[0], target_column)
    blocks = stack_blocks(pieces, pairing)
    report = (lambda k, mse: print(f"  step {k}: MSE {mse:.3g}", flush=True)) if progress else None
    found = order_blocks(blocks, x, y, search_rows=search_rows, progress=report)
    order = [i for b in found.order for i in pairing.blocks[b]] + [pairing.final]
    return Reassembly([p.name for p in pieces], skipped, order, pairing.margin, cols.inputs, cols.targets, cols.unused,
                      cols.chosen, found.mse, found.exact, found.seed, found.steps, found.orders_run, found.history,
                      len(x), time.perf_counter() - start)
