"""How a scan reads to a person: the summary lines, the per-layer table and the figures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from paramlens.report import plots
from paramlens.reverse.layer_stats import LayerStats, layer_stats
from paramlens.reverse.readout import Comparison
from paramlens.reverse.reference import N_MESSAGES, Checked

if TYPE_CHECKING:
    from paramlens.reverse.scan import Scan

PROBLEM = "non-finite / out of range"
SHOWN_CONSTANTS = 12


def stat_row(index: int, s: LayerStats, name: str, shape: tuple[int, ...] | None = None) -> dict:
    """One table row: a layer's (or tensor's) statistics."""
    return {"layer": index, "name": name, "shape": "x".join(map(str, shape or s.shape)), "kind": s.kind,
            "values": s.values if s.values is not None and len(s.values) <= 8 else None, "sparsity": s.sparsity,
            "fan-in (min/mean/max)": f"{s.fan_in[0]}/{s.fan_in[1]:.1f}/{s.fan_in[2]}",
            "fan-out (min/mean/max)": f"{s.fan_out[0]}/{s.fan_out[1]:.1f}/{s.fan_out[2]}",
            "bias values": s.bias_values if s.bias_values is not None and len(s.bias_values) <= 8 else None,
            PROBLEM: s.problem, "signatures": dict(list(s.signatures.items())[:8])}


def tensor_row(index: int, name: str, t: Tensor, role: str) -> dict:
    """One table row for a tensor outside any chain: its role by name, shape, kind, sparsity and scale."""
    s = layer_stats(t.reshape(t.shape[0], -1), None, (name, None))
    finite = t[t.isfinite()].double() if t.is_floating_point() else t.double()
    return {"layer": index, "name": name, "role": role, "shape": "x".join(map(str, t.shape)), "kind": s.kind,
            "values": s.values if s.values is not None and len(s.values) <= 8 else None, "sparsity": s.sparsity,
            "mean |w|": float(finite.abs().mean()) if finite.numel() else None,
            "max |w|": float(finite.abs().max()) if finite.numel() else None, PROBLEM: s.problem, "signatures": {}}


def table_rows(layers: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "signatures"} | {"top signatures": "; ".join(
        f"{s} x{c}" for s, c in list(row["signatures"].items())[:3])} for row in layers[:200]]


def comparison_lines(c: Comparison, checked: Checked | None) -> list[str]:
    """The equality test in words: how it is built, what it compares, and what the compared values are."""
    n, unit = len(c.probe_rows), {8: "bytes", 1: "bits"}.get(c.bits, f"{c.bits}-bit values")
    if c.constants is None:
        built = (f"all {n} activations of layer {c.layer} must be 1; each is a gate whose constant is folded in, "
                 "not stored apart")
    elif c.probe_layer == c.layer:
        built = (f"each of the {n} activations of layer {c.layer} is compared with a constant bit stored in the "
                 f"biases of layer {c.layer + 1} (+1|0 rows expect 1, -1|+1 rows expect 0)")
    else:
        built = (f"layer {c.layer + 1} holds {n} pairs ReLU(D - c), ReLU(c - D), each D one of {n} {unit} read from "
                 f"layer {c.layer} and c its constant, the negated bias")
    lines = [f"  = equality test: {built}"]
    packed = checked.digest if checked else c.packed()
    if packed is None and c.constants is None:
        return lines + ["  (the bits it tests are not read: no known function matched them)"]
    shown = packed.hex() if packed else ", ".join(map(str, c.constants))
    order = "" if c.bits == 8 or not packed else " (8 bits per byte, lowest first)"
    tested = f"{n} {unit} at layer {c.layer}" if c.constants is not None else f"{n} bits those gates test"
    lines.append(f"  output = 1 iff the {tested} equal {shown}{order}")
    if checked:
        lines.append(f"  checked on {N_MESSAGES} random messages: the {unit} compared are the output of "
                     f"{checked.function}, each its own output element; the constant is shown in that output's order")
    else:
        lines.append("  (in the stored order of their rows; not checked against a known function)")
    return lines


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


def _structure_lines(r: Scan) -> list[str]:
    if not r.n_repeats:
        return ["no repeating block found"]
    end = r.block_start + r.period * r.n_repeats - 1
    lines = [f"repeating block of {r.period} layers x {r.n_repeats} repeats from layer {r.block_start} (layers "
             + f"{r.block_start}..{end})"]
    for d in r.differing:
        lines.append(f"  block position {d['position']} varies in "
                     + ", ".join(f"{name} ({how})" for name, how in d["varies"].items()))
        lines += [f"    constants: {c}" for c in d["constants"]]
    if not r.differing:
        lines.append("  every block position is the same in every repeat")
    return lines


def summary_lines(r: Scan) -> list[str]:
    kinds = Counter(row["kind"] for row in r.layers)
    kind_text = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
    if r.architecture:
        roles = Counter(row.get("role", "other") for row in r.layers)
        return [f"{r.path}: {len(r.layers)} weight tensors, {r.n_params:,} parameters; {kind_text}; roles: "
                + ", ".join(f"{n} {k}" for k, n in roles.most_common()),
                "not one sequential chain: " + "; ".join(r.architecture),
                "per-tensor findings only: no repeating block, per-repeat constants or output test is claimed, since "
                + "these need layers that feed one another in order"] + _problem_lines(r.layers)
    lines = [f"{r.path}: {len(r.layers)} layers, {r.n_params:,} parameters; widths {r.widths[0]} -> ... -> "
             + f"{r.widths[-1]}; layers: {kind_text}"]
    if any(r.undone.values()):
        lines.append(f"read in canonical form: {r.undone['dead']:,} rows that are always 0 dropped, "
                     f"{r.undone['duplicates']:,} copies of rows merged, {r.undone['joined']:,} split constants joined")
    lines += _structure_lines(r)
    if r.constants:
        lines.append("constants in single layers:")
        lines += [f"  {c}" for c in r.constants[:SHOWN_CONSTANTS]]
        lines += [f"  ... and {len(r.constants) - SHOWN_CONSTANTS} more"] if len(r.constants) > SHOWN_CONSTANTS else []
    lines += _problem_lines(r.layers) + r.output
    if r.constant is not None:
        lines.append(f"  constant (low bit = lowest source row): {r.constant}")
    if r.constant_matches:
        lines.append("  constant looks like: " + ", ".join(r.constant_matches))
    return lines + [f"note: {n}" for n in r.notes]


def figures(r: Scan, folder: Path, prefix: str) -> list[tuple[str, str]]:
    figs = []
    if r.widths:
        figs.append((plots.curves(folder / f"{prefix}widths.png", {"width": list(enumerate(r.widths))},
                                  "layer width vs depth", "width", log=False, xlabel="layer"),
                     "output width of every layer (0: input)"))
    labels = list(r.value_counts)
    if labels:
        figs.append((plots.bars(folder / f"{prefix}values.png", torch.tensor([float(r.value_counts[k]) for k in labels]),
                                "weight values: " + ", ".join(labels[:12]), "value", "count"),
                     "how often each weight value occurs, over all layers"))
    if r.similarity.numel():
        figs.append((plots.heatmap(folder / f"{prefix}similarity.png", r.similarity.float(),
                                   "layer self-similarity", "layer", "layer", value_range=(0.0, 1.0)),
                     "1 where two layers share their common row kinds (diagonal bands: repeats)"))
    return figs
