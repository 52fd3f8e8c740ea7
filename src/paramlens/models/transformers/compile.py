"""Compile a RASP-style program into the weights of a small transformer (:class:`CompiledTransformer`).

Every SOp gets a residual subspace (:mod:`.layout`); each ``Aggregate`` becomes one attention head, each ``Map``
and ``SequenceMap`` a block of MLP neurons, each ``SelectorWidth`` one head and then a block of neurons
(:mod:`.compile_heads`, :mod:`.compile_tables`). Operations are placed as early as their inputs allow:
attention in the attention sublayer, tables in the MLP sublayer of a block; operations of the same sublayer sit
side by side (heads, or disjoint neuron ranges). Everything is deterministic; the weights are exact up to float32
rounding.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from paramlens.errors import ParamLensError
from paramlens.models.transformers.compile_heads import HeadWeights, aggregate_head, selector_width_head
from paramlens.models.transformers.compile_tables import MLPWeights, categorical_map, numerical_map, sequence_map
from paramlens.models.transformers.compiled import CompiledTransformer
from paramlens.models.transformers.evaluate import ordered, value_sets
from paramlens.models.transformers.layout import Layout
from paramlens.models.transformers.mechanisms import Placement
from paramlens.models.transformers.model import TransformerShape
from paramlens.models.transformers.rasp import (
    Aggregate,
    Indices,
    Map,
    SelectorWidth,
    SequenceMap,
    SOp,
    Tokens,
    indices,
    names,
    tokens,
    topological,
)

#: largest ``max_len`` the compiler accepts (the domain is enumerated in tests)
MAX_LEN = 64


@dataclass
class _Part:
    """One operation's weights before assembly: a head (``sublayer`` even) or a table (odd)."""

    sop: SOp
    sublayer: int
    weights: HeadWeights | MLPWeights


def _next(level: int, parity: int) -> int:
    """The first sublayer after ``level`` with the given parity (0: attention, 1: MLP)."""
    return level + 1 if (level + 1) % 2 == parity else level + 2


def _check_domain(vocab: Sequence[Any], max_len: int) -> tuple[Any, ...]:
    if isinstance(vocab, (str, bytes)) or not isinstance(vocab, Sequence) or not len(vocab):
        raise ParamLensError(f"vocab must be a non-empty sequence of token values, got {vocab!r:.60}")
    if any(v is None or not isinstance(v, Hashable) for v in vocab) or len(set(vocab)) != len(vocab):
        raise ParamLensError(f"vocab values must be distinct, hashable and not None, got {list(vocab)!r:.80}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or not 1 <= max_len <= MAX_LEN:
        raise ParamLensError(f"max_len must be an integer in 1 .. {MAX_LEN}, got {max_len!r}")
    return ordered(vocab)


def _layout(order: list[SOp], label: dict[SOp, str], sets: dict[SOp, tuple], vocab: tuple, max_len: int) -> Layout:
    layout = Layout()
    layout.add("tokens", vocab)
    layout.add("indices", range(max_len))
    for sop in order:
        if sop is tokens or sop is indices:
            continue
        if isinstance(sop, SelectorWidth):
            layout.add(f"{label[sop]}.inverse", [1 / (w + 1) for w in range(max_len + 1)], numerical=True)
        layout.add(label[sop], sets[sop], numerical=sop.numerical)
    return layout


def _table(sop: Map | SequenceMap, layout: Layout, label: dict[SOp, str]) -> MLPWeights:
    out = layout[label[sop]]
    if isinstance(sop, SequenceMap):
        return sequence_map(sop.fn, layout[label[sop.first]], layout[label[sop.second]], out, layout)
    source = layout[label[sop.sop]]
    return (numerical_map if source.numerical else categorical_map)(sop.fn, source, out, layout)


def _parts(order: list[SOp], label: dict[SOp, str], layout: Layout, coldness: float) -> list[_Part]:
    """Every operation's weights and sublayer, in program order."""
    level: dict[SOp, int] = {}
    parts: list[_Part] = []
    for sop in order:
        before = max((level[c] for c in sop.children()), default=-1)
        if isinstance(sop, (Tokens, Indices)):
            level[sop] = -1
        elif isinstance(sop, (Map, SequenceMap)):
            level[sop] = _next(before, 1)
            parts.append(_Part(sop, level[sop], _table(sop, layout, label)))
        elif isinstance(sop, Aggregate):
            level[sop] = _next(before, 0)
            parts.append(_Part(sop, level[sop], aggregate_head(sop, layout[label[sop]], layout, label, coldness)))
        else:
            assert isinstance(sop, SelectorWidth)
            inverse = layout[f"{label[sop]}.inverse"]
            head = selector_width_head(sop, inverse, layout, label, coldness)
            lookup = numerical_map(lambda x: round(1 / x) - 1, inverse, layout[label[sop]], layout)
            level[sop] = _next(before, 0) + 1
            parts += [_Part(sop, level[sop] - 1, head), _Part(sop, level[sop], lookup)]
    return parts


def _shape(parts: list[_Part], layout: Layout, n_tokens: int, n_ctx: int, d_out: int) -> TransformerShape:
    n_layers = max((p.sublayer // 2 + 1 for p in parts), default=1)
    heads = [p for p in parts if isinstance(p.weights, HeadWeights)]
    per_layer = [sum(p.sublayer // 2 == layer for p in heads) for layer in range(n_layers)]
    d_head = max((max(p.weights.W_Q.shape[0], p.weights.W_V.shape[0]) for p in heads), default=1)
    d_mlp = max((sum(p.weights.W_in.shape[0] for p in parts if p.sublayer == 2 * layer + 1)
                 for layer in range(n_layers)), default=1)
    return TransformerShape(n_tokens=n_tokens, n_ctx=n_ctx, d_model=layout.d_model, n_layers=n_layers,
                            n_heads=max(1, *per_layer), d_head=d_head, d_mlp=max(1, d_mlp), d_out=d_out)


def _place(model: CompiledTransformer, parts: list[_Part]) -> list[Placement]:
    """Copy every part into the model's weights; returns where each went."""
    shape, placed = model.shape, []
    used_heads = [0] * shape.n_layers
    used_neurons = [0] * shape.n_layers
    with torch.no_grad():
        for p in parts:
            layer = p.sublayer // 2
            block = model.blocks[layer]
            if isinstance(p.weights, HeadWeights):
                h, used_heads[layer] = used_heads[layer], used_heads[layer] + 1
                rows = slice(h * shape.d_head, (h + 1) * shape.d_head)
                w = p.weights
                scale = shape.d_head ** 0.5
                for module, part in ((block.attn.W_Q, w.W_Q * scale), (block.attn.W_K, w.W_K), (block.attn.W_V, w.W_V)):
                    module.weight[rows][: part.shape[0]] = part
                block.attn.W_O.weight[:, rows][:, : w.W_O.shape[1]] = w.W_O
                placed.append(Placement(p.sop, "attention", layer, head=h))
            else:
                start = used_neurons[layer]
                rows = slice(start, start + p.weights.W_in.shape[0])
                used_neurons[layer] = rows.stop
                block.mlp.W_in.weight[rows] = p.weights.W_in
                block.mlp.W_out.weight[:, rows] = p.weights.W_out
                placed.append(Placement(p.sop, "mlp", layer, neurons=rows))
    return placed


def _embed(model: CompiledTransformer, layout: Layout, vocab: tuple, max_len: int) -> None:
    """Token id 0 is BOS (``one`` + ``bos``), id ``1 + j`` is ``vocab[j]`` (``one`` + its token one-hot);
    position 0 is BOS (nothing), position ``p >= 1`` is index ``p - 1``."""
    one, bos = layout["one"].start, layout["bos"].start
    E = torch.zeros(1 + len(vocab), layout.d_model)
    E[:, one], E[0, bos] = 1.0, 1.0
    for j, v in enumerate(vocab):
        E[1 + j, layout["tokens"].dim(v)] = 1.0
    P = torch.zeros(1 + max_len, layout.d_model)
    for p in range(max_len):
        P[1 + p, layout["indices"].dim(p)] = 1.0
    with torch.no_grad():
        model.embed.weight.copy_(E)
        model.pos_embed.weight.copy_(P)


def compile_program(program: SOp, vocab: Sequence[Any], max_len: int, *, coldness: float = 100.0,
                    name: str = "program") -> CompiledTransformer:
    """Compile ``program`` for inputs of ``1 .. max_len`` tokens over ``vocab`` (plus a BOS token first).

    Args:
        program: the output SOp; every SOp it reads is compiled.
        vocab: the token values (any distinct hashable values; id ``1 + j`` is the ``j``-th in sorted order).
        max_len: the longest input, BOS not counted.
        coldness: attention logit of a selected key (an unselected one scores 0); 100 makes softmax exact
            in float32.
        name: what the model is called in descriptions.

    Returns:
        The model: ids ``(batch, 1 + length)`` -> logits ``(batch, 1 + length, n_output_values)``.
    """
    vocab = _check_domain(vocab, max_len)
    if not isinstance(coldness, (int, float)) or not 10 <= coldness <= 1e4:
        raise ParamLensError(f"coldness must be a number in 10 .. 10000, got {coldness!r}")
    order, label = topological(program), names(program)
    if any(isinstance(s, (Tokens, Indices)) and s is not tokens and s is not indices for s in order):
        raise ParamLensError("a program reads its input through rasp.tokens and rasp.indices; do not make new "
                             "Tokens() or Indices()")
    sets = value_sets(program, vocab, max_len)
    layout = _layout(order, label, sets, vocab, max_len)
    parts = _parts(order, label, layout, float(coldness))
    out = layout[label[program]]
    shape = _shape(parts, layout, 1 + len(vocab), 1 + max_len, out.size)
    with torch.random.fork_rng(devices=[]):  # the default initialisation is overwritten: leave the seed alone
        model = CompiledTransformer(shape, program, vocab, max_len, layout, label, name)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.unembed.weight[:, out.span] = torch.eye(out.size)
    _embed(model, layout, vocab, max_len)
    model.placements = _place(model, parts)
    return model
