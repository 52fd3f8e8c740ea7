"""A transformer compiled from a RASP-style program: the module plus what it computes and where.

Inputs are token ids ``(batch, 1 + length)``: id 0 (BOS) first, then ids ``1 + j`` for ``vocab[j]``; position
``1 + i`` of the output holds the program's value at position ``i``.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from typing import Any

import torch
from torch import Tensor

from paramlens.core.mechanism_task import MechanismTask
from paramlens.errors import ParamLensError
from paramlens.models.transformers.evaluate import Reference
from paramlens.models.transformers.layout import Layout, decode
from paramlens.models.transformers.mechanisms import Placement
from paramlens.models.transformers.model import Transformer, TransformerShape, traced
from paramlens.models.transformers.rasp import SOp
from paramlens.models.transformers.truth import ProgramGroundTruth, program_ground_truth

#: the id of the BOS token
BOS = 0


class CompiledTransformer(Transformer):
    """The compiled model: :class:`Transformer` weights, the program, the residual :class:`Layout` and the
    :class:`Placement` of every operation (filled in by :func:`compile_program`)."""

    def __init__(self, shape: TransformerShape, program: SOp, vocab: tuple[Any, ...], max_len: int,
                 layout: Layout, labels: dict[SOp, str], name: str):
        super().__init__(shape)
        self.program, self.vocab, self.max_len = program, vocab, max_len
        self.layout, self.labels, self.name = layout, labels, name
        self.placements: list[Placement] = []
        self.semantics = Reference(program, vocab, max_len)

    @property
    def output_values(self) -> tuple[Any, ...]:
        """The output value of each logit."""
        return self.layout[self.labels[self.program]].values

    def encode(self, seqs: Sequence[Sequence[Any]]) -> Tensor:
        """Token sequences of one length -> ids ``(batch, 1 + length)`` with BOS first."""
        lengths = {len(s) for s in seqs}
        if len(lengths) != 1:
            raise ParamLensError(f"encode takes sequences of one length, got lengths {sorted(lengths)}")
        index = {v: 1 + j for j, v in enumerate(self.vocab)}
        bad = [t for s in seqs for t in s if t not in index]
        if bad:
            raise ParamLensError(f"token {bad[0]!r} is not in the vocabulary {list(self.vocab)}")
        return torch.tensor([[BOS] + [index[t] for t in s] for s in seqs], dtype=torch.long)

    def check_ids(self, ids: Tensor) -> None:
        """Raise unless ids are ``(..., 1 + length)`` token ids with BOS first and nowhere else."""
        super().check_ids(ids)
        if ids.shape[-1] < 2:
            raise ParamLensError(f"ids must be (..., 1 + length) with BOS first and length 1 .. {self.max_len}, "
                                 f"got shape {tuple(ids.shape)}")
        if not traced(ids) and ((ids[..., 0] != BOS).any() or (ids[..., 1:] == BOS).any()):
            raise ParamLensError(f"ids must start with BOS ({BOS}) and hold it nowhere else")

    def tokens_of(self, ids: Tensor) -> list[list[Any]]:
        """ids ``(batch, 1 + length)`` -> the token values after BOS."""
        self.check_ids(ids)
        if ids.dim() != 2:
            raise ParamLensError(f"ids must be (batch, 1 + length), got shape {tuple(ids.shape)}")
        return [[self.vocab[i - 1] for i in row[1:]] for row in ids.tolist()]

    def inputs(self, length: int) -> Tensor:
        """ids ``(len(vocab) ** length, 1 + length)``: every input of that length."""
        if not 1 <= length <= self.max_len:
            raise ParamLensError(f"length must be in 1 .. {self.max_len}, got {length}")
        return self.encode(list(itertools.product(self.vocab, repeat=length)))

    def decode(self, logits: Tensor) -> list[list[Any]]:
        """``(batch, 1 + length, d_out)`` logits -> per input, the output value at each non-BOS position
        (argmax; ``None`` where no logit reaches 0.5; the number for a numerical program)."""
        space = self.layout[self.labels[self.program]]
        return [row[1:] for row in decode(logits, space)]

    def predict(self, ids: Tensor) -> list[list[Any]]:
        """The model's outputs on ids ``(batch, 1 + length)``, decoded as :meth:`decode`."""
        with torch.no_grad():
            return self.decode(self(ids))

    def read(self, resid: Tensor, sop: SOp | str) -> list[list[Any]]:
        """The value of one variable at every non-BOS position of final residuals ``(batch, 1 + length,
        d_model)`` (from ``model(ids, return_residual=True)``)."""
        name = sop if isinstance(sop, str) else self.labels[sop]
        return [row[1:] for row in self.layout.read(resid, name)]

    def reference(self, ids: Tensor, knockout: Collection[SOp] = ()) -> list[dict[SOp, list[Any]]]:
        """Per input, ``{sop: values}`` of every SOp by the program itself, with ``knockout`` SOps removed."""
        return [self.semantics.run(seq, knockout) for seq in self.tokens_of(ids)]

    def ground_truth(self) -> ProgramGroundTruth:
        """Which weights implement which operation of the program, and which outputs need it."""
        return program_ground_truth(self)

    def mechanism_task(self, ids: Tensor) -> MechanismTask:
        """The scoring task of its operations on ids ``(B, 1 + length)`` (see
        :func:`~paramlens.models.transformers.tasks.program_task`)."""
        from paramlens.models.transformers.tasks import program_task

        return program_task(self.ground_truth(), ids)

    def source(self, length: int | None = None) -> ProgramInputs:
        """Uniformly random inputs of ``length`` tokens (None: ``max_len``), the data to decompose it on."""
        return ProgramInputs(len(self.vocab), length or self.max_len)


class ProgramInputs:
    """Random programs inputs: ``sample(n, generator)`` -> ids ``(n, 1 + length)``, BOS then ``length`` tokens
    drawn uniformly from a vocabulary of ``n_tokens``."""

    def __init__(self, n_tokens: int, length: int):
        self.n_tokens, self.length = n_tokens, length

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        ids = torch.randint(1, self.n_tokens + 1, (n, 1 + self.length), generator=generator)
        ids[:, 0] = BOS
        return ids
