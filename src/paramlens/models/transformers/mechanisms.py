"""Ground truth of a compiled program: each operation is a mechanism owning known blocks of known weights.

A mechanism is one attention head (an ``Aggregate``, or the counting half of a ``SelectorWidth``), one range of
MLP neurons (a ``Map``/``SequenceMap`` table, or the decoding half of a ``SelectorWidth``), or an embedding /
the unembedding. It owns whole rows of ``W_Q, W_K, W_V, W_in`` and whole columns of ``W_O, W_out`` (in the
``(d_out, d_in)`` view of :mod:`paramlens.core.weights`), so the mechanisms' parts of every weight sum to it.
Zeroing a head or table removes its operation's values (they become ``None``): the outputs that change are
:meth:`ProgramGroundTruth.needed`, computed by running the program with that operation knocked out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from paramlens.models.transformers.rasp import TRUE, Aggregate, Map, SelectorWidth, SequenceMap, SOp

if TYPE_CHECKING:
    from paramlens.models.transformers.compiled import CompiledTransformer

ALL = slice(None)


@dataclass(frozen=True)
class Placement:
    """Where one operation's weights sit: ``kind`` ``"attention"`` (``layer``, ``head``) or ``"mlp"``
    (``layer``, the ``neurons`` it owns)."""

    sop: SOp
    kind: str
    layer: int
    head: int | None = None
    neurons: slice | None = None


@dataclass(frozen=True)
class Block:
    """The part of one target weight a mechanism owns: ``matrix[rows, cols]`` of its ``(d_out, d_in)`` view."""

    target: str
    rows: slice
    cols: slice


@dataclass(frozen=True)
class Mechanism:
    """One known mechanism.

    Attributes:
        name: ``"L{layer}H{head}"``, ``"L{layer}MLP:{variable}"``, ``"embed"``, ``"pos_embed"`` or ``"unembed"``.
        kind: ``"attention"``, ``"mlp"``, ``"embedding"`` or ``"unembedding"``.
        description: one line: what it reads, what it computes, what it writes.
        reads: residual variables it reads (names of :class:`~.layout.Layout` subspaces).
        writes: the residual variable it writes (``"output"`` for the unembedding).
        blocks: the weight blocks it owns.
        sop: the program operation it implements (``None`` for embeddings and the unembedding).
    """

    name: str
    kind: str
    description: str
    reads: tuple[str, ...]
    writes: str
    blocks: tuple[Block, ...]
    sop: SOp | None = field(default=None, repr=False, compare=False)


def _selection(op: Aggregate | SelectorWidth, labels: dict[SOp, str]) -> str:
    s = op.selector
    if s.predicate is TRUE:
        return f"select every key with a {labels[s.keys]} value"
    return f"select key {labels[s.keys]} {s.predicate.name} query {labels[s.queries]}"


def _head(p: Placement, labels: dict[SOp, str], d_head: int) -> Mechanism:
    op, out = p.sop, labels[p.sop]
    where = f"layer {p.layer} head {p.head}"
    rows = slice(p.head * d_head, (p.head + 1) * d_head)
    qkv = tuple(Block(f"blocks.{p.layer}.attn.{w}", rows, ALL) for w in ("W_Q", "W_K", "W_V"))
    blocks = (*qkv, Block(f"blocks.{p.layer}.attn.W_O", ALL, rows))
    keys, queries = labels[op.selector.keys], labels[op.selector.queries]
    if isinstance(op, SelectorWidth):
        text = (f"{where}: {_selection(op, labels)}; attend to BOS and the selected keys and copy the bos "
                f"indicator: {out}.inverse = 1 / (number selected + 1)")
        reads = tuple(dict.fromkeys((queries, keys, "one", "bos")))
        return Mechanism(f"L{p.layer}H{p.head}", "attention", text, reads, f"{out}.inverse", blocks, op)
    how = "mean of" if op.numerical else "copy the selected key's"
    text = f"{where}: {_selection(op, labels)}; aggregate ({how} {labels[op.sop]}) into {out}"
    reads = tuple(dict.fromkeys((queries, keys, labels[op.sop], "one", "bos")))
    return Mechanism(f"L{p.layer}H{p.head}", "attention", text, reads, out, blocks, op)


def _table(p: Placement, labels: dict[SOp, str]) -> Mechanism:
    op, out = p.sop, labels[p.sop]
    n = p.neurons
    where = f"layer {p.layer} MLP neurons {n.start}..{n.stop - 1}"
    blocks = (Block(f"blocks.{p.layer}.mlp.W_in", n, ALL), Block(f"blocks.{p.layer}.mlp.W_out", ALL, n))
    if isinstance(op, SelectorWidth):
        reads = (f"{out}.inverse", "one", "bos")
        text = f"{where}: lookup {out} = 1 / {out}.inverse - 1 (four-neuron bump per width)"
    elif isinstance(op, SequenceMap):
        reads = tuple(dict.fromkeys((labels[op.first], labels[op.second], "one")))
        pair = f"{labels[op.first]}, {labels[op.second]}"
        text = f"{where}: lookup table {out} = sequence_map({pair}) (one neuron per pair)"
    else:
        assert isinstance(op, Map)
        reads = (labels[op.sop], "one", "bos") if op.sop.numerical else (labels[op.sop],)
        how = "a four-neuron bump per input value" if op.sop.numerical else "one neuron per input value"
        text = f"{where}: lookup table {out} = map({reads[0]}) ({how})"
    return Mechanism(f"L{p.layer}MLP:{out}", "mlp", text, reads, out, blocks, op)


def mechanisms(model: CompiledTransformer) -> list[Mechanism]:
    """The model's mechanisms: embeddings, then each operation in program order, then the unembedding."""
    labels, out = model.labels, model.labels[model.program]
    found = [Mechanism("embed", "embedding", "token embedding: one-hot tokens, plus the one and bos dimensions",
                       (), "tokens", (Block("embed", ALL, ALL),)),
             Mechanism("pos_embed", "embedding", "position embedding: one-hot indices (nothing at BOS)", (),
                       "indices", (Block("pos_embed", ALL, ALL),))]
    for p in model.placements:
        found.append(_head(p, labels, model.shape.d_head) if p.kind == "attention" else _table(p, labels))
    found.append(Mechanism("unembed", "unembedding", f"unembedding: read {out}, one logit per value", (out,),
                           "output", (Block("unembed", ALL, ALL),)))
    return found
