"""Scores of a decomposition against ground truth and against the target model's outputs.

- MMCS / ML2R (mean max cosine similarity, mean L2 ratio): for each known mechanism ``i`` with input
  direction ``v_i``, compare what the mechanism writes, ``M_i v_i``, with what each subcomponent writes for
  the same input, ``P_c v_i``; take the best subcomponent ``c*`` by cosine; ML2R is
  ``|P_c* v_i| / |M_i v_i|`` (1 = no shrinkage). For TMS, ``v_i = e_i`` and this is the column-wise
  comparison of the SPD/APD papers.
- Direction recovery (no mechanism matrices known, as in the residual MLP): the best ``|cos|`` between
  each true input direction and an alive subcomponent's read direction, and whether each direction gets a
  subcomponent of its own.
- CI-L0: subcomponents with importance above a threshold per input; alive: above it on some input.
- Identity-CI error: on one-hot inputs, how far the importances are from "one subcomponent per feature"
  (identity pattern) or "all ``k`` identity subcomponents on for every feature" (dense pattern).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ALIVE_THRESHOLD = 0.1


def mechanism_outputs(mechanisms: Tensor, directions: Tensor) -> Tensor:
    """``M_i v_i``: ``(n, d_out)`` from mechanisms ``(n, d_out, d_in)`` and unit directions ``(n, d_in)``."""
    return torch.einsum("noi,ni->no", mechanisms, directions)


def mmcs_ml2r(components: Tensor, truth: Tensor) -> tuple[float, float, Tensor]:
    """``(MMCS, ML2R, cosines (n, C))`` from component outputs ``(n, C, d_out)`` and true outputs ``(n, d_out)``."""
    cos = F.cosine_similarity(components, truth.unsqueeze(1), dim=-1, eps=1e-12)
    best = cos.argmax(dim=1)
    matched = components[torch.arange(len(truth)), best].norm(dim=-1)
    ratio = matched / truth.norm(dim=-1).clamp_min(1e-12)
    return float(cos.max(dim=1).values.mean()), float(ratio.mean()), cos


def span_cosines(V: Tensor, directions: Tensor) -> Tensor:
    """``(n, C)``: ``|cos|`` between each true unit direction ``(n, d_in)`` and each read direction ``V`` ``(d_in, C)``
    taken inside the span of the true directions (the part of a read direction orthogonal to every direction the
    inputs can take changes no output)."""
    basis, _ = torch.linalg.qr(directions.T.double())  # (d_in, n) orthonormal basis of the span
    inside = (basis @ (basis.T @ V.double())).float()
    return (directions @ F.normalize(inside, dim=0)).abs()


def direction_recovery(V: Tensor, directions: Tensor, alive: Tensor, threshold: float = 0.9) -> dict[str, float]:
    """How well alive read directions ``V[:, alive]`` ``(d_in, C)`` match true unit directions ``(n, d_in)``.

    Cosines are taken inside the span of the true directions: a read direction's part orthogonal to every
    direction the inputs can take (for example what is left of a random init outside the span of a
    residual MLP's embedding) changes no output, so it is projected out first. Returns the mean best
    ``|cos|``, and the number of directions whose best alive subcomponent has ``|cos| >= threshold`` and is
    the best match of no other direction (one subcomponent per feature).
    """
    if not bool(alive.any()):
        return {"direction_cos": 0.0, "directions_recovered": 0.0}
    cos = span_cosines(V[:, alive], directions)  # (n, alive)
    best_cos, best = cos.max(dim=1)
    good = best_cos >= threshold
    counts = torch.bincount(best[good], minlength=cos.shape[1])
    own = good & (counts[best] == 1)
    return {"direction_cos": float(best_cos.mean()), "directions_recovered": float(own.sum())}


def ci_l0(importance: Tensor, threshold: float = ALIVE_THRESHOLD) -> float:
    """Mean number of subcomponents per input with importance above ``threshold``; ``importance`` (..., C)."""
    return float((importance > threshold).float().sum(-1).mean())


def alive(importance: Tensor, threshold: float = ALIVE_THRESHOLD) -> Tensor:
    """``(C,)`` bool: subcomponents whose importance exceeds ``threshold`` on at least one input."""
    return (importance.reshape(-1, importance.shape[-1]) > threshold).any(dim=0)


def identity_ci_error(ci: Tensor, tol: float = 0.1) -> int:
    """Errors against "each one-hot input turns on exactly its own subcomponent": ``ci`` is
    ``(n_features, C)``. Counts rows whose best entry is below ``1 - tol``, rows sharing their best column
    with another row, and every other entry above ``tol``."""
    best = ci.argmax(dim=1)
    errors = int((ci.max(dim=1).values < 1 - tol).sum())
    errors += int(len(best) - len(torch.unique(best)))
    off = ci.clone()
    off[torch.arange(len(best)), best] = 0.0
    return errors + int((off > tol).sum())


def dense_ci_error(ci: Tensor, k: int, tol: float = 0.1) -> int:
    """Errors against "the same ``k`` subcomponents are on for every input" (a rank-``k`` identity):
    among the ``k`` columns with the largest sums, entries below ``1 - tol``; elsewhere entries above ``tol``."""
    order = ci.sum(dim=0).argsort(descending=True)
    on, off = ci[:, order[:k]], ci[:, order[k:]]
    return int((on < 1 - tol).sum()) + int((off > tol).sum())
