"""Disguises that leave a network's function unchanged: shuffled, dead and duplicated hidden rows.

Each touches a hidden layer (every layer but the last) and the columns of the layer after it:

- ``permute``: the rows of each hidden layer in a random order; the next layer's columns follow;
- ``dead``: rows with no weights and a negative bias (always 0), read by random integer weights in the next layer;
- ``duplicate``: copies of random rows (same weights and bias); the next layer's weight ``w`` on the row becomes
  ``w - s`` on the original and a random nonzero integer ``s`` in ``[-2, 2]`` on the copy.

Storage in float32 is the remaining disguise: ``SparseNetwork.save(path, dtype=torch.float32)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Generator, Tensor

from paramlens.models.compiled.sparse_network import SparseLayer, SparseNetwork


@dataclass(frozen=True)
class Nuisance:
    """``dead`` and ``duplicate``: rows added per hidden layer (``duplicate`` at most the layer's width)."""

    permute: bool = False
    dead: int = 0
    duplicate: int = 0
    seed: int = 0


def disguise(net: SparseNetwork, nuisance: Nuisance) -> SparseNetwork:
    """A network computing the same function as ``net`` with ``nuisance`` applied to every hidden layer."""
    gen = torch.Generator().manual_seed(nuisance.seed)
    layers = list(net.layers)
    for i in range(len(layers) - 1):
        here, after = layers[i], layers[i + 1]
        if nuisance.duplicate:
            here, after = _duplicate(here, after, min(nuisance.duplicate, here.n_out), gen)
        if nuisance.dead:
            here, after = _dead(here, after, nuisance.dead, gen)
        if nuisance.permute:
            here, after = _permute(here, after, gen)
        layers[i], layers[i + 1] = here, after
    return SparseNetwork(layers)


def _nonzero_integers(n: int, high: int, gen: Generator) -> Tensor:
    """``n`` random integers in ``[-high, -1] u [1, high]``."""
    magnitude = torch.randint(1, high + 1, (n,), generator=gen)
    return torch.where(torch.rand(n, generator=gen) < 0.5, -magnitude, magnitude)


def _with_entries(layer: SparseLayer, rows: Tensor, cols: Tensor, values: Tensor, n_in: int) -> SparseLayer:
    """``layer`` reading ``n_in`` columns, with the entries added and zero entries dropped."""
    rows, cols, values = torch.cat([layer.rows, rows]), torch.cat([layer.cols, cols]), torch.cat([layer.values, values])
    keep = values != 0
    return replace(layer, n_in=n_in, rows=rows[keep], cols=cols[keep], values=values[keep])


def _duplicate(here: SparseLayer, after: SparseLayer, k: int, gen: Generator) -> tuple[SparseLayer, SparseLayer]:
    source = torch.randperm(here.n_out, generator=gen)[:k]
    copy_of = torch.full((here.n_out,), -1, dtype=torch.long)
    copy_of[source] = torch.arange(here.n_out, here.n_out + k)
    mine = copy_of[here.rows] >= 0
    here = replace(_with_entries(here, copy_of[here.rows[mine]], here.cols[mine], here.values[mine], here.n_in),
                   bias=torch.cat([here.bias, here.bias[source]]))
    reads = copy_of[after.cols] >= 0
    share = _nonzero_integers(int(reads.sum()), 2, gen)
    values = after.values.clone()
    values[reads] -= share
    after = replace(after, values=values)
    after = _with_entries(after, after.rows[reads], copy_of[after.cols[reads]], share, here.n_out)
    return here, after


def _dead(here: SparseLayer, after: SparseLayer, k: int, gen: Generator) -> tuple[SparseLayer, SparseLayer]:
    first = here.n_out
    here = replace(here, bias=torch.cat([here.bias, -torch.randint(1, 4, (k,), generator=gen)]))
    m = min(3, after.n_out)  # next-layer rows reading each dead row
    readers = torch.cat([torch.randperm(after.n_out, generator=gen)[:m] for _ in range(k)])
    cols = torch.arange(first, first + k).repeat_interleave(m)
    return here, _with_entries(after, readers, cols, _nonzero_integers(m * k, 3, gen), here.n_out)


def _permute(here: SparseLayer, after: SparseLayer, gen: Generator) -> tuple[SparseLayer, SparseLayer]:
    order = torch.randperm(here.n_out, generator=gen)  # new row p is old row order[p]
    position = torch.empty_like(order)
    position[order] = torch.arange(here.n_out)
    here = replace(here, rows=position[here.rows], bias=here.bias[order])
    return here, replace(after, cols=position[after.cols])
