"""The training loop shared by SPD and APD: seeded batches, data parallelism, checks, evaluation.

Data parallel: when ``torch.distributed`` is initialised (``torchrun``), every process draws the same
global batch and noise (each method's ``draw_noise``) from the same seeded generator and keeps its own
slice; gradients are averaged with one all-reduce per step. The result equals single-process training on the same
global batch (up to float summation order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from pydantic import BaseModel
from torch import Tensor, nn

from paramlens.core.data import DataSource
from paramlens.core.ground_truth import GroundTruth
from paramlens.core.runs import fit_loop, save_config
from paramlens.core.weights import Target, frozen, select
from paramlens.decompose.evaluate import Evaluation, evaluate
from paramlens.decompose.forward import capture
from paramlens.decompose.result import Decomposition
from paramlens.errors import ParamLensError

DECOMPOSABLE = ("linear", "conv1d", "embedding")


class Method(Protocol):
    """A decomposition method: what :func:`fit` needs to train one and :mod:`paramlens.decompose.evaluate` to score it.

    Register an implementation in :data:`paramlens.decompose.METHODS` (see :class:`~paramlens.decompose.spd.SPDMethod`
    and :class:`~paramlens.decompose.apd.APDMethod`). The methods are called on the class (static methods).

    Shapes: ``B``: inputs in the batch (under data parallelism, this process's share); ``...``: the batch dimensions
    of a target's input, ``B`` for feature vectors and ``B, T`` for token windows; ``C``: components per target;
    ``d_in``, ``d_out``: a target's input and output sizes (an embedding target reads token ids: its input is
    ``(B, T)``, with no ``d_in`` dimension). A toy model's batch ``x`` is ``(B, n_in)`` and its output
    ``(B, n_out)``; a language model's batch is ``(B, T)`` token ids and its output ``(B, T, n_out)`` logits
    (``n_out``: the vocabulary).

    The module :meth:`build` returns must also provide ``maps(masks)``: for ``{target name: mask (..., C) or None}``
    (None: every component at 1) the ``{Target: map}`` that runs each target with its components scaled by the mask.
    """

    name: str
    """The method's name, as in :data:`paramlens.decompose.METHODS` and the saved result."""
    config: type[BaseModel]
    """The pydantic config class; it has at least ``C``, ``steps``, ``batch_size``, ``lr``, ``lr_schedule``,
    ``lr_warmup_frac``, ``output_loss`` and ``seed``."""

    def build_empty(self, targets: Sequence[Target], cfg: Any) -> nn.Module:
        """The decomposition module for ``targets``, its parameters drawn from the global RNG, not yet fitted to any
        weights (a saved result's parameters are loaded into it)."""

    def build(self, model: nn.Module, targets: Sequence[Target], cfg: Any) -> nn.Module:
        """The decomposition module for ``targets``, ready to train on ``model`` (SPD: initialised from its weights);
        the caller seeds the global RNG with ``cfg.seed`` first. Checks ``cfg`` against the model (tied targets)."""

    def losses(self, dec: nn.Module, model: nn.Module, x: Tensor, target_out: Tensor, inputs: dict[str, Tensor],
               cfg: Any, noise: Any) -> dict[str, Tensor]:
        """The method's losses on one batch, ``{name: scalar}``, with ``"total"``, the one minimised (it may also
        update state of ``dec`` that is not trained, as APD's running threshold).

        Args:
            x: the batch, ``(B, n_in)`` features or ``(B, T)`` tokens.
            target_out: the target model's output on ``x``, ``(B, n_out)`` or ``(B, T, n_out)``.
            inputs: what each target received, ``{target: (..., d_in)}`` (token ids ``(B, T)`` for an embedding).
            noise: this step's draw from :meth:`draw_noise`.
        """

    def draw_noise(self, cfg: Any, targets: Sequence[Target], inputs: dict[str, Tensor], target_out: Tensor,
                   generator: torch.Generator, rows: slice) -> Any:
        """The step's random draws for :meth:`losses`, made from ``generator`` alone.

        Every process makes the same draws, for the global batch of ``cfg.batch_size`` inputs, and keeps what
        belongs to its ``rows`` of it. SPD: ``n_mask_samples`` dicts ``{target: (..., C)}``; APD: output probes
        ``(n, n_out)``, shared by all inputs. ``inputs`` and ``target_out`` are this process's, as in :meth:`losses`;
        they give the shapes.
        """

    def importance(self, dec: nn.Module, model: nn.Module, x: Tensor, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """How much each component takes part on each input, ``{target: (..., C)}`` in ``[0, 1]``, for the batch
        ``x`` and the targets' ``inputs`` as in :meth:`losses`."""

    def outputs_along(self, dec: nn.Module, target: Target, directions: Tensor) -> Tensor:
        """What each component of ``target`` writes for each unit input direction: ``directions`` ``(n, d_in)`` ->
        ``(n, C, d_out)``."""

    def read_directions(self, dec: nn.Module, target: Target) -> Tensor:
        """The input direction each component of ``target`` reads, ``(d_in, C)``."""


def _world() -> tuple[int, int]:
    """``(rank, world size)`` of this process under ``torch.distributed``; ``(0, 1)`` outside it."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_targets(model: nn.Module, patterns: str | Sequence[str]) -> list[Target]:
    """The targets ``patterns`` select in ``model``; a kind that cannot be decomposed or non-finite weights raise."""
    targets = select(model, patterns)
    for t in targets:
        if t.kind not in DECOMPOSABLE:
            raise ParamLensError(f"'{t.name}' is a {t.kind} layer; decomposition supports {', '.join(DECOMPOSABLE)}")
        w = t.matrix(model)
        if not torch.isfinite(w).all():
            raise ParamLensError(f"target '{t.name}' has non-finite weights; nothing to decompose")
    return targets


def lr_factor(cfg: BaseModel, step: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up over the first ``lr_warmup_frac`` of the steps, then
    constant, or cosine decay to 0 at the last step."""
    warm = int(cfg.lr_warmup_frac * cfg.steps)
    if step < warm:
        return (step + 1) / warm
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(cfg.steps - 1 - warm, 1)
    return math.cos(0.5 * math.pi * min(step - warm, span) / span)


def fit(
    method: Method,
    model: nn.Module,
    data: DataSource,
    patterns: str | Sequence[str],
    cfg: BaseModel,
    *,
    ground_truth: GroundTruth | None = None,
    folder: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    log_every: int = 100,
    eval_every: int | None = None,
    eval_size: int | None = None,
    checkpoint_every: int = 1000,
    on_start: Callable[[], None] | None = None,
) -> Decomposition:
    """Decompose ``model``'s targets with ``method``; see :func:`paramlens.decompose.decompose`."""
    targets = check_targets(model, patterns)
    rank, world = _world()
    rows = process_rows(cfg.batch_size, rank, world)
    if eval_every:  # log on every evaluation step so its scores reach the history
        log_every = math.gcd(log_every, eval_every)
    model.eval()
    dec, initial = build_seeded(method, model, targets, cfg)
    eval_x = evaluation_batch(data, cfg, eval_size)
    step = TrainingStep(method, model, dec, targets, data, cfg, rows, world, eval_x, ground_truth, eval_every)

    def started() -> None:  # config.json is written once the run is known to be valid (a resume: its checkpoint fits)
        save_config(folder, cfg)
        if on_start is not None:
            on_start()

    with frozen(model):
        history = fit_loop(cfg.steps, step, step.stateful(), folder=folder, resume=resume,
                           checkpoint_every=checkpoint_every, write=rank == 0, log_every=log_every,
                           description=method.name, progress=progress and rank == 0,
                           on_start=started if folder is not None and rank == 0 else None)
        final, chance = final_evaluations(step, initial)
    result = Decomposition.from_fit(method.name, cfg, targets, dec, history, final, chance)
    if folder is not None and rank == 0:
        result.save(folder)
    return result


def process_rows(batch_size: int, rank: int, world: int) -> slice:
    """The rows of each global batch that process ``rank`` of ``world`` trains on (all of them in one process)."""
    if batch_size % world:
        raise ParamLensError(f"batch_size {batch_size} does not split over {world} processes")
    local = batch_size // world
    return slice(rank * local, (rank + 1) * local)


def build_seeded(method: Method, model: nn.Module, targets: Sequence[Target],
                 cfg: BaseModel) -> tuple[nn.Module, dict[str, Tensor]]:
    """``method``'s module built with the global RNG seeded by ``cfg.seed`` (its state is restored after), and a copy
    of its initial state dict (the random-initialisation baseline of the final scores)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        dec = method.build(model, targets, cfg)
        initial = {k: v.clone() for k, v in dec.state_dict().items()}
    return dec, initial


def evaluation_batch(data: DataSource, cfg: BaseModel, eval_size: int | None) -> Tensor:
    """The fixed batch every evaluation scores on, drawn with seed ``cfg.seed + 2``; ``eval_size`` None: 4096 feature
    vectors for toy models, one training batch of token windows for language models."""
    eval_gen = torch.Generator().manual_seed(cfg.seed + 2)
    if eval_size is None:
        eval_size = 4096 if data.sample(1, torch.Generator()).is_floating_point() else cfg.batch_size
    return data.sample(eval_size, eval_gen)


@dataclass(eq=False)
class TrainingStep:
    """One optimisation step of a decomposition, ``step(i) -> {name: value}`` for the log (:func:`fit_loop`).

    Holds the optimiser (Adam, learning rate scaled by :func:`lr_factor`) and the training generator (seed
    ``cfg.seed + 1``): each step draws the global batch of ``cfg.batch_size`` inputs and the method's noise, keeps
    this process's ``rows``, and averages the gradients over the ``world`` processes. Every ``eval_every`` steps
    (None: never) the evaluation scores of ``eval_x`` join the step's log entry.
    """

    method: Method
    model: nn.Module
    dec: nn.Module
    targets: Sequence[Target]
    data: DataSource
    cfg: BaseModel
    rows: slice
    world: int
    eval_x: Tensor
    ground_truth: GroundTruth | None
    eval_every: int | None

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.cfg.seed + 1)
        self.params = [p for p in self.dec.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, partial(lr_factor, self.cfg))

    def stateful(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume the run bit-identically."""
        return {"decomposition": self.dec, "optimizer": self.opt, "scheduler": self.sched, "generator": self.generator}

    def __call__(self, i: int) -> dict[str, float]:
        losses = self.losses(i)
        self.opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        if self.world > 1:
            self.average_gradients()
        self.opt.step()
        self.sched.step()
        logged = {k: float(v.detach()) for k, v in losses.items()}
        if self.eval_every and (i + 1) % self.eval_every == 0:
            logged.update(self.evaluate(generator=None).scalars)
        return logged

    def losses(self, i: int) -> dict[str, Tensor]:
        """The method's losses on step ``i``'s batch and noise; a non-finite one stops the run naming it."""
        x = self.data.sample(self.cfg.batch_size, self.generator)[self.rows]
        target_out, inputs = capture(self.model, self.targets, x)
        noise = self.method.draw_noise(self.cfg, self.targets, inputs, target_out, self.generator, self.rows)
        losses = self.method.losses(self.dec, self.model, x, target_out, inputs, self.cfg, noise)
        for name, value in losses.items():
            if not torch.isfinite(value):
                raise ParamLensError(
                    f"loss '{name}' is {float(value.detach())} at step {i}; stopped (the run folder keeps its last "
                    "checkpoint, if one was written): lower the learning rate or check the model's activations"
                )
        return losses

    def average_gradients(self) -> None:
        """Replace each gradient with its mean over the processes (one all-reduce of all of them)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        for p, chunk in zip(self.params, flat.split([p.numel() for p in self.params])):
            p.grad = chunk.view_as(p)

    def evaluate(self, generator: torch.Generator | None) -> Evaluation:
        """The evaluation of the module as it is now on ``eval_x`` (:func:`~paramlens.decompose.evaluate.evaluate`)."""
        return evaluate(self.method, self.dec, self.model, self.targets, self.eval_x, self.cfg, self.ground_truth,
                        generator=generator)


def final_evaluations(step: TrainingStep, initial: dict[str, Tensor]) -> tuple[Evaluation, Evaluation]:
    """``(fitted, chance)``: the evaluation of the trained module, and of the same module at its ``initial`` state
    (then restored to the trained one); both draw their masks with seed ``cfg.seed + 3``."""
    seed = step.cfg.seed + 3
    final = step.evaluate(torch.Generator().manual_seed(seed))
    current = {k: v.clone() for k, v in step.dec.state_dict().items()}
    step.dec.load_state_dict(initial)
    chance = step.evaluate(torch.Generator().manual_seed(seed))
    step.dec.load_state_dict(current)
    return final, chance
