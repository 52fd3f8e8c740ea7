"""Put a residual network cut into shuffled pieces back together.

The pieces are linear layers (one weight and one bias each) of ``x <- x + C ReLU(E x + e) + c`` blocks
and a final readout ``y = F x + f``. Expand pieces ``E`` are ``(h, d)``, contract pieces ``C`` are
``(d, h)``, the readout is ``(o, d)``.

1. Pairing, from weights alone: ``C E`` of a block's own two pieces has a strongly signed trace (training
   keeps each block close to an isometry, which makes ``diag(C E)`` negative), while mismatched pairs give
   traces near zero. The pairs maximising ``sum |trace(C E)|`` are found with the Hungarian algorithm.
2. Ordering, from data: :func:`paramlens.reverse.block_order.order_blocks`.
3. Verification: the assembled network is run on every row in float64.

Pieces and data rows must hold finite numbers within float32's range (the search runs in float32); a NaN,
an infinity or a larger value is refused, naming the piece file and tensor or the CSV row and column.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from paramlens.core.loading import regular_file
from paramlens.core.runs import Result
from paramlens.errors import ParamLensError
from paramlens.reverse.block_order import Blocks, order_blocks
from paramlens.reverse.chain import TensorStore, natural_key
from paramlens.reverse.values import nonfinite_counts

PIECE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
USABLE = "finite numbers within float32's range (±3.4e38; the search runs in float32)"


def _unusable(t: Tensor) -> str | None:
    """How many NaN, infinities and values beyond float32's range ``t`` holds, in words (None: none)."""
    parts = [f"{n} {k}" for k, n in nonfinite_counts(t).items()]
    big = int((t.isfinite() & (t.abs() > FLOAT32_MAX)).sum())
    if big:
        parts.append(f"{big} value{'s' if big > 1 else ''} beyond float32's range")
    return ", ".join(parts) or None


@dataclass
class Piece:
    name: str
    weight: Tensor
    bias: Tensor


def load_pieces(folder: str | Path) -> list[Piece]:
    """Every piece file in ``folder`` (natural name order); each must hold one 2-d weight and one 1-d bias.
    Torch archives are read without running pickled code."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ParamLensError(f"{folder}: not a folder of pieces")
    files = sorted((p for p in folder.iterdir() if p.suffix in PIECE_SUFFIXES), key=lambda p: natural_key(p.name))
    if not files:
        raise ParamLensError(f"{folder}: no piece files ({', '.join(PIECE_SUFFIXES)})")
    pieces = []
    for path in files:
        store = TensorStore(path)
        mats = [k for k, s in store.shapes.items() if len(s) == 2]
        vecs = [k for k, s in store.shapes.items() if len(s) == 1]
        if len(mats) != 1 or len(vecs) != 1 or store.shapes[vecs[0]][0] != store.shapes[mats[0]][0]:
            raise ParamLensError(f"{path}: a piece must hold one weight (out, in) and one bias (out,); found "
                                 f"{ {k: list(s) for k, s in store.shapes.items()} }")
        weight, bias = store.get(mats[0]).double(), store.get(vecs[0]).double()
        for name, t in ((mats[0], weight), (vecs[0], bias)):
            if (problem := _unusable(t)) is not None:
                raise ParamLensError(f"{path}: tensor '{name}' holds {problem}; pieces must hold {USABLE}")
        pieces.append(Piece(path.stem, weight, bias))
    return pieces


def load_rows(path: str | Path, d_in: int, d_out: int) -> tuple[Tensor, Tensor]:
    """Inputs ``(R, d_in)`` and outputs ``(R, d_out)`` from a CSV with a header: inputs are the first
    ``d_in`` columns; outputs are the columns named ``y``/``pred``... if there are exactly ``d_out`` of them,
    else the ``d_out`` columns after the inputs."""
    path = regular_file(path)
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]  # blank lines are not rows
    if len(rows) < 2:
        raise ParamLensError(f"{path}: needs a header and at least one row")
    header, body = rows[0], rows[1:]
    if len(header) < d_in + d_out:
        raise ParamLensError(f"{path}: {len(header)} columns; the pieces need {d_in} inputs and {d_out} outputs")
    named = [i for i, h in enumerate(header) if h.strip().lower().startswith(("y", "pred", "out"))]
    out_cols = named if len(named) == d_out else list(range(d_in, d_in + d_out))
    try:
        values = np.array([[float(r[i]) for i in range(d_in)] + [float(r[i]) for i in out_cols] for r in body])
    except (ValueError, IndexError) as e:
        raise ParamLensError(f"{path}: a row is short or not numeric ({e})") from None
    _refuse_unusable_rows(path, values, body, header, list(range(d_in)) + out_cols)
    t = torch.from_numpy(values)
    return t[:, :d_in].contiguous(), t[:, d_in:].contiguous()


def _refuse_unusable_rows(path: Path, values: np.ndarray, body: list[list[str]], header: list[str],
                          cols: list[int]) -> None:
    """Raise naming the first data row and column whose value is NaN, infinite or beyond float32's range."""
    bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise ParamLensError(f"{path}: data row {r + 1} (line {r + 2}), column '{header[cols[c]]}' holds "
                             f"{body[r][cols[c]].strip()!r}; data values must be {USABLE}")


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
        pieces: piece names. order: piece indices in network order ``[E_0, C_0, E_1, C_1, ..., readout]``.
        pairing_margin: see :class:`Pairing`. mse: mean squared error of the assembled network against the
            given outputs on all rows (float64); exact: at rounding level. seed: the starting order used.
        rounds, candidates_scored, candidates_run: search work (orders scored by the first-order model, and
            run exactly). history: error after each round, per start. seconds: wall time.
    """

    kind = "reverse_reassemble"
    pieces: list[str]
    order: list[int]
    pairing_margin: float
    mse: float
    exact: bool
    seed: str
    rounds: int
    candidates_scored: int
    candidates_run: int
    history: list[list[float]]
    n_rows: int
    seconds: float

    def summary(self) -> str:
        n = (len(self.order) - 1) // 2
        verdict = "exact: the given outputs are reproduced" if self.exact else "NOT exact: best order found"
        return "\n".join([
            f"{len(self.pieces)} pieces -> {n} blocks + readout; pairing margin {self.pairing_margin:.1%}",
            f"order ({verdict}; MSE {self.mse:.3g} on {self.n_rows} rows):",
            " ".join(str(i) for i in self.order),
            f"search: {self.rounds} rounds from '{self.seed}', {self.candidates_scored:,} candidate orders scored, "
            f"{self.candidates_run:,} run exactly, {self.seconds:.1f} s",
        ])

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        from paramlens.report import plots

        fig, (ax,) = plots.panels(1, 5, 3)
        for i, errors in enumerate(self.history):
            ax.semilogy(range(len(errors)), [max(v, 1e-16) for v in errors], marker=".", label=f"start {i + 1}")
        ax.legend()
        ax.set_xlabel("search round")
        ax.set_ylabel("MSE on search rows")
        ax.set_title("Re-assembly: error per round")
        return [plots.save(fig, folder / f"{prefix}reassemble_history.png", "Error of the best order after each search "
                           "round, per seed order searched from (log scale).")]


def reassemble(folder: str | Path, data: str | Path, *, search_rows: int = 256, progress: bool = True) -> Reassembly:
    """Pair, order and verify the pieces in ``folder`` against the rows in ``data`` (CSV)."""
    start = time.perf_counter()
    pieces = load_pieces(folder)
    pairing = pair_pieces(pieces)
    e0, _ = pairing.blocks[0]
    x, y = load_rows(data, pieces[e0].weight.shape[1], pieces[pairing.final].weight.shape[0])
    blocks = stack_blocks(pieces, pairing)
    report = (lambda k, mse: print(f"  round {k}: MSE {mse:.3g}", flush=True)) if progress else None
    found = order_blocks(blocks, x, y, search_rows=search_rows, progress=report)
    order = [i for b in found.order for i in pairing.blocks[b]] + [pairing.final]
    work = found.work
    return Reassembly([p.name for p in pieces], order, pairing.margin, found.mse, found.exact, found.seed,
                      work.rounds, work.candidates_scored, work.candidates_run, found.history, len(x),
                      time.perf_counter() - start)
