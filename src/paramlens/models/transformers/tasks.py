"""Known transformer mechanisms as scoring tasks: for one batch, which positions exercise each mechanism, the
weight part each one owns, and the accuracy of the outputs each one serves.

- Compiled programs (:class:`~paramlens.models.transformers.truth.ProgramGroundTruth`): a mechanism is exercised
  at the positions whose program output changes when its operation is knocked out (``truth.needed``); accuracy
  is the share of those outputs decoded right (argmax logit above 0.5, as ``CompiledTransformer.decode``; no
  value where the program has none); the spared accuracy the same on the other non-BOS positions. BOS is not
  scored.
- The induction model: the previous-token and induction heads (``MECHANISMS``), exercised where they run
  (:func:`induction_running`) or where an induction prediction uses them (:func:`induction_exercised`); accuracy is next-token accuracy at the induction
  positions for both, as they serve the same outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from paramlens.core.mechanism_task import MechanismTask
from paramlens.errors import ParamLensError
from paramlens.models.transformers.induction import MECHANISMS
from paramlens.models.transformers.induction_data import earlier_occurrence, induction_positions

if TYPE_CHECKING:
    from paramlens.models.transformers.compiled import CompiledTransformer
    from paramlens.models.transformers.induction import InductionTransformer
    from paramlens.models.transformers.truth import ProgramGroundTruth


def _share(correct: Tensor, mask: Tensor) -> float:
    """Mean of ``correct`` over ``mask`` (both ``(B, T)`` bool); NaN on an empty mask."""
    return float(correct[mask].float().mean()) if mask.any() else math.nan


@dataclass(frozen=True)
class ProgramAccuracy:
    """Accuracy of a compiled program's outputs on one batch.

    Attributes:
        answer: ``(B, 1 + length)`` long: per position the index of the program's value in ``output_values``,
            -1 where the program gives no value (and at BOS).
        needed: ``{mechanism: (B, 1 + length) bool}`` as ``truth.needed``.
    """

    answer: Tensor
    needed: dict[str, Tensor]

    def correct(self, logits: Tensor) -> Tensor:
        """``(B, 1 + length)`` bool: the decoded output (``(B, 1 + length, d_out)`` logits) equals the program's."""
        top, idx = logits.detach().cpu().max(-1)
        return torch.where(top > 0.5, idx, torch.full_like(idx, -1)) == self.answer

    def __call__(self, logits: Tensor, mechanism: str) -> float:
        """Share of the outputs that need ``mechanism`` decoded right (NaN if none does)."""
        return _share(self.correct(logits), self._needed(mechanism))

    def spared(self, logits: Tensor, mechanism: str) -> float:
        """Share of the non-BOS outputs that do not need ``mechanism`` decoded right (NaN if all do)."""
        scored = torch.ones_like(self.answer, dtype=torch.bool)
        scored[:, 0] = False
        return _share(self.correct(logits), scored & ~self._needed(mechanism))

    def _needed(self, mechanism: str) -> Tensor:
        if mechanism not in self.needed:
            raise ParamLensError(f"no mechanism {mechanism!r}; known: {', '.join(self.needed)}")
        return self.needed[mechanism]


def program_answers(model: CompiledTransformer, ids: Tensor) -> Tensor:
    """``(B, 1 + length)`` long: the index of the program's value at each position in ``model.output_values``,
    -1 where it has none and at BOS."""
    if model.layout[model.labels[model.program]].numerical:
        raise ParamLensError(f"{model.name} outputs a number; accuracy needs a program with categorical outputs")
    index = {v: j for j, v in enumerate(model.output_values)}
    rows = [[-1] + [index[v] if v is not None else -1 for v in r[model.program]] for r in model.reference(ids)]
    return torch.tensor(rows, dtype=torch.long)


def program_task(truth: ProgramGroundTruth, ids: Tensor) -> MechanismTask:
    """The task of a compiled program on ids ``(B, 1 + length)`` (see the module docstring)."""
    model = truth.model
    if model is None:
        raise ParamLensError("this ground truth has no model; build it with CompiledTransformer.ground_truth()")
    names = tuple(m.name for m in truth.mechanisms)
    needed = {n: truth.needed(n, ids) for n in names}
    acc = ProgramAccuracy(program_answers(model, ids), needed)
    where = torch.ones(ids.shape, dtype=torch.bool)
    where[:, 0] = False
    return MechanismTask(ids, names, dict(truth.matrices), needed, acc, 1 / len(model.output_values), where,
                         acc.spared)


def induction_running(tokens: Tensor) -> dict[str, Tensor]:
    """``{"previous_token", "induction"}`` -> ``(B, T)`` bool: every position with an earlier one, where both heads
    run (each attends back and writes to the residual there, so the next-token distribution depends on it, whether
    or not the prediction uses induction)."""
    running = torch.ones(tokens.shape, dtype=torch.bool)
    running[:, 0] = False
    return {"previous_token": running, "induction": running.clone()}


def induction_exercised(tokens: Tensor) -> dict[str, Tensor]:
    """``{"previous_token", "induction"}`` -> ``(B, T)`` bool positions of ``tokens`` where the circuit uses each
    head: at an induction position ``t`` whose token occurred at ``j``, the induction head's query reads ``t`` and
    its keys and values the position ``j + 1``, where the previous-token head wrote token ``j`` (its query and
    output at ``j + 1``, its key and value at ``j``). The induction head is marked at ``t`` and ``j + 1``, the
    previous-token head at ``j`` and ``j + 1``."""
    query = induction_positions(tokens)
    b, t = query.nonzero(as_tuple=True)
    j = earlier_occurrence(tokens)[b, t]
    previous, induction = torch.zeros_like(query), query.clone()
    previous[b, j] = previous[b, j + 1] = True
    induction[b, j + 1] = True
    return {"previous_token": previous, "induction": induction}


@dataclass(frozen=True)
class InductionAccuracy:
    """Next-token accuracy at the induction positions of ``tokens`` ``(B, T)``, for either mechanism."""

    tokens: Tensor

    def __call__(self, logits: Tensor, mechanism: str) -> float:
        """Share of the induction positions whose argmax logit is the next token (logits ``(B, T, vocab)``)."""
        if mechanism not in MECHANISMS:
            raise ParamLensError(f"no mechanism {mechanism!r}; known: {', '.join(MECHANISMS)}")
        right = logits.detach().cpu().argmax(-1) == self.tokens.roll(-1, dims=1)
        return _share(right, induction_positions(self.tokens))


def induction_task(model: InductionTransformer, tokens: Tensor, heads: tuple[int, int] | None = None,
                   exercised: Literal["running", "used"] = "running") -> MechanismTask:
    """The task of the induction model on repeated-segment ``tokens`` ``(B, T)``; ``heads``: ``(previous-token head,
    induction head)`` (None: found by score, as ``model.ground_truth``). ``exercised``: ``"running"`` marks every
    position where the heads run (:func:`induction_running`: what a decomposition that reproduces the whole
    next-token distribution must keep), ``"used"`` only the positions an induction prediction reads
    (:func:`induction_exercised`). Both heads sit in different layers, so matching tells them apart by the targets
    each owns."""
    if tokens.dim() != 2 or not induction_positions(tokens).any():
        raise ParamLensError(f"tokens {tuple(tokens.shape)} have no induction position; use (B, T) repeated "
                             "segments (induction_data.RepeatedSegments)")
    truth = model.ground_truth(heads)
    marked = induction_running(tokens) if exercised == "running" else induction_exercised(tokens)
    return MechanismTask(tokens, MECHANISMS, dict(truth.matrices), marked,
                         InductionAccuracy(tokens), 1 / model.cfg.vocab_size)
