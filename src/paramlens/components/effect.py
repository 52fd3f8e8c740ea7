"""What a unit does: the model's output with the unit ablated (its pieces taken out of the real weights) against the
model's own output, where the unit fires most.

On token sequences (a language model, a transformer of the zoo), at each of the unit's top positions: the KL divergence of the next-token distribution
``KL(p_model || p_ablated)`` (nats), and the change of every token's log-probability; averaged over the positions,
the tokens whose log-probability falls most when the unit is ablated are the ones it *promotes*, those that rise
the ones it *suppresses*. On a toy model the same with the output vector: the mean squared change of the output,
and the outputs it raises (promotes) or lowers (suppresses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.components.units import Units, ablated
from paramlens.core.progress import track
from paramlens.core.weights import Target, run_with
from paramlens.decompose.fit import Method
from paramlens.decompose.forward import logits_of


@dataclass
class Effects:
    """Per unit (``S`` units, ``n`` listed): ``size`` ``(S,)`` (KL in nats, or the output's mean squared change; NaN
    for a unit that never fired), ``promoted`` / ``suppressed`` ``(S, n)`` token (or output) ids with ``promoted_by``
    / ``suppressed_by`` ``(S, n)``: the mean fall / rise of their log-probability (or output) on ablation."""

    size: Tensor
    promoted: Tensor
    promoted_by: Tensor
    suppressed: Tensor
    suppressed_by: Tensor


def output_change(model: nn.Module, replaced: dict[str, Tensor], x: Tensor, at: Tensor | None,
                  sequences: bool) -> tuple[Tensor, Tensor]:
    """``(size (m,), change (m, n_out))`` of the model's output on ``x`` ``(m, ...)`` with ``replaced`` weights: for
    token sequences at token ``at[i]`` of sequence ``i`` (KL and the change of log-probabilities), else of the whole
    output (mean squared change and the change)."""
    with torch.no_grad():
        base, edited = logits_of(model(x)), logits_of(run_with(model, replaced, x))
    if not sequences:
        change = (edited - base).reshape(len(x), -1)
        return change.pow(2).mean(-1), change
    rows = torch.arange(len(x))
    logp, logq = (F.log_softmax(o[rows, at].float(), dim=-1) for o in (base, edited))
    return (logp.exp() * (logp - logq)).sum(-1), logq - logp


def effects(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target], units: Units, data: Tensor,
            top_positions: Tensor, top_values: Tensor, threshold: float, n_contexts: int, n_listed: int,
            sequences: bool, progress: bool = True) -> Effects:
    """Each unit's :class:`Effects` on its ``n_contexts`` best positions where it fires (``top_positions``,
    ``top_values`` ``(S, k)`` from the harvest; positions index the flattened ``data``: tokens of ``(n, T)`` sequences
    when ``sequences``, else inputs)."""
    per_row = data.shape[1] if sequences else 1
    sizes, changes = torch.full((len(units),), float("nan")), []
    for s in track(range(len(units)), "effects", disable=not progress, transient=True):
        keep = top_values[s, :n_contexts] > threshold
        pos = top_positions[s, :n_contexts][keep]
        if not len(pos):
            changes.append(None)
            continue
        replaced = ablated(method, dec, model, targets, [units.parts[s]])
        size, change = output_change(model, replaced, data[pos // per_row], pos % per_row, sequences)
        sizes[s] = size.mean()
        changes.append(change.mean(0))
    width = next((len(c) for c in changes if c is not None), 1)
    n = min(n_listed, width)
    mean = torch.stack([c if c is not None else torch.zeros(width) for c in changes])
    down, up = (-mean).topk(n, dim=1), mean.topk(n, dim=1)
    return Effects(sizes, down.indices, down.values, up.indices, up.values)
