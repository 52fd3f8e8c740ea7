"""``ProgramGroundTruth``: :class:`~paramlens.core.ground_truth.GroundTruth` of a compiled program, with the
list of its mechanisms and which outputs need each one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from paramlens.core.ground_truth import GroundTruth
from paramlens.core.weights import select
from paramlens.errors import ParamLensError
from paramlens.models.transformers.mechanisms import Mechanism, mechanisms

if TYPE_CHECKING:
    from paramlens.models.transformers.compiled import CompiledTransformer


@dataclass
class ProgramGroundTruth(GroundTruth):
    """Ground truth of a compiled program.

    Attributes:
        matrices: ``{target: (n_mechanisms, d_out, d_in)}`` for every weight of the model: slice ``k`` is the
            part mechanism ``k`` owns (zero where it owns nothing); the slices sum to the weight.
        mechanisms: ``mechanisms[k]`` describes slice ``k`` (its blocks, what it reads and writes).
        input_directions: empty (every mechanism reads whole subspaces, see ``Mechanism.reads``).
    """

    mechanisms: list[Mechanism] = field(default_factory=list)
    model: Any = field(default=None, repr=False, compare=False)

    def index(self, name: str) -> int:
        """The position of mechanism ``name`` in :attr:`mechanisms` (and in the first axis of the matrices)."""
        for k, m in enumerate(self.mechanisms):
            if m.name == name:
                return k
        raise ParamLensError(f"no mechanism {name!r}; known: {', '.join(m.name for m in self.mechanisms)}")

    def without(self, name: str) -> dict[str, Tensor]:
        """``{target: (d_out, d_in)}`` the weights the mechanism touches with its part zeroed (for
        :func:`paramlens.core.weights.run_with`)."""
        k = self.index(name)
        targets = {b.target for b in self.mechanisms[k].blocks}
        return {t: self.matrices[t].sum(0) - self.matrices[t][k] for t in sorted(targets)}

    def needed(self, name: str, ids: Tensor) -> Tensor:
        """``(batch, 1 + length)`` bool: the positions whose program output changes when the mechanism's
        operation is knocked out (embeddings and unembedding: every position; BOS: never)."""
        mechanism, model = self.mechanisms[self.index(name)], self.model
        mask = torch.zeros(ids.shape, dtype=torch.bool)
        if mechanism.sop is None:
            mask[:, 1:] = True
            model.tokens_of(ids)
            return mask
        intact = model.reference(ids)
        broken = model.reference(ids, knockout=[mechanism.sop])
        for b, (a, c) in enumerate(zip(intact, broken)):
            mask[b, 1:] = torch.tensor([x != y for x, y in zip(a[model.program], c[model.program])])
        return mask


def program_ground_truth(model: CompiledTransformer) -> ProgramGroundTruth:
    """The ground truth of a compiled model, read from its current weights."""
    found = mechanisms(model)
    matrices = {}
    for t in select(model, "*"):
        W = t.matrix(model).detach()
        parts = torch.zeros(len(found), *W.shape)
        for k, m in enumerate(found):
            for b in m.blocks:
                if b.target == t.name:
                    parts[k][b.rows, b.cols] = W[b.rows, b.cols]
        matrices[t.name] = parts
    ops = "; ".join(m.name for m in found if m.sop is not None)
    text = f"{model.name} compiled from a RASP program: {len(found)} mechanisms ({ops}; plus embeddings, unembedding)"
    names = dict.fromkeys(matrices, [m.name for m in found])
    return ProgramGroundTruth(matrices=matrices, description=text, names=names, mechanisms=found, model=model)
