"""The bit significance of each constant (a weightless row) from how later layers read it, so that a group
of constants reads as a word whatever the order of its rows.

In an integer adder, bit ``i`` of a block is read with weight ``2^i`` by the block's threshold rows, and the
later blocks' bits ride on rows that pass their sum on unchanged (weight +1, bias 0) until the layer that adds
their block. So a constant is followed forward through such pass rows: ``h`` passes, then read with one
weight ``2^i`` by every reader, means significance ``h B + i`` (``B``, the bits a layer adds, is the highest
``i`` read without a pass plus one). A constant read in any other way has no significance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from paramlens.reverse.canonical import Canonical

MAX_HOPS = 64
MAX_FOLLOWED = 1 << 14


@dataclass
class Origin:
    """A constant: its layer, canonical row and bias; ``seen``: the ``(passes, weight)`` it was read with."""

    layer: int
    row: int
    bias: int
    seen: set[tuple[int, int]] = field(default_factory=set)


def _readings(sub: Tensor, bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per followed column of ``sub`` (reads by the next layer): passed on (every reader a pass row), the one
    weight every reader uses (0 when they differ), and read at all."""
    nonzero = sub != 0
    read = nonzero.any(0)
    passed = read & (~nonzero | ((sub == 1) & (bias == 0)[:, None])).all(0)
    top = sub.max(0).values
    uniform = (~nonzero | (sub == top)).all(0)
    return passed, torch.where(uniform, top, torch.zeros_like(top)), read


class SignificanceTracer:
    """Feed canonical layers in order (:meth:`step`); :meth:`words` then reads each layer's constants."""

    def __init__(self) -> None:
        self.origins: list[Origin] = []
        self._rows = torch.zeros(0, dtype=torch.long)  # followed rows of the newest layer
        self._of = torch.zeros(0, dtype=torch.long)  # their origins
        self._hops = torch.zeros(0, dtype=torch.long)

    def reset(self) -> None:
        """A layer that is not integer: nothing is followed across it."""
        self._rows, self._of, self._hops = (torch.zeros(0, dtype=torch.long),) * 3

    def step(self, index: int, before: Canonical | None, layer: Canonical) -> None:
        """Follow the constants of ``before`` (layer ``index - 1``) and the rows followed so far into ``layer``."""
        if before is not None:
            constants = (before.weightless & (before.b >= 0)).nonzero().flatten()
            first = len(self.origins)
            self.origins += [Origin(index - 1, int(r), int(before.b[r])) for r in constants]
            self._rows = torch.cat([self._rows, constants])
            self._of = torch.cat([self._of, torch.arange(first, len(self.origins))])
            self._hops = torch.cat([self._hops, torch.zeros(len(constants), dtype=torch.long)])
        if not len(self._rows):
            return
        sub = layer.columns(self._rows)
        passed, weight, read = _readings(sub, layer.b)
        for o, h, w in zip(self._of[read & ~passed].tolist(), self._hops[read & ~passed].tolist(),
                           weight[read & ~passed].tolist()):
            self.origins[o].seen.add((h, w))
        readers, column = sub[:, passed].nonzero(as_tuple=True)
        keep = self._hops[passed][column] < MAX_HOPS
        self._rows = readers[keep][-MAX_FOLLOWED:]
        self._of = self._of[passed][column][keep][-MAX_FOLLOWED:]
        self._hops = self._hops[passed][column][keep][-MAX_FOLLOWED:] + 1

    def words(self) -> dict[int, tuple[int, int]]:
        """Per layer whose every non-zero constant that is read has a significance: ``(value, bits)``, the
        constants summed at their significance as an 8/16/32/64-bit word (an unread constant adds nothing)."""
        groups: dict[int, list[Origin]] = {}
        for o in self.origins:
            groups.setdefault(o.layer, []).append(o)
        out = {}
        for layer, group in groups.items():
            read = {id(o): next(iter(o.seen)) for o in group
                    if len(o.seen) == 1 and (w := next(iter(o.seen))[1]) > 0 and w & (w - 1) == 0}
            if not read or any(o.bias > 0 and o.seen and id(o) not in read for o in group):
                continue
            low = min(h for h, _ in read.values())
            block = 1 + max(w.bit_length() - 1 for h, w in read.values() if h == low)
            sig = {k: (h - low) * block + w.bit_length() - 1 for k, (h, w) in read.items()}
            bits = next((b for b in (8, 16, 32, 64) if max(sig.values()) < b), None)
            if bits is not None:
                value = sum(o.bias << sig[id(o)] for o in group if id(o) in sig)
                out[layer] = (value & ((1 << bits) - 1), bits)
        return out
