"""The units a decomposition is read in, and the model with some of them ablated.

A unit is what one importance value switches: an SPD subcomponent (one target, one rank-one piece), or an APD
component (one piece of every target at once, all switched by the same importance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from paramlens.core.weights import Target
from paramlens.decompose.fit import Method
from paramlens.errors import ParamLensError


@dataclass(frozen=True)
class Units:
    """The units of a decomposition, in a fixed order: SPD target by target, each target's ``C`` in index order;
    APD its ``C`` components.

    Attributes:
        names: ``"target:index"`` (SPD) or ``"component:index"`` (APD), one per unit.
        parts: for each unit, ``{target name: index}`` of the pieces it is made of.
        shared: True when every target carries the same importance (APD): a batch's importances are read once.
    """

    names: list[str]
    parts: list[dict[str, int]]
    shared: bool

    @classmethod
    def of(cls, method: Method, targets: Sequence[Target], C: int) -> Units:
        if method.name == "apd":
            return cls([f"component:{c}" for c in range(C)], [{t.name: c for t in targets} for c in range(C)], True)
        return cls([f"{t.name}:{c}" for t in targets for c in range(C)], [{t.name: c} for t in targets for c in range(C)],
                   False)

    def __len__(self) -> int:
        return len(self.names)

    def flat(self, importance: dict[str, Tensor], targets: Sequence[Target]) -> Tensor:
        """``(positions, units)``: the importances ``{target: (..., C)}`` of a batch, leading dimensions flattened."""
        parts = [importance[targets[0].name]] if self.shared else [importance[t.name] for t in targets]
        return torch.cat([p.reshape(-1, p.shape[-1]) for p in parts], dim=1).float()

    def index(self, spec: str) -> int:
        """The unit named ``spec`` (``target:index`` or ``component:index``); a clear error naming some others."""
        try:
            return self.names.index(spec)
        except ValueError:
            shown = ", ".join(self.names[:3])
            raise ParamLensError(f"'{spec}' is not a unit of this decomposition (units look like {shown}, ...; "
                                 f"{len(self.names)} in all)") from None


def ablated(method: Method, dec: nn.Module, model: nn.Module, targets: Sequence[Target],
            parts: Sequence[dict[str, int]]) -> dict[str, Tensor]:
    """``{target name: (d_out, d_in)}``: each touched target's weight minus the pieces of the given units (the real
    weights, so what is not ablated stays exactly the model)."""
    by_name = {t.name: t for t in targets}
    out: dict[str, Tensor] = {}
    for part in parts:
        for name, c in part.items():
            t = by_name[name]
            if name not in out:
                out[name] = t.matrix(model).detach().clone()
            out[name] -= method.component_matrix(dec, t, c).to(out[name])
    return out
