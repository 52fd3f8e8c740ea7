"""Harvest: where each unit of a decomposition fires, over a corpus (or a toy model's inputs), in one streamed pass.

For every unit (:mod:`paramlens.components.units`): firing density (importance above ``threshold``), mean
importance, the ``top_k`` positions where its importance is highest, on a language model the input tokens it fires
on (counted per token of a kept vocabulary: the corpus's most frequent tokens, as many as ``max_token_cells`` allows,
the rest pooled), and co-activation with every other unit (the number of positions where both fire). Memory is fixed
by the number of units, not by the corpus; the pass checkpoints and resumes like a training run
(:func:`~paramlens.core.runs.fit_loop`). Then, for each unit, its top contexts (token windows with its importance
on every token, or the toy inputs) and its effect (:mod:`paramlens.components.effect`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from paramlens.components.effect import effects
from paramlens.components.result import Harvest
from paramlens.components.run import OpenRun
from paramlens.components.units import Units
from paramlens.core.runs import CHECKPOINT, RESULT, fit_loop, resume_config, save_config
from paramlens.core.weights import Target
from paramlens.decompose.fit import Method
from paramlens.decompose.forward import capture
from paramlens.decompose.metrics import ALIVE_THRESHOLD
from paramlens.errors import ParamLensError


class HarvestConfig(BaseModel):
    """What a harvest reads and keeps."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ALIVE_THRESHOLD, gt=0, lt=1, description="importance above which a unit fires")
    top_k: int = Field(16, ge=1, description="positions kept per unit: where its importance is highest")
    context: int = Field(8, ge=0, description="tokens shown either side of a firing token")
    batch_size: int = Field(16, ge=1, description="windows (or toy inputs) per forward pass")
    effect_contexts: int = Field(8, ge=1, description="of a unit's top positions, how many its effect is measured on")
    top_tokens: int = Field(10, ge=1, description="tokens (or outputs) listed as most promoted / suppressed")
    max_token_cells: int = Field(1 << 26, ge=1, description="units x kept vocabulary tokens counted (memory bound)")
    max_coactivation_units: int = Field(8192, ge=0, description="co-activation is counted up to this many units")
    n_inputs: int = Field(16384, ge=1, description="toy models: inputs drawn from the model's own source")
    corpus: str | None = Field(None, description="language models: the corpus to read (None: the run's)")
    tokens: int | None = Field(None, ge=2, description="language models: corpus tokens to read (None: the run's)")
    seed: int = 0


class Tally(nn.Module):
    """The running statistics of a harvest, as buffers (checkpointed with the pass).

    Buffers: ``fires`` ``(S,)`` positions where each unit fired; ``importance_sum`` ``(S,)``; ``top_values``,
    ``top_positions`` ``(S, k)`` (positions index the flattened data: window ``w``, token ``t`` is ``w * T + t``;
    -1 and -inf: none yet); ``token_fires`` ``(S, V_kept + 1)`` firings per kept token (last column: all others);
    ``coactivation`` ``(S, S)`` (``(0, 0)`` over the limit); ``positions`` ``()`` positions seen.
    """

    def __init__(self, n_units: int, top_k: int, n_kept_tokens: int, coactivation: bool):
        super().__init__()
        self.register_buffer("fires", torch.zeros(n_units, dtype=torch.int64))
        self.register_buffer("importance_sum", torch.zeros(n_units, dtype=torch.float64))
        self.register_buffer("top_values", torch.full((n_units, top_k), -math.inf))
        self.register_buffer("top_positions", torch.full((n_units, top_k), -1, dtype=torch.int64))
        self.register_buffer("token_fires", torch.zeros(n_units, n_kept_tokens + 1 if n_kept_tokens else 0,
                                                        dtype=torch.int64))
        side = n_units if coactivation else 0
        self.register_buffer("coactivation", torch.zeros(side, side, dtype=torch.int64))
        self.register_buffer("positions", torch.zeros((), dtype=torch.int64))

    def update(self, importance: Tensor, first: int, threshold: float, token_slots: Tensor | None) -> None:
        """Add a batch: ``importance`` ``(N, S)`` at positions ``first .. first + N - 1``; ``token_slots`` ``(N,)``:
        each position's column of ``token_fires`` (None: a toy model)."""
        fired = importance > threshold
        self.fires += fired.sum(0)
        self.importance_sum += importance.sum(0, dtype=torch.float64)
        k = self.top_values.shape[1]
        values = torch.cat([self.top_values, importance.T], dim=1)
        where = torch.cat([self.top_positions, torch.arange(first, first + len(importance)).expand(len(values), -1)],
                          dim=1)
        best = values.topk(min(k, values.shape[1]), dim=1)
        self.top_values.copy_(best.values)
        self.top_positions.copy_(where.gather(1, best.indices))
        if token_slots is not None:
            pos, unit = fired.nonzero(as_tuple=True)
            cells = unit * self.token_fires.shape[1] + token_slots[pos]
            self.token_fires.view(-1).index_add_(0, cells, torch.ones_like(cells))
        if self.coactivation.numel():
            f = fired.float()
            self.coactivation += (f.T @ f).round().long()
        self.positions += len(importance)


def kept_tokens(windows: Tensor, n_units: int, max_cells: int) -> tuple[Tensor, Tensor]:
    """``(kept ids (V_kept,), slot of every id (vocab,))``: the corpus's most frequent tokens, as many as
    ``max_cells / n_units`` allows; other ids map to the pooled slot ``V_kept``."""
    counts = torch.bincount(windows.reshape(-1))
    present = int((counts > 0).sum())
    n = max(1, min(present, max_cells // max(n_units, 1)))
    kept = counts.topk(n).indices.sort().values
    slots = torch.full((len(counts),), n, dtype=torch.int64)
    slots[kept] = torch.arange(n)
    return kept, slots


def importances(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target], units: Units,
                x: Tensor) -> Tensor:
    """``(positions, S)``: every unit's importance on the batch ``x`` (leading dimensions flattened)."""
    with torch.no_grad():
        _, inputs = capture(model, targets, x)
        return units.flat(method.importance(dec, model, x, inputs), targets)


def stream(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target], units: Units, data: Tensor,
           cfg: HarvestConfig, *, folder: Path | None, resume: bool,
           progress: bool) -> tuple[Tally, Tensor | None]:
    """The harvest pass over ``data`` (``(n, T)`` token windows or ``(n, d)`` inputs) in batches of
    ``cfg.batch_size``: the filled :class:`Tally` and, for token sequences, the kept token ids."""
    sequences = not data.is_floating_point()
    kept, slots = kept_tokens(data, len(units), cfg.max_token_cells) if sequences else (None, None)
    tally = Tally(len(units), cfg.top_k, len(kept) if kept is not None else 0,
                  len(units) <= cfg.max_coactivation_units)
    per_row = data.shape[1] if sequences else 1
    n_batches = math.ceil(len(data) / cfg.batch_size)

    def step(i: int) -> dict[str, float]:
        x = data[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        imp = importances(method, dec, model, targets, units, x)
        tally.update(imp, i * cfg.batch_size * per_row, cfg.threshold, slots[x.reshape(-1)] if slots is not None
                     else None)
        return {"positions": float(tally.positions)}

    fit_loop(n_batches, step, {"tally": tally}, folder=folder, resume=resume, checkpoint_every=max(n_batches // 20, 1),
             log_every=max(n_batches // 20, 1), description="harvest", progress=progress,
             on_start=(lambda: save_config(folder, cfg)) if folder is not None else None)
    return tally, kept


def token_contexts(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target], units: Units,
                   windows: Tensor, top_positions: Tensor, context: int, batch_size: int) -> tuple[Tensor, Tensor]:
    """``(tokens, importance)``, each ``(S, k, 2 context + 1)``: the tokens around each of a unit's top positions
    (-1 past a window's ends, or where the unit has no such position) and the unit's importance on each (NaN
    there). The windows involved are run again, ``batch_size`` at a time."""
    T = windows.shape[1]
    valid = top_positions >= 0
    w, t = top_positions.clamp(min=0) // T, top_positions.clamp(min=0) % T
    p = t[..., None] + torch.arange(-context, context + 1)
    inside = valid[..., None] & (p >= 0) & (p < T)
    p = p.clamp(0, T - 1)
    tokens = torch.where(inside, windows.reshape(-1)[w[..., None] * T + p], -1)
    importance = torch.full(tokens.shape, float("nan"))
    unit = torch.arange(len(units))[:, None, None].expand_as(p)
    local = torch.full((len(windows),), -1)
    needed = w[valid].unique()
    for chunk in needed.split(batch_size):
        local[chunk] = torch.arange(len(chunk))
        imp = importances(method, dec, model, targets, units, windows[chunk]).reshape(len(chunk), T, -1)
        here = inside & (local[w] >= 0)[..., None]
        importance[here] = imp[local[w][..., None].expand_as(p)[here], p[here], unit[here]]
        local[chunk] = -1
    return tokens, importance


def harvest_model(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target], data: Tensor,
                  cfg: HarvestConfig | None = None, *, corpus: dict | None = None,
                  folder: Path | None = None, resume: bool = False, progress: bool = True) -> Harvest:
    """The :class:`~paramlens.components.result.Harvest` of decomposition ``dec`` of ``model`` over ``data``
    (integer ``(n, T)`` token sequences, whose positions are their tokens, or ``(n, d)`` inputs), checkpointed in
    ``folder`` (None: not) and saved there at the end; ``resume`` continues an interrupted pass from its checkpoint."""
    cfg = cfg or HarvestConfig()
    units = Units.of(method, targets, method.read_directions(dec, targets[0]).shape[1])
    tally, kept = stream(method, dec, model, targets, units, data, cfg, folder=folder, resume=resume,
                         progress=progress)
    sequences = not data.is_floating_point()
    if sequences:
        contexts, context_importance = token_contexts(method, dec, model, targets, units, data, tally.top_positions,
                                                      cfg.context, cfg.batch_size)
        slots = kept_tokens(data, len(units), cfg.max_token_cells)[1]
        token_counts = torch.bincount(slots[data.reshape(-1)], minlength=len(kept) + 1)
    else:
        valid = tally.top_positions >= 0
        contexts = torch.where(valid[..., None], data[tally.top_positions.clamp(min=0)].float(), float("nan"))
        context_importance, kept, token_counts = tally.top_values.clone(), torch.empty(0, dtype=torch.int64), \
            torch.empty(0, dtype=torch.int64)
    fx = effects(method, dec, model, targets, units, data, tally.top_positions, tally.top_values, cfg.threshold,
                 cfg.effect_contexts, cfg.top_tokens, sequences, progress)
    n = max(int(tally.positions), 1)
    result = Harvest(
        method=method.name, units=units.names, targets=[t.name for t in targets], sequences=sequences,
        config=cfg.model_dump(), corpus=corpus or {}, n_positions=int(tally.positions),
        density=tally.fires.double() / n, mean_importance=tally.importance_sum / n, top_values=tally.top_values,
        top_positions=tally.top_positions, contexts=contexts, context_importance=context_importance,
        token_ids=kept, token_fires=tally.token_fires, token_counts=token_counts, coactivation=tally.coactivation,
        effect_size=fx.size, promoted=fx.promoted, promoted_by=fx.promoted_by, suppressed=fx.suppressed,
        suppressed_by=fx.suppressed_by)
    if folder is not None:
        result.save(folder)
    return result


def harvest_run(run: OpenRun, folder: Path, given: dict[str, Any], *, resume: bool = False,
                progress: bool = True) -> Harvest:
    """The harvest of an opened run into ``folder`` with the :class:`HarvestConfig` settings ``given``: read back
    when one is saved there (``given`` must then agree with it), continued from its checkpoint with ``resume``, else
    made."""
    if (folder / RESULT).is_file() and not resume:
        saved, asked = Harvest.load(folder), HarvestConfig(**given).model_dump()
        differs = {k: asked[k] for k in given if saved.config.get(k) != asked[k]}
        if differs:
            raise ParamLensError(f"{folder} already holds a harvest with other settings (saved "
                                 f"{ {k: saved.config.get(k) for k in differs} }); move it away to harvest again")
        return saved
    if (folder / CHECKPOINT).is_file() and not resume:
        raise ParamLensError(f"{folder} holds an interrupted harvest: continue it with --resume, or move it away")
    cfg = resume_config(folder, HarvestConfig, given) if resume else HarvestConfig(**given)
    data, corpus = run.data({"corpus": cfg.corpus, "tokens": cfg.tokens}, cfg.n_inputs, cfg.seed)
    return harvest_model(run.method, run.dec, run.model, run.targets, data, cfg, corpus=corpus, folder=folder, resume=resume, progress=progress)
