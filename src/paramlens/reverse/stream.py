"""One pass over a layer chain, one stored layer in memory at a time, collecting what the scan reads.

Per layer: statistics of the stored tensors (:mod:`paramlens.reverse.layer_stats`); for integer layers also the
canonical form (:mod:`paramlens.reverse.canonical`), its fingerprint, the constants it offers the search, and
the significance of its constants (followed into the layers after it). The last three canonical layers are
kept for the output reading.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from paramlens.reverse.canonical import Canonical, Canonicalizer
from paramlens.reverse.chain import LayerRef, TensorStore, iter_layers
from paramlens.reverse.constant_search import LayerConstants
from paramlens.reverse.fingerprint import Fingerprint, fingerprint, real_fingerprint
from paramlens.reverse.layer_stats import LayerStats, entries, layer_stats
from paramlens.reverse.significance import SignificanceTracer

WEIGHTLESS, COPY_NOT = "weightless rows", "copy/NOT rows"


@dataclass
class Streamed:
    """What one pass collected: per layer ``stats``, ``prints`` and ``constants``; ``values``: the weight value
    histogram; ``tail``: the canonical forms of the last layers (None where a layer is not integer);
    ``undone``: rows dropped as dead, merged as duplicates, constants joined."""

    stats: list[LayerStats] = field(default_factory=list)
    prints: list[Fingerprint] = field(default_factory=list)
    constants: list[LayerConstants] = field(default_factory=list)
    values: Counter = field(default_factory=Counter)
    tail: list[Canonical | None] = field(default_factory=list)
    undone: Counter = field(default_factory=Counter)


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


def _layer_constants(c: Canonical, s: LayerStats) -> LayerConstants:
    """The bit vectors (stored row order) and biases one canonical layer offers the constant search."""
    bits = {}
    constant = c.weightless & ((c.b == 0) | (c.b == 1))
    if constant.any():
        bits[WEIGHTLESS] = c.b[constant].numpy().astype(np.uint8)
    if s.constant_bits:
        bits[COPY_NOT] = np.array(s.constant_bits, dtype=np.uint8)
    return LayerConstants(bits, c.b.numpy().copy())


class ChainStream:
    """Feed the stored layers in order to :meth:`add`; the result is :attr:`out`."""

    def __init__(self) -> None:
        self.out = Streamed()
        self._canonical = Canonicalizer()
        self._tracer = SignificanceTracer()
        self._shapes: Tensor | None = None
        self._before: Canonical | None = None

    def add(self, ref: LayerRef, W: Tensor, b: Tensor | None) -> LayerStats:
        found = entries(W)
        s = layer_stats(W, b, (ref.weight, ref.bias), found)
        out = self.out
        out.stats.append(s)
        _count_values(out.values, s, W)
        c = None
        if s.integer and W.numel():
            rows, cols = W.nonzero(as_tuple=True) if found is None else found[:2]
            vals = W[rows, cols] if found is None else found[2]
            bias = b if b is not None else torch.zeros(W.shape[0], dtype=torch.int64)
            c = self._canonical.step(rows, cols, vals, bias, W.shape[1])
            out.undone.update(dead=c.dead, duplicates=c.duplicates, joined=c.paired)
            fp, self._shapes = fingerprint(c, tuple(W.shape), self._shapes)
            self._tracer.step(ref.index, self._before, c)
            out.constants.append(_layer_constants(c, s))
        else:
            self._canonical.reset()
            self._tracer.reset()
            self._shapes = None
            fp = real_fingerprint(tuple(W.shape), s.kind)
            out.constants.append(LayerConstants())
        out.prints.append(fp)
        out.tail = (out.tail + [c])[-3:]
        self._before = c
        return s

    def finish(self) -> Streamed:
        """Attach each layer's significance word to its constants."""
        for layer, word in self._tracer.words().items():
            self.out.constants[layer].word = word
        return self.out


def stream(store: TensorStore, layers: list[LayerRef], track=None) -> Streamed:
    """One pass over ``layers`` (``track``: wraps the layer iterator, e.g. a progress bar)."""
    chain = ChainStream()
    items = iter_layers(store, layers)
    for ref, W, b in (track(items) if track else items):
        chain.add(ref, W, b)
    return chain.finish()
