"""A scoring task for decompositions of models whose mechanisms are known: one batch, which positions exercise
each mechanism, the weight part each one owns, and the accuracy of the outputs each one serves. The zoo's
transformers build them (``paramlens.models.transformers.program_task`` / ``induction_task``); the decomposition
scores (:mod:`paramlens.decompose.mechanism_scores`) read them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

AccuracyFn = Callable[[Tensor, str], float]
"""``(logits of the batch, mechanism name) -> accuracy`` in [0, 1] of the outputs that mechanism serves."""


@dataclass(frozen=True)
class MechanismTask:
    """What scoring a decomposition against known mechanisms needs, on one batch.

    Attributes:
        x: the batch, token ids ``(B, T)``.
        names: the mechanisms, in the order of the first axis of ``matrices``.
        matrices: ``{target: (n_mechanisms, d_out, d_in)}``: the part of each weight each mechanism owns.
        exercised: ``{mechanism: (B, T) bool}``: the positions of ``x`` that exercise it.
        accuracy: accuracy of the outputs each mechanism serves (see
            :data:`AccuracyFn`).
        chance: the accuracy of guessing (a share in [0, 1]).
        where: ``(B, T) bool`` positions to score in matching (None: all).
        spared: accuracy of the outputs that do not need each mechanism (None: not defined for the task).
    """

    x: Tensor
    names: tuple[str, ...]
    matrices: dict[str, Tensor]
    exercised: dict[str, Tensor]
    accuracy: AccuracyFn
    chance: float
    where: Tensor | None = None
    spared: AccuracyFn | None = None
