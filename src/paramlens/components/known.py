"""On a model with known mechanisms (its ``ground_truth()``): which known mechanism each unit's weights belong to.

Where the ground truth gives a mechanism's weight block (``matrices``), a piece's score for mechanism ``k`` is the
share of its squared norm inside ``k``'s block (the non-zero entries of ``matrices[k]``); where it gives only the
direction the mechanism reads (``input_directions``), the ``|cos|`` between the piece's read direction and it, inside
the span of all of them (:func:`~paramlens.decompose.metrics.span_cosines`). A unit is named after its best-scoring
mechanism over its pieces when that score reaches ``MIN_SCORE``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from paramlens.components.units import Units
from paramlens.core.ground_truth import GroundTruth
from paramlens.core.weights import Target
from paramlens.decompose.fit import Method
from paramlens.decompose.metrics import span_cosines

MIN_SCORE = 0.5
"""Least block share (or ``|cos|``) for a unit to be named after a known mechanism."""


def mechanism_scores(method: Method, dec: nn.Module, target: Target, gt: GroundTruth, C: int) -> Tensor | None:
    """``(n_mechanisms, C)``: each piece of ``target`` against each of its known mechanisms (None: none known)."""
    if target.name in gt.matrices:
        blocks = (gt.matrices[target.name] != 0).float()  # (n, d_out, d_in)
        pieces = torch.stack([method.component_matrix(dec, target, c).detach().float() for c in range(C)])
        inside = torch.einsum("nij,cij->nc", blocks, pieces.square())
        return inside / pieces.square().sum((1, 2)).clamp(min=1e-30)
    if target.name in gt.input_directions:
        return span_cosines(method.read_directions(dec, target).detach().float(), gt.input_directions[target.name])
    return None


def known_mechanisms(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target],
                     units: Units) -> list[dict[str, Any] | None]:
    """Per unit, ``{"mechanism": name, "score": share or |cos|, "by": "block" or "direction"}`` of the known mechanism
    its weights belong to, or None (no such mechanism, or a model without ground truth)."""
    gt = model.ground_truth() if hasattr(model, "ground_truth") else None
    if gt is None:
        return [None] * len(units)
    C = len(units.names) if units.shared else len(units.names) // len(targets)
    scores = {t.name: mechanism_scores(method, dec, t, gt, C) for t in targets}
    out: list[dict[str, Any] | None] = []
    for part in units.parts:
        best = None
        for name, c in part.items():
            s = scores[name]
            if s is None or not len(s):
                continue
            k = int(s[:, c].argmax())
            if float(s[k, c]) >= MIN_SCORE and (best is None or float(s[k, c]) > best["score"]):
                best = {"mechanism": gt.name(name, k), "score": round(float(s[k, c]), 4),
                        "by": "block" if name in gt.matrices else "direction"}
        out.append(best)
    return out


def known_summary(known: list[dict[str, Any] | None], names: list[str]) -> str:
    """One line per known mechanism: the units named after it, best first."""
    found: dict[str, list[tuple[float, str]]] = {}
    for k, unit in zip(known, names):
        if k is not None:
            found.setdefault(k["mechanism"], []).append((k["score"], unit))
    if not found:
        return ""
    lines = ["known mechanisms (units whose weights belong to each):"]
    for mech, hits in found.items():
        hits.sort(reverse=True)
        shown = ", ".join(f"{u} ({s:.2f})" for s, u in hits[:4]) + (f", +{len(hits) - 4}" if len(hits) > 4 else "")
        lines.append(f"  {mech}: {shown}")
    return "\n".join(lines)
