"""Ablate the subcomponents matched to one mechanism at a time and measure every mechanism's task accuracy.

The model runs through the decomposition (``dec.maps(masks)``) with every mask at 1 (intact: the plain sum of the
subcomponents) and then, for each mechanism, with its members' masks at 0 on every input. If the members are the
mechanism, its own accuracy falls to about chance and the outputs that do not need it stay right.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from paramlens.core.mechanism_task import AccuracyFn
from paramlens.core.weights import Target
from paramlens.decompose.forward import capture, run_maps
from paramlens.decompose.mechanism_match import Subcomponent
from paramlens.errors import ParamLensError

"""``(logits, mechanism) -> accuracy``: share (in [0, 1]) of the outputs that the named mechanism serves which the
logits (the model's output on the batch) get right; NaN where the batch has no such output."""


@dataclass(frozen=True)
class Ablation:
    """Accuracies (shares in [0, 1]) of the model run through the decomposition.

    Attributes:
        intact: ``{mechanism: accuracy}`` with every mask at 1.
        ablated: ``{ablated mechanism: {mechanism: accuracy}}`` with the ablated mechanism's members at 0.
        chance: the accuracy of guessing, as the caller states it (NaN: not given).
        spared_intact, spared: ``{mechanism: accuracy}`` on the outputs that do not need the mechanism, intact and
            with its members ablated (empty without a ``spared_fn``).
    """

    intact: dict[str, float]
    ablated: dict[str, dict[str, float]]
    chance: float = math.nan
    spared_intact: dict[str, float] = field(default_factory=dict)
    spared: dict[str, float] = field(default_factory=dict)


def ablation_masks(shapes: Mapping[str, Sequence[int]], members: Collection[Subcomponent],
                   device: torch.device | str = "cpu") -> dict[str, Tensor | None]:
    """``{target: mask}`` for ``dec.maps``: ones ``shapes[target]`` (``(..., C)``) with 0 at the members'
    subcomponents, None (every subcomponent at 1) for targets without members."""
    masks: dict[str, Tensor | None] = {t: None for t in shapes}
    for t, c in members:
        if t not in shapes:
            raise ParamLensError(f"member ({t!r}, {c}) names no decomposed target; targets: {', '.join(shapes)}")
        if not 0 <= c < shapes[t][-1]:
            raise ParamLensError(f"member ({t!r}, {c}): the target has {shapes[t][-1]} subcomponents")
        if masks[t] is None:
            masks[t] = torch.ones(tuple(shapes[t]), device=device)
        masks[t][..., c] = 0.0
    return masks


def importance_shapes(method: Any, dec: nn.Module, model: nn.Module, targets: Sequence[Target],
                      x: Tensor) -> dict[str, torch.Size]:
    """``{target: (..., C)}``: the shape of each target's importances (and masks) on the batch ``x``."""
    _, inputs = capture(model, targets, x)
    return {n: g.shape for n, g in method.importance(dec, model, x, inputs).items()}


def ablation_accuracies(method: Any, dec: nn.Module, model: nn.Module, targets: Sequence[Target], x: Tensor,
                        members: Mapping[str, Collection[Subcomponent]], accuracy_fn: AccuracyFn, *,
                        chance: float = math.nan, spared_fn: AccuracyFn | None = None,
                        shapes: Mapping[str, Sequence[int]] | None = None) -> Ablation:
    """Every mechanism's accuracy with the decomposition intact and with each mechanism's members ablated.

    Args:
        method: the decomposition :class:`~paramlens.decompose.fit.Method`; dec: its module.
        model, targets: the decomposed model and its targets; x: the batch (token ids ``(B, T)``).
        members: ``{mechanism: (target name, subcomponent index) pairs}`` (from
            :func:`~paramlens.decompose.mechanism_match.match_mechanisms`); a mechanism without members is
            ablated by nothing.
        accuracy_fn: accuracy of each mechanism's outputs; spared_fn: accuracy of the outputs that do not need the
            mechanism (optional).
        chance: the accuracy of guessing, reported with the results.
        shapes: ``{target: (..., C)}`` importance shapes on ``x`` (None: from one importance pass).
    """
    shapes = shapes if shapes is not None else importance_shapes(method, dec, model, targets, x)
    names = list(members)
    with torch.no_grad():
        intact_out = run_maps(model, dec.maps({t: None for t in shapes}), x)
        outs = {m: run_maps(model, dec.maps(ablation_masks(shapes, members[m], x.device)), x) if members[m] else intact_out
                for m in names}
    intact = {m: accuracy_fn(intact_out, m) for m in names}
    ablated = {m: {k: accuracy_fn(out, k) for k in names} for m, out in outs.items()}
    if spared_fn is None:
        return Ablation(intact, ablated, chance)
    return Ablation(intact, ablated, chance, {m: spared_fn(intact_out, m) for m in names},
                    {m: spared_fn(outs[m], m) for m in names})
