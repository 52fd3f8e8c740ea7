"""Scores that say whether a decomposition's subcomponents are a model's known mechanisms.

For each known mechanism (a :class:`~paramlens.core.mechanism_task.MechanismTask`):

1. matching (:mod:`~paramlens.decompose.mechanism_match`): the subcomponents important exactly where the
   mechanism is exercised, with the precision and recall of their activity;
2. ablation (:mod:`~paramlens.decompose.mechanism_ablation`): the mechanism's accuracy with its members at 0
   (about chance if they are the mechanism), and the accuracy of the outputs that do not need it (unchanged);
3. weights (:func:`weight_match`): the members' summed weights against the mechanism's part of the weights.

>>> task = program_task(model.ground_truth(), model.inputs(5))
>>> print(score_mechanisms(SPDMethod, dec, model, targets, task).summary())
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from paramlens.core.mechanism_task import MechanismTask
from paramlens.core.weights import Target
from paramlens.decompose.forward import capture
from paramlens.decompose.mechanism_ablation import Ablation, ablation_accuracies
from paramlens.decompose.mechanism_match import (
    IMPORTANT,
    PRECISION_BAR,
    MechanismMatch,
    Subcomponent,
    match_mechanisms,
    unmatched,
)


def component_matrices(method: Any, dec: nn.Module, target: Target) -> Tensor:
    """Every subcomponent of ``target`` as a ``(d_out, d_in)`` matrix: ``(C, d_out, d_in)``, read through the
    method's ``outputs_along`` on the unit input directions (so any method, SPD's rank-one subcomponents or
    APD's rank-``m`` components)."""
    eye = torch.eye(target.shape[1], device=next(dec.parameters(), torch.empty(0)).device)
    return method.outputs_along(dec, target, eye).detach().cpu().permute(1, 2, 0)


@dataclass(frozen=True)
class WeightMatch:
    """A mechanism's members' summed weights ``S_t`` against its part ``P_t`` of each decomposed target ``t``,
    per target (flattened), then averaged over targets so that each counts alike whatever its scale (a compiled
    query weight can be hundreds of times larger than the table next to it).

    Attributes:
        cosine: mean over the targets that the mechanism owns a part of or has members in of
            ``<S_t, P_t> / (|S_t| |P_t|)`` (in [-1, 1]; 0 for a target where either is 0, so members in targets
            the mechanism does not own lower it).
        norm_ratio: mean over the targets it owns a part of of ``|S_t| / |P_t|`` (1: the members carry the whole
            part's size; 0 without members).

        Both are NaN when the mechanism owns no part of any decomposed target.
    """

    cosine: float
    norm_ratio: float


def weight_match(method: Any, dec: nn.Module, targets: Sequence[Target],
                 members: Mapping[str, Collection[Subcomponent]], matrices: Mapping[str, Tensor],
                 names: Sequence[str]) -> dict[str, WeightMatch]:
    """``{mechanism: WeightMatch}`` for the ``members`` of each mechanism.

    Args:
        members: ``{mechanism: (target name, subcomponent index) pairs}``.
        matrices: ``{target: (n_mechanisms, d_out, d_in)}``; ``names[k]`` owns slice ``k``. Targets missing from it
            count as owned by no mechanism.
    """
    parts = {t.name: component_matrices(method, dec, t) for t in targets}
    out = {}
    for k, name in enumerate(names):
        cosines, ratios = [], []
        for t in targets:
            part = matrices[t.name][k].cpu().float() if t.name in matrices else torch.zeros(t.shape)
            chosen = [c for tn, c in members.get(name, ()) if tn == t.name]
            summed = parts[t.name][chosen].sum(0)
            s, p = float(summed.norm()), float(part.norm())
            if chosen or p > 0:
                cosines.append(float((summed * part).sum()) / (s * p) if s > 0 and p > 0 else 0.0)
            if p > 0:
                ratios.append(s / p)
        if ratios:
            out[name] = WeightMatch(sum(cosines) / len(cosines), sum(ratios) / len(ratios))
        else:
            out[name] = WeightMatch(math.nan, math.nan)
    return out


def owners_of(matrices: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, set[str]]:
    """``{mechanism: target names}``: the targets where mechanism ``names[k]`` owns a non-zero part."""
    return {n: {t for t, parts in matrices.items() if bool(parts[k].any())} for k, n in enumerate(names)}


@dataclass(frozen=True)
class MechanismScores:
    """Matching, ablation and weight scores of one decomposition against known mechanisms.

    Attributes:
        matches: ``{mechanism: MechanismMatch}``.
        ablation: accuracies intact and with each mechanism's members ablated.
        weights: ``{mechanism: WeightMatch}``.
        unmatched: alive subcomponents matched to no mechanism.
    """

    matches: dict[str, MechanismMatch]
    ablation: Ablation
    weights: dict[str, WeightMatch]
    unmatched: list[Subcomponent]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per mechanism: ``members``, ``shared`` (counts), ``precision``, ``recall``, ``cosine``,
        ``norm_ratio``, ``accuracy`` (intact), ``ablated`` (its own accuracy with its members at 0),
        ``spared_intact`` and ``spared`` (accuracy of the outputs that do not need it; NaN if not defined)."""
        ab = self.ablation
        return [{"mechanism": n, "members": len(m.members), "shared": m.shared, "precision": m.precision,
                 "recall": m.recall, "cosine": self.weights[n].cosine, "norm_ratio": self.weights[n].norm_ratio,
                 "accuracy": ab.intact[n], "ablated": ab.ablated[n][n],
                 "spared_intact": ab.spared_intact.get(n, math.nan), "spared": ab.spared.get(n, math.nan)}
                for n, m in self.matches.items()]

    def summary(self) -> str:
        """The rows as a fixed-width table, then chance and the unmatched count."""
        rows = self.rows()
        keys = [k for k in rows[0] if k != "mechanism"] if rows else []
        width = max([len("mechanism"), *(len(r["mechanism"]) for r in rows)])
        lines = [f"{'mechanism':<{width}}  " + "  ".join(f"{k:>7}" for k in keys)]
        for r in rows:
            cells = (f"{r[k]:>{max(7, len(k))}}" if isinstance(r[k], int) else f"{r[k]:>{max(7, len(k))}.3f}"
                     for k in keys)
            lines.append(f"{r['mechanism']:<{width}}  " + "  ".join(cells))
        lines.append(f"chance {self.ablation.chance:.3f}; {len(self.unmatched)} alive subcomponents unmatched")
        return "\n".join(lines)


def score_mechanisms(method: Any, dec: nn.Module, model: nn.Module, targets: Sequence[Target], task: MechanismTask,
                     *, threshold: float = IMPORTANT, precision_bar: float = PRECISION_BAR,
                     own_targets_only: bool = True) -> MechanismScores:
    """Match, ablate and compare weights (module docstring) on the task's batch.

    Args:
        method, dec: the decomposition :class:`~paramlens.decompose.fit.Method` and its module.
        model, targets: the decomposed model and targets.
        threshold, precision_bar: the matching rule's (see :func:`~paramlens.decompose.mechanism_match.match_mechanisms`).
        own_targets_only: a mechanism claims subcomponents only of targets where it owns weights (positions alone
            cannot tell apart mechanisms exercised at the same positions, such as embeddings and unembedding).
    """
    _, inputs = capture(model, targets, task.x)
    importance = {n: g.detach() for n, g in method.importance(dec, model, task.x, inputs).items()}
    owners = owners_of(task.matrices, task.names) if own_targets_only else None
    exercised = {n: task.exercised[n] for n in task.names}
    matches = match_mechanisms(importance, exercised, where=task.where, owners=owners, threshold=threshold,
                               precision_bar=precision_bar)
    members = {n: m.members for n, m in matches.items()}
    ablation = ablation_accuracies(method, dec, model, targets, task.x, members, task.accuracy, chance=task.chance,
                                   spared_fn=task.spared, shapes={n: g.shape for n, g in importance.items()})
    weights = weight_match(method, dec, targets, members, task.matrices, task.names)
    left = unmatched(importance, exercised, matches, where=task.where, threshold=threshold)
    return MechanismScores(matches, ablation, weights, left)
