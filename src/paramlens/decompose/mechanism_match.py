"""Match a decomposition's subcomponents to known mechanisms by where they are important.

Inputs: importances ``{target: (..., C)}`` on a batch (``...``: the batch dimensions of the targets' inputs,
``(B, T)`` for token windows) and, for every known mechanism, the positions of the batch that exercise it,
``(...)`` bool. A subcomponent ``(target, c)`` is *active* at a position where its importance exceeds
``threshold``; it is *alive* when active at some scored position.

The rule, for each alive subcomponent with active positions ``A`` and each mechanism with exercised positions
``E`` (counted over the scored positions ``where`` only):

1. precision ``|A & E| / |A|`` (how often the subcomponent is active only where the mechanism is exercised)
   and recall ``|A & E| / |E|`` (how much of the mechanism's positions it covers);
2. the mechanisms with precision at least ``precision_bar`` are eligible (with ``owners``: only mechanisms that
   own the subcomponent's target);
3. the subcomponent goes to the eligible mechanism of highest recall: the most specific mechanism whose
   positions contain its activity. A subcomponent active at every position is eligible only for mechanisms
   exercised at every position (embeddings, unembedding, a final table). Mechanisms tied on recall (exercised
   at the same positions) each claim it; such members are counted as ``shared``. No eligible mechanism:
   the subcomponent stays unmatched.

Key and value weights of attention act at the positions attended to, not at the query that needs the head; a
caller whose exercised positions are the queries' gets a lower precision for them (or marks both, as
:func:`~paramlens.models.transformers.tasks.induction_exercised` does).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.errors import ParamLensError

#: importance above which a subcomponent counts as active at a position (the evaluation's rounding point)
IMPORTANT = 0.5
#: the least precision with which a subcomponent's activity must mark a mechanism to be matched to it
PRECISION_BAR = 0.9

Subcomponent = tuple[str, int]
"""``(target name, subcomponent index)``."""


@dataclass(frozen=True)
class MechanismMatch:
    """The subcomponents matched to one mechanism and how well their activity marks it.

    Attributes:
        name: the mechanism.
        members: matched ``(target name, subcomponent index)`` pairs, sorted.
        precision: share (in [0, 1]) of the scored positions where some member is active that exercise the
            mechanism; 0 without members.
        recall: share (in [0, 1]) of the scored positions exercising the mechanism where some member is active;
            0 without members.
        exercised: number of scored positions that exercise the mechanism.
        shared: number of members also matched to another mechanism (tied on the rule's recall).
    """

    name: str
    members: tuple[Subcomponent, ...]
    precision: float
    recall: float
    exercised: int
    shared: int

    @property
    def matched(self) -> bool:
        """Whether any subcomponent was matched to the mechanism."""
        return bool(self.members)


def active_positions(importance: Mapping[str, Tensor], exercised: Mapping[str, Tensor], where: Tensor | None,
                     threshold: float) -> dict[str, Tensor]:
    """``{target: (N, C) bool}``: where each subcomponent is active, over the ``N`` scored positions.

    Checks that every importance is ``(..., C)`` and every exercised mask (and ``where``) ``(...)`` bool."""
    if not exercised:
        raise ParamLensError("no mechanisms given: exercised must map at least one mechanism name to a bool mask")
    shape = next(iter(exercised.values())).shape
    for name, mask in exercised.items():
        if mask.dtype != torch.bool or mask.shape != shape:
            raise ParamLensError(f"exercised mask of {name!r} is {mask.dtype} {tuple(mask.shape)}; every mask must be "
                                 f"bool of one shape, here {tuple(shape)}")
    if where is not None and (where.dtype != torch.bool or where.shape != shape):
        raise ParamLensError(f"where is {where.dtype} {tuple(where.shape)}; expected bool {tuple(shape)}")
    keep = scored(shape, where)
    return {t: (spread(g, shape, t).reshape(-1, g.shape[-1]) > threshold)[keep] for t, g in importance.items()}


def spread(g: Tensor, shape: torch.Size, target: str) -> Tensor:
    """Importances ``(..., C)`` broadcast to ``(*shape, C)`` (a position embedding reads positions ``(T,)``,
    the same for every sequence: its importances are ``(T, C)``); raises unless ``...`` broadcasts to ``shape``."""
    try:
        fits = torch.broadcast_shapes(g.shape[:-1], shape) == shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ParamLensError(f"importance of {target!r} is {tuple(g.shape)}; expected (..., C) with ... "
                             f"broadcasting to {tuple(shape)}, the exercised masks' shape")
    return g.detach().cpu().expand(*shape, g.shape[-1])


def scored(shape: torch.Size, where: Tensor | None) -> Tensor:
    """``(prod(shape),)`` bool: the flattened positions to score (all when ``where`` is None)."""
    return torch.ones(shape.numel(), dtype=torch.bool) if where is None else where.reshape(-1).cpu()


def claims(active: Tensor, E: Tensor, allowed: Tensor, precision_bar: float) -> Tensor:
    """``(C, M)`` bool: which mechanisms claim each subcomponent of one target, by the module's rule.

    Args:
        active: ``(N, C)`` bool, where each subcomponent is active.
        E: ``(N, M)`` bool, where each mechanism is exercised.
        allowed: ``(M,)`` bool, the mechanisms that may claim this target's subcomponents.
    """
    inter = active.double().T @ E.double()  # (C, M): positions both active and exercised
    precision = inter / active.sum(0).clamp_min(1).double()[:, None]
    recall = inter / E.sum(0).clamp_min(1).double()[None, :]
    eligible = (precision >= precision_bar) & (inter > 0) & allowed[None, :]
    score = torch.where(eligible, recall, torch.full_like(recall, -1.0))
    best = score.max(1, keepdim=True).values
    return eligible & (score >= best - 1e-12)


def match_mechanisms(importance: Mapping[str, Tensor], exercised: Mapping[str, Tensor], *,
                     where: Tensor | None = None, owners: Mapping[str, Collection[str]] | None = None,
                     threshold: float = IMPORTANT, precision_bar: float = PRECISION_BAR) -> dict[str, MechanismMatch]:
    """Match subcomponents to mechanisms by the rule of the module docstring.

    Args:
        importance: ``{target: (..., C)}`` importances in ``[0, 1]`` on one batch.
        exercised: ``{mechanism: (...) bool}``: the positions of the batch that exercise each mechanism.
        where: ``(...) bool``, the positions to score (None: all), e.g. every position but BOS.
        owners: ``{mechanism: target names}``: a mechanism claims subcomponents of these targets only
            (None: of any target; a mechanism missing from it claims none).
        threshold: importance above which a subcomponent is active.
        precision_bar: least precision (in [0, 1]) for a mechanism to be eligible.

    Returns:
        ``{mechanism: MechanismMatch}``, in the order of ``exercised``.
    """
    active = active_positions(importance, exercised, where, threshold)
    names = list(exercised)
    keep = scored(next(iter(exercised.values())).shape, where)
    E = torch.stack([m.reshape(-1).cpu()[keep] for m in exercised.values()], 1)
    claimed: dict[str, Tensor] = {}
    for t, a in active.items():
        allowed = torch.tensor([owners is None or t in owners.get(n, ()) for n in names], dtype=torch.bool)
        claimed[t] = claims(a, E, allowed, precision_bar)
    return {n: _summarise(n, k, active, claimed, E[:, k]) for k, n in enumerate(names)}


def _summarise(name: str, k: int, active: dict[str, Tensor], claimed: dict[str, Tensor], E: Tensor) -> MechanismMatch:
    """Mechanism ``k``'s match: its members and the precision and recall of their union; ``E`` ``(N,)`` bool."""
    members, shared = [], 0
    union = torch.zeros(len(E), dtype=torch.bool)
    for t in sorted(claimed):
        cs = claimed[t][:, k].nonzero().flatten().tolist()
        members += [(t, c) for c in cs]
        shared += int((claimed[t][cs].sum(1) > 1).sum())
        if cs:
            union |= active[t][:, cs].any(1)
    hit = int((union & E).sum())
    precision = hit / int(union.sum()) if members else 0.0
    recall = hit / int(E.sum()) if members and E.any() else 0.0
    return MechanismMatch(name, tuple(members), precision, recall, int(E.sum()), shared)


def unmatched(importance: Mapping[str, Tensor], exercised: Mapping[str, Tensor],
              matches: Mapping[str, MechanismMatch], *, where: Tensor | None = None,
              threshold: float = IMPORTANT) -> list[Subcomponent]:
    """The alive subcomponents (active at some scored position) that no mechanism claimed, sorted; arguments as
    :func:`match_mechanisms`."""
    claimed = {s for m in matches.values() for s in m.members}
    active = active_positions(importance, exercised, where, threshold)
    return [(t, c) for t in sorted(active) for c in active[t].any(0).nonzero().flatten().tolist()
            if (t, c) not in claimed]
