"""Evaluate a decomposition on a fixed batch: ground-truth scores, sparsity, and reconstruction under masks.

Reconstruction losses (the method's output loss against the target model's output) with every target's
subcomponents scaled by:

- ``ci``: the importances themselves;  ``rounded``: importances rounded to 0/1;
- ``stochastic``: ``g + (1 - g) r`` with ``r ~ U(0, 1)``, as in training;
- ``unmasked``: 1 for all (the plain sum of subcomponents);  ``random``: ``r ~ U(0, 1)``, ignoring ``g``;
- ``zero``: 0 for all (the targets' weights ablated; the scale against which the others read).

For token inputs compared by KL (language models) it adds the next-token cross-entropy of the target model, of
the ``ci`` masked model and of the ablated model, ``ce_unrecovered_pct``: ``100 (CE_ci - CE) / (CE_zero - CE)``
(NaN when ablating the targets does not raise the CE), and ``kl_unrecovered_pct``: ``100 KL_ci / KL_zero``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.core.ground_truth import GroundTruth
from paramlens.core.weights import Target
from paramlens.decompose import metrics
from paramlens.decompose.forward import capture, output_loss, run_maps

ONE_HOT_VALUE = 0.75


@dataclass
class Evaluation:
    """Scalars for the log and the result; tensors for figures (``ci_one_hot/<target>``, ``cos/<target>``)."""

    scalars: dict[str, float] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)


def _next_token_ce(logits: Tensor, tokens: Tensor) -> float:
    return float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)))


def evaluate(method: Any, dec: nn.Module, model: nn.Module, targets: Sequence[Target], x: Tensor, cfg: Any,
             truth: GroundTruth | None, generator: torch.Generator | None) -> Evaluation:
    """Score ``dec`` on the batch ``x``; ``generator`` draws the stochastic and random masks (None: seed 0)."""
    generator = generator or torch.Generator().manual_seed(0)
    ev = Evaluation()
    target_out, inputs = capture(model, targets, x)
    g = {n: v.detach() for n, v in method.importance(dec, model, x, inputs).items()}
    alive: dict[str, Tensor] = {}
    for t in targets:
        alive[t.name] = metrics.alive(g[t.name])
        ev.scalars[f"ci_l0/{t.name}"] = metrics.ci_l0(g[t.name])
        ev.scalars[f"alive/{t.name}"] = float(alive[t.name].sum())
    if x.is_floating_point() and x.dim() == 2:
        ev.scalars["active_features"] = float((x != 0).float().sum(-1).mean())
    with torch.no_grad():
        r = {n: torch.rand(v.shape, generator=generator).to(v.device) for n, v in g.items()}
        masks = {
            "ci": g,
            "rounded": {n: (v > 0.5).float() for n, v in g.items()},
            "stochastic": {n: v + (1 - v) * r[n] for n, v in g.items()},
            "unmasked": {n: None for n in g},
            "random": {n: torch.rand(v.shape, generator=generator).to(v.device) for n, v in g.items()},
            "zero": {n: torch.zeros_like(v) for n, v in g.items()},
        }
        outs = {kind: run_maps(model, dec.maps(m), x) for kind, m in masks.items()}
        for kind, out in outs.items():
            ev.scalars[f"recon/{kind}"] = float(output_loss(out, target_out, cfg.output_loss))
        if not x.is_floating_point() and cfg.output_loss == "kl":  # next-token models
            ce, ce_ci, ce_zero = (_next_token_ce(o, x) for o in (target_out, outs["ci"], outs["zero"]))
            gap = ce_zero - ce  # the ablation must cost something for a share of it to mean anything
            ev.scalars.update(ce=ce, ce_ci=ce_ci, ce_zero=ce_zero,
                              ce_unrecovered_pct=100 * (ce_ci - ce) / gap if gap > 1e-6 else math.nan,
                              kl_unrecovered_pct=100 * ev.scalars["recon/ci"] / max(ev.scalars["recon/zero"], 1e-12))
    if truth is not None:
        _ground_truth_scores(ev, method, dec, targets, truth, alive)
    if x.is_floating_point() and x.dim() == 2:
        _one_hot_scores(ev, method, dec, model, targets, x.shape[1], truth)
    return ev


def _ground_truth_scores(ev: Evaluation, method: Any, dec: nn.Module, targets: Sequence[Target],
                         truth: GroundTruth, alive: dict[str, Tensor]) -> None:
    scores: dict[str, list[float]] = {"mmcs": [], "ml2r": []}
    for t in targets:
        directions = truth.input_directions.get(t.name)
        if directions is None:
            continue
        if t.name in truth.matrices:
            truth_out = metrics.mechanism_outputs(truth.matrices[t.name], directions)
            mmcs, ml2r, cos = metrics.mmcs_ml2r(method.outputs_along(dec, t, directions), truth_out)
            ev.scalars[f"mmcs/{t.name}"], ev.scalars[f"ml2r/{t.name}"] = mmcs, ml2r
            ev.tensors[f"cos/{t.name}"] = cos
            scores["mmcs"].append(mmcs)
            scores["ml2r"].append(ml2r)
        else:
            reads = method.read_directions(dec, t)
            for k, v in metrics.direction_recovery(reads, directions, alive[t.name]).items():
                ev.scalars[f"{k}/{t.name}"] = v
    for k, values in scores.items():
        if values:
            ev.scalars[k] = sum(values) / len(values)


def _one_hot_scores(ev: Evaluation, method: Any, dec: nn.Module, model: nn.Module, targets: Sequence[Target],
                    n_features: int, truth: GroundTruth | None) -> None:
    """Importances for each feature alone at ``ONE_HOT_VALUE``, and their error against the known pattern."""
    probe = torch.eye(n_features) * ONE_HOT_VALUE
    _, inputs = capture(model, targets, probe)
    g = method.importance(dec, model, probe, inputs)
    for t in targets:
        ci = g[t.name].detach()
        ev.tensors[f"ci_one_hot/{t.name}"] = ci
        known = truth.matrices.get(t.name) if truth is not None else None
        if known is None:
            continue
        if len(known) == 1 and (k := int(torch.linalg.matrix_rank(known[0].double()))) > 1:
            # one mechanism of rank k: k subcomponents on for every input
            ev.scalars[f"ci_error/{t.name}"] = float(metrics.dense_ci_error(ci, k))
        elif len(known) == n_features:
            ev.scalars[f"ci_error/{t.name}"] = float(metrics.identity_ci_error(ci))
