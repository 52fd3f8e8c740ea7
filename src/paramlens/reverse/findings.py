"""What a scan finds: for one sequential chain (structure, constants, the output test), or, when the matrices
do not form one, per tensor. Each returns the fields of :class:`~paramlens.reverse.scan.Scan` but its path and
notes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import torch

from paramlens.reverse.chain import LayerRef, TensorStore, natural_key
from paramlens.reverse.constant_search import layer_constants, repeat_constants
from paramlens.reverse.constants import RepeatMatch, describe_value, match_sequence
from paramlens.reverse.readout import Comparison, read_output
from paramlens.reverse.reference import Checked, check, hypotheses
from paramlens.reverse.scan_text import comparison_lines, stat_row, tensor_row
from paramlens.reverse.sequential import non_sequential, role
from paramlens.reverse.stream import Streamed, stream
from paramlens.reverse.structure import Period, find_period, varying_positions

Bar = Callable[[Iterable, int], Iterable] | None
NO_CHAIN = {"widths": [], "undone": {}, "period": 0, "block_start": 0, "n_repeats": 0, "differing": [], "constants": [],
            "output": [], "compared_layer": None, "compared": None, "checked": None, "constant": None,
            "constant_matches": []}


def tensor_findings(store: TensorStore, layers: list[LayerRef], notes: list[str], bar: Bar) -> dict[str, Any] | None:
    """Per-tensor rows when the checkpoint is not one sequential chain (None when it may be one)."""
    reasons = non_sequential(store.shapes, layers, notes)
    if not reasons:
        return None
    names = sorted((n for n, s in store.shapes.items() if len(s) >= 2 and math.prod(s)), key=natural_key)
    rows, values = [], Counter()
    for i, name in enumerate(bar(names, len(names)) if bar else names):
        t = store.get(name)
        if t.dtype != torch.bool and not t.is_complex():
            rows.append(tensor_row(i, name, t, role(name)))
            values["real" if rows[-1]["kind"] not in ("binary", "ternary", "integer") else "integer"] += t.numel()
    return NO_CHAIN | {"architecture": reasons, "layers": rows, "value_counts": dict(values),
                       "n_params": sum(math.prod(s) for s in store.shapes.values()), "similarity": torch.zeros(0, 0)}


def _repeat_findings(streamed: Streamed, period: Period) -> tuple[list[dict], list[RepeatMatch], set[int]]:
    """The varying block positions with their per-repeat constants, the matches, and the layers they explain."""
    varying = varying_positions(streamed.prints, period) if period.n_repeats else []
    matches, explained = [], set()
    for v in varying:
        found = repeat_constants([streamed.constants[i] for i in v.layers])
        v.constants = [line for line, _ in found]
        matches += [m for _, m in found]
        explained |= set(v.layers) if found else set()
    return [vars(v) for v in varying], matches, explained


def _output(streamed: Streamed, store: TensorStore, layers: list[LayerRef],
            matches: list[RepeatMatch]) -> tuple[list[str], Comparison | None, Checked | None]:
    """The output layer read backwards, its equality test, and the known function it was checked to be."""
    tail = streamed.tail
    if tail[-1] is None:
        s = streamed.stats[-1]
        line = f"linear readout of {s.shape[1]} activations into {s.shape[0]} outputs ({s.problem or 'real-valued weights'})"
        return [line], None, None
    integer_tail = tail[next((i for i in range(len(tail) - 1, -1, -1) if tail[i] is None), -1) + 1:]
    lines, comparison = read_output(integer_tail, len(layers) - 1)
    checked = check(store, layers, comparison, hypotheses(matches, comparison)) if comparison else None
    return lines + (comparison_lines(comparison, checked) if comparison else []), comparison, checked


def _and_constant(comparison: Comparison | None, checked: Checked | None) -> tuple[str | None, list[str]]:
    """An AND test's constant bits as one number (lowest bit first) in hex, and what the number looks like."""
    if comparison is None or comparison.probe_layer != comparison.layer or (comparison.constants or checked) is None:
        return None, []
    width = len(comparison.probe_rows)
    value = sum(bit << k for k, bit in enumerate(comparison.constants)) if comparison.constants is not None \
        else int.from_bytes(checked.digest, "little")
    matches = describe_value(value, width) + (match_sequence([value], 32) if width == 32 else [])
    return f"0x{value:0{(width + 3) // 4}x}", matches


def chain_findings(store: TensorStore, layers: list[LayerRef], notes: list[str], bar: Bar,
                   max_similarity: int) -> dict[str, Any]:
    """Structure, constants and the output test of one sequential chain."""
    streamed = stream(store, layers, (lambda items: bar(items, len(layers))) if bar else None)
    keys = [p.key() for p in streamed.prints]
    period = find_period(keys)
    differing, matches, explained = _repeat_findings(streamed, period)
    constants = [line for i, c in enumerate(streamed.constants) if i not in explained for line in layer_constants(i, c)]
    output, comparison, checked = _output(streamed, store, layers, matches)
    digest = checked.digest if checked else comparison.packed() if comparison else None
    constant, constant_matches = _and_constant(comparison, checked)
    shown = keys[::max(1, -(-len(keys) // max_similarity))]
    return {
        "architecture": [], "widths": [layers[0].shape[1]] + [r.shape[0] for r in layers],
        "layers": [stat_row(r.index, s, r.weight) for r, s in zip(layers, streamed.stats)],
        "n_params": sum(r.shape[0] * r.shape[1] + (r.shape[0] if r.bias else 0) for r in layers),
        "undone": dict(streamed.undone), "period": period.period, "block_start": period.start,
        "n_repeats": period.n_repeats, "differing": differing, "constants": constants, "output": output,
        "compared_layer": comparison.layer if comparison else None, "compared": digest.hex() if digest else None,
        "checked": checked.function if checked else None, "constant": constant, "constant_matches": constant_matches,
        "value_counts": dict(streamed.values.most_common()),
        "similarity": torch.tensor([[float(a == b) for b in shown] for a in shown])}

