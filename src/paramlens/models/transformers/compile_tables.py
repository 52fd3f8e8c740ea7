"""MLP lookup tables for ``Map`` and ``SequenceMap``, in the units of a :class:`Layout`.

- categorical -> categorical (or numerical): one neuron per input value ``v``, ``relu(x_v)``, writing the
  one-hot of ``fn(v)`` (or the number ``fn(v)``);
- ``SequenceMap``: one neuron per pair ``(a, b)``, ``relu(x_a + y_b - 1)``, writing the one-hot of ``fn(a, b)``;
- numerical -> categorical: per input value ``v`` four neurons form a trapezoid that is 1 within ``gap / 4``
  of ``v`` and 0 beyond ``gap / 2`` (``gap``: the smallest spacing of the input values and 0), writing the
  one-hot of ``fn(v)``; a large negative weight from ``bos`` silences them at the BOS position.

Every table writes nothing (zero) where its input is zero, so a missing value stays missing; values the map
sends to ``None`` get no neuron.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from paramlens.errors import ParamLensError
from paramlens.models.transformers.layout import Layout, Space


@dataclass
class MLPWeights:
    """One table: ``W_in`` ``(n_neurons, d_model)``, ``W_out`` ``(d_model, n_neurons)``."""

    W_in: Tensor
    W_out: Tensor


def _write(W_out: Tensor, j: int, out: Space, value: Any, weight: float = 1.0) -> None:
    """Neuron ``j`` writes ``value`` into ``out`` (its one-hot, or the number for a numerical ``out``)."""
    if out.numerical:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParamLensError(f"numerical Map {out.name!r} gives {value!r}; it must give finite numbers")
        W_out[out.start, j] += weight * float(value)
    else:
        W_out[out.dim(value), j] += weight


def categorical_map(fn: Callable[[Any], Any], source: Space, out: Space, layout: Layout) -> MLPWeights:
    """``out = fn(source)`` for a categorical ``source``: one neuron per value with ``fn(value)`` not ``None``."""
    table = [(v, fn(v)) for v in source.values]
    table = [(v, y) for v, y in table if y is not None and not (out.numerical and y == 0)]
    W_in, W_out = torch.zeros(len(table), layout.d_model), torch.zeros(layout.d_model, len(table))
    for j, (v, y) in enumerate(table):
        W_in[j, source.dim(v)] = 1.0
        _write(W_out, j, out, y)
    return MLPWeights(W_in, W_out)


def sequence_map(fn: Callable[[Any, Any], Any], first: Space, second: Space, out: Space,
                 layout: Layout) -> MLPWeights:
    """``out = fn(first, second)``: one neuron ``relu(x_a + y_b - 1)`` per pair with a value."""
    if first.numerical or second.numerical or out.numerical:
        raise ParamLensError(f"SequenceMap {out.name!r} reads or writes a numerical SOp; it maps categorical "
                             "SOps to a categorical SOp")
    table = [(a, b, fn(a, b)) for a in first.values for b in second.values]
    table = [row for row in table if row[2] is not None]
    W_in, W_out = torch.zeros(len(table), layout.d_model), torch.zeros(layout.d_model, len(table))
    for j, (a, b, y) in enumerate(table):
        W_in[j, first.dim(a)] += 1.0
        W_in[j, second.dim(b)] += 1.0
        W_in[j, layout["one"].start] = -1.0
        _write(W_out, j, out, y)
    return MLPWeights(W_in, W_out)


def numerical_map(fn: Callable[[Any], Any], source: Space, out: Space, layout: Layout) -> MLPWeights:
    """``out = fn(source)`` for a numerical ``source`` whose values are ``source.values``: four neurons per value
    (a trapezoid ``t(x) = relu(a) - relu(a - 1) - relu(b) + relu(b - 1)``, ``a = L (x - v + gap / 2)``,
    ``b = L (x - v - gap / 4)``, ``L = 4 / gap``)."""
    if out.numerical:
        raise ParamLensError(f"Map {out.name!r} maps a numerical SOp to a numerical one; only numerical -> "
                             "categorical maps compile")
    points = sorted({float(v) for v in source.values} | {0.0})
    gap = min((b - a for a, b in itertools.pairwise(points)), default=1.0)
    L = 4.0 / gap
    silence = L * (2 * max(1.0, *(abs(p) for p in points)) + gap) + 2.0
    table = [(float(v), fn(v)) for v in source.values]
    table = [(v, y) for v, y in table if y is not None]
    W_in, W_out = torch.zeros(4 * len(table), layout.d_model), torch.zeros(layout.d_model, 4 * len(table))
    one, bos = layout["one"].start, layout["bos"].start
    for j, (v, y) in enumerate(table):
        offsets = (-v + gap / 2, -v + gap / 2 - 1 / L, -v - gap / 4, -v - gap / 4 - 1 / L)
        for n, (offset, sign) in enumerate(zip(offsets, (1.0, -1.0, -1.0, 1.0))):
            row = 4 * j + n
            W_in[row, source.start], W_in[row, one], W_in[row, bos] = L, L * offset, -silence
            _write(W_out, row, out, y, sign)
    return MLPWeights(W_in, W_out)
