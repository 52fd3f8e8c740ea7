"""``paramlens reverse scan``: describe an undocumented network from its weights alone.

Streams the layer chain one layer at a time (memory: one layer), and reports per-layer statistics, the
repeating structure and where repeats differ, what the last layers test, and constants that match known
tables. See :mod:`paramlens.reverse.structure` for the readings. Layers holding NaN or infinities are of
kind ``non-finite``, named in the summary with how many of each value their tensors hold.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

from paramlens.core.progress import track
from paramlens.core.runs import Result
from paramlens.report import plots
from paramlens.reverse.chain import TensorStore, find_chain, iter_layers
from paramlens.reverse.layer_stats import LayerStats, layer_stats
from paramlens.reverse.structure import Row, differing_positions, find_period, read_output

MAX_ROWS_READ = 4096


def _rows(W: Tensor, b: Tensor | None) -> list[Row]:
    Wi = W.round().long()
    bi = b.round().long() if b is not None else torch.zeros(len(W), dtype=torch.long)
    return [({int(j): int(Wi[r, j]) for j in Wi[r].nonzero().flatten()}, int(bi[r])) for r in range(len(Wi))]


@dataclasses.dataclass
class Scan(Result):
    """A network described from its weights.

    Attributes:
        path: the scanned file. notes: what did not fit the chain.
        widths: ``[d_in, d_1, ..., d_L]``. layers: per-layer rows (shape, kind, sparsity, fan-in/out,
            top row signatures, bias values). n_params: total.
        period, block_start, n_repeats: the repeating block (0: none). differing: block positions whose
            rows change between repeats, with the constants found there.
        output: the last layer read backwards; constant: the bits it compares with (hex), and matches.
        value_counts: how often each weight value occurs (integer networks; ``{"real": n}`` otherwise).
        similarity: ``(n, n)`` 1 where two layers have the same key (sizes, kind, row types), for the figure.
    """

    kind = "reverse_scan"
    path: str
    notes: list[str]
    widths: list[int]
    layers: list[dict]
    n_params: int
    period: int
    block_start: int
    n_repeats: int
    differing: list[dict]
    output: list[str]
    constant: str | None
    constant_matches: list[str]
    value_counts: dict[str, int]
    similarity: Tensor

    def summary(self) -> str:
        kinds = Counter(row["kind"] for row in self.layers)
        lines = [f"{self.path}: {len(self.layers)} layers, {self.n_params:,} parameters; widths "
                 f"{self.widths[0]} -> ... -> {self.widths[-1]}; layers: "
                 + ", ".join(f"{n} {k}" for k, n in kinds.most_common())]
        if self.n_repeats:
            lines.append(f"repeating block of {self.period} layers x {self.n_repeats} repeats from layer "
                         f"{self.block_start}")
            for d in self.differing:
                lines.append(f"  block position {d['position']} differs between repeats"
                             + (": " + "; ".join(d["constants"]) if d["constants"] else ""))
        else:
            lines.append("no repeating block found")
        lines += _problem_lines(self.layers)
        lines += self.output
        if self.constant_matches:
            lines.append("  constant looks like: " + ", ".join(self.constant_matches))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def table(self) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "signatures"} | {"top signatures": "; ".join(
            f"{s} x{c}" for s, c in list(row["signatures"].items())[:3])} for row in self.layers[:200]]

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        folder = Path(folder)
        depth = list(enumerate(self.widths))
        figs = [(plots.curves(folder / f"{prefix}widths.png", {"width": depth}, "layer width vs depth", "width",
                              log=False, xlabel="layer"), "output width of every layer (0: input)")]
        labels = list(self.value_counts)
        figs.append((plots.bars(folder / f"{prefix}values.png", torch.tensor([float(self.value_counts[k]) for k in labels]),
                                "weight values: " + ", ".join(labels[:12]), "value", "count"),
                     "how often each weight value occurs, over all layers"))
        figs.append((plots.heatmap(folder / f"{prefix}similarity.png", self.similarity.float(),
                                   "layer self-similarity", "layer", "layer", value_range=(0.0, 1.0)),
                     "1 where two layers have the same sizes, value kind and row types (diagonal bands: repeats)"))
        return figs


PROBLEM = "non-finite / out of range"


def _problem_lines(rows: list[dict]) -> list[str]:
    """One line per layer with NaN, infinities or values beyond ±2^31, saying what they are and where."""
    lines = []
    for row in rows:
        if not row.get(PROBLEM):
            continue
        if row["kind"] == "non-finite":
            lines.append(f"non-finite values in layer {row['layer']}: {row[PROBLEM]}; its statistics use its "
                         "finite values only")
        else:
            lines.append(f"out-of-range values in layer {row['layer']}: {row[PROBLEM]}; not read as integers")
    return lines


def _row(index: int, s: LayerStats, name: str) -> dict:
    return {"layer": index, "name": name, "shape": f"{s.shape[0]}x{s.shape[1]}", "kind": s.kind,
            "values": s.values if s.values is not None and len(s.values) <= 8 else None, "sparsity": s.sparsity,
            "fan-in (min/mean/max)": f"{s.fan_in[0]}/{s.fan_in[1]:.1f}/{s.fan_in[2]}",
            "fan-out (min/mean/max)": f"{s.fan_out[0]}/{s.fan_out[1]:.1f}/{s.fan_out[2]}",
            "bias values": s.bias_values if s.bias_values is not None and len(s.bias_values) <= 8 else None,
            PROBLEM: s.problem, "signatures": dict(list(s.signatures.items())[:8])}


def scan(path: str | Path, progress: bool = True, max_similarity: int = 400) -> Scan:
    """Scan the checkpoint at ``path`` (safetensors, or a torch archive read without running its code).

    Runs on one thread: each layer's work is a few small tensor operations, for which thread start-up
    costs more than it saves (about 50x on a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _scan(path, progress, max_similarity)
    finally:
        torch.set_num_threads(threads)


def _count_values(values: Counter, s: LayerStats, W: Tensor) -> None:
    """Add one layer's weights to the value histogram: integer values one by one when there are few,
    else as ``other integers``, ``real`` or ``non-finite``."""
    if s.value_counts is not None and len(s.value_counts) <= 64:
        values.update({str(v): c for v, c in s.value_counts.items()})
        return
    bad = int((~W.isfinite()).sum()) if W.is_floating_point() else 0
    if bad:
        values["non-finite"] += bad
    values["real" if not s.integer else "other integers"] += W.numel() - bad


def _scan(path: str | Path, progress: bool, max_similarity: int) -> Scan:
    store = TensorStore(path)
    layers, notes = find_chain(store)
    stats: list[LayerStats] = []
    rows, values = [], Counter()
    last_two: list[tuple[Tensor, Tensor | None]] = []
    items = iter_layers(store, layers)
    if progress:
        items = track(items, total=len(layers), description="scanning layers", transient=True)
    for ref, W, b in items:
        s = layer_stats(W, b, (ref.weight, ref.bias))
        stats.append(s)
        rows.append(_row(ref.index, s, ref.weight))
        _count_values(values, s, W)
        last_two = (last_two + [(W, b)])[-2:]
    period = find_period([s.key() for s in stats])
    differing = differing_positions(stats, period) if period.n_repeats else []
    (W_last, b_last) = last_two[-1]
    before = last_two[0] if len(last_two) == 2 and stats[-2].integer else None
    last_rows = _rows(W_last, b_last) if stats[-1].integer and len(W_last) <= MAX_ROWS_READ else []
    before_row = (lambda j: _rows(before[0][j:j + 1], None if before[1] is None else before[1][j:j + 1])[0]) \
        if before is not None else None
    reading = read_output(stats[-1], last_rows, before_row)
    keys = [s.key() for s in stats]
    step = max(1, -(-len(keys) // max_similarity))
    shown = keys[::step]
    sim = torch.tensor([[float(a == b) for b in shown] for a in shown])
    return Scan(
        path=str(path), notes=notes, widths=[layers[0].shape[1]] + [r.shape[0] for r in layers], layers=rows,
        n_params=sum(r.shape[0] * r.shape[1] + (r.shape[0] if r.bias else 0) for r in layers),
        period=period.period, block_start=period.start, n_repeats=period.n_repeats,
        differing=[dataclasses.asdict(d) for d in differing], output=reading.description, constant=reading.constant_hex,
        constant_matches=reading.constant_matches, value_counts=dict(values.most_common()), similarity=sim)
