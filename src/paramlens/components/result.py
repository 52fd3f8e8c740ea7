"""The saved harvest of a decomposition: what every unit fires on and what it does."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from paramlens.core.runs import Result


@dataclasses.dataclass
class Harvest(Result):
    """Per unit (``S`` units in :class:`~paramlens.components.units.Units` order; ``k`` top positions).

    Attributes:
        method: the decomposition's method; units: the units' names; targets: the decomposed targets.
        sequences: True when the data were token sequences ``(n, T)`` (positions are tokens), else inputs.
        config: the :class:`~paramlens.components.harvest.HarvestConfig` used; corpus: what was read (corpus name and
            token budget, or the number of toy inputs).
        n_positions: tokens (or inputs) harvested.
        density: ``(S,)`` share of positions where the unit fires; mean_importance: ``(S,)``.
        top_values, top_positions: ``(S, k)``, best first (-inf / -1: fewer positions than ``k``).
        contexts: ``(S, k, 2 c + 1)`` token ids around each top position (-1: none), or ``(S, k, n_in)`` toy inputs;
            context_importance: the unit's importance on each context token ``(S, k, 2 c + 1)``, or ``(S, k)``.
        token_ids: ``(V_kept,)`` the vocabulary counted; token_fires: ``(S, V_kept + 1)`` firings per token (last
            column: every other token); token_counts: ``(V_kept + 1,)`` positions per token.
        coactivation: ``(S, S)`` positions where both units fire (``(0, 0)``: too many units to count).
        effect_size, promoted, promoted_by, suppressed, suppressed_by: see
            :class:`~paramlens.components.effect.Effects`.
    """

    kind = "harvest"
    method: str
    units: list[str]
    targets: list[str]
    sequences: bool
    config: dict[str, Any]
    corpus: dict[str, Any]
    n_positions: int
    density: Tensor
    mean_importance: Tensor
    top_values: Tensor
    top_positions: Tensor
    contexts: Tensor
    context_importance: Tensor
    token_ids: Tensor
    token_fires: Tensor
    token_counts: Tensor
    coactivation: Tensor
    effect_size: Tensor
    promoted: Tensor
    promoted_by: Tensor
    suppressed: Tensor
    suppressed_by: Tensor

    def alive(self) -> Tensor:
        """``(S,)`` bool: units that fired at least once."""
        return self.density > 0

    def top_tokens(self, unit: int, n: int = 10) -> list[dict[str, Any]]:
        """The input tokens unit ``unit`` fires on most: ``{"token": id (None: the pooled rest), "fires": count,
        "rate": share of that token's positions where it fires}``, most firings first."""
        fires = self.token_fires[unit]
        order = fires.argsort(descending=True)[:n]
        ids = [*self.token_ids.tolist(), None]
        return [{"token": ids[i], "fires": int(fires[i]), "rate": float(fires[i] / self.token_counts[i].clamp(min=1))}
                for i in order.tolist() if fires[i] > 0]

    def summary(self) -> str:
        alive = self.alive()
        where = "tokens" if self.sequences else "inputs"
        lines = [f"harvest of {len(self.units)} units over {self.n_positions} {where}: {int(alive.sum())} fire at "
                 f"least once (importance > {self.config['threshold']})"]
        for i in self.density.argsort(descending=True)[:min(5, int(alive.sum()))].tolist():
            lines.append(f"  {self.units[i]}: density {float(self.density[i]):.4f}, mean importance "
                         f"{float(self.mean_importance[i]):.4f}, effect {float(self.effect_size[i]):.4g}")
        return "\n".join(lines)

    def table(self) -> list[dict[str, Any]]:
        return [{"unit": u, "density": float(d), "mean importance": float(m), "effect": float(e)}
                for u, d, m, e in zip(self.units, self.density, self.mean_importance, self.effect_size)
                if d > 0]

    def coactivation_rate(self) -> Tensor:
        """``(S, S)``: of the positions where the row unit fires, the share where the column unit also fires."""
        fires = self.coactivation.diagonal().clamp(min=1)
        return self.coactivation.float() / fires[:, None].float() if self.coactivation.numel() else torch.empty(0, 0)
