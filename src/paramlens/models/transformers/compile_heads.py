"""Attention heads for ``Aggregate`` and ``SelectorWidth``, in the units of a :class:`Layout`.

QK: head dimension ``i`` stands for query value ``i``: ``W_Q`` maps the query's one-hot to ``coldness * e_i``
and ``W_K`` maps key value ``k`` to ``[predicate(k, query value i)]_i``, so the score of a selected key is
``coldness``, of any other key 0. One more head dimension reads ``one`` on the query side and ``bos`` on the key
side: the BOS position scores ``coldness / 2`` for an aggregate (it wins only when no key is selected, and its
value is zero: the default) and ``coldness`` for a selector width (it always shares the attention).

OV: an aggregate copies the value's one-hot (or number) into the output subspace; a selector width copies the
``bos`` indicator, so it writes ``1 / (width + 1)`` into its hidden numerical variable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.errors import ParamLensError
from paramlens.models.transformers.layout import Layout, Space
from paramlens.models.transformers.rasp import Aggregate, Select, SelectorWidth


@dataclass
class HeadWeights:
    """One head before padding: ``W_Q, W_K`` ``(d_qk, d_model)``, ``W_V`` ``(d_ov, d_model)``, ``W_O``
    ``(d_model, d_ov)``; ``W_Q`` already carries the coldness but not the ``sqrt(d_head)`` of the module."""

    W_Q: Tensor
    W_K: Tensor
    W_V: Tensor
    W_O: Tensor


def _categorical(space: Space, role: str, op: str) -> Space:
    if space.numerical:
        raise ParamLensError(f"{op}: {role} {space.name!r} is numerical; selectors compare categorical SOps")
    return space


def _qk(selector: Select, keys: Space, queries: Space, layout: Layout, coldness: float,
        bos_score: float) -> tuple[Tensor, Tensor]:
    """``W_Q, W_K`` ``(n_query_values + 1, d_model)`` with ``score = coldness * (predicate + bos_score * bos)``."""
    d = queries.size + 1
    W_Q, W_K = torch.zeros(d, layout.d_model), torch.zeros(d, layout.d_model)
    for i, q in enumerate(queries.values):
        W_Q[i, queries.dim(q)] = coldness
        for k in keys.values:
            W_K[i, keys.dim(k)] = float(selector.predicate(k, q))
    W_Q[d - 1, layout["one"].start] = coldness
    W_K[d - 1, layout["bos"].start] = bos_score
    return W_Q, W_K


def aggregate_head(op: Aggregate, out: Space, layout: Layout, names: dict, coldness: float) -> HeadWeights:
    """The head of ``Aggregate(Select(keys, queries, predicate), sop)`` writing subspace ``out``."""
    label = f"Aggregate {out.name!r}"
    keys = _categorical(layout[names[op.selector.keys]], "keys", label)
    queries = _categorical(layout[names[op.selector.queries]], "queries", label)
    W_Q, W_K = _qk(op.selector, keys, queries, layout, coldness, 0.5)
    source = layout[names[op.sop]]
    if source.numerical != op.numerical:
        kind = "a numerical" if op.numerical else "a categorical"
        raise ParamLensError(f"{label} is {kind} aggregate of {source.name!r}, which is not; make both numerical "
                             "or both categorical")
    W_V, W_O = torch.zeros(source.size, layout.d_model), torch.zeros(layout.d_model, source.size)
    if op.numerical:
        if not set(source.values) <= {0, 1}:
            raise ParamLensError(f"{label} averages {source.name!r}, whose values {list(source.values)} are not "
                                 "all 0 or 1; a numerical aggregate needs a 0/1 SOp")
        W_V[0, source.start], W_O[out.start, 0] = 1.0, 1.0
    for j, v in enumerate(() if op.numerical else source.values):
        W_V[j, source.dim(v)], W_O[out.dim(v), j] = 1.0, 1.0
    return HeadWeights(W_Q, W_K, W_V, W_O)


def selector_width_head(op: SelectorWidth, inverse: Space, layout: Layout, names: dict,
                        coldness: float) -> HeadWeights:
    """The head of ``SelectorWidth``: BOS and the selected keys share the attention equally; it copies the
    ``bos`` indicator into ``inverse``, which then holds ``1 / (width + 1)``."""
    label = f"SelectorWidth {inverse.name!r}"
    keys = _categorical(layout[names[op.selector.keys]], "keys", label)
    queries = _categorical(layout[names[op.selector.queries]], "queries", label)
    W_Q, W_K = _qk(op.selector, keys, queries, layout, coldness, 1.0)
    W_V, W_O = torch.zeros(1, layout.d_model), torch.zeros(layout.d_model, 1)
    W_V[0, layout["bos"].start], W_O[inverse.start, 0] = 1.0, 1.0
    return HeadWeights(W_Q, W_K, W_V, W_O)
