"""The training loop shared by SPD and APD: seeded batches, data parallelism, checks, evaluation.

Data parallel: when ``torch.distributed`` is initialised (``torchrun``), every process draws the same
global batch and noise (each method's ``draw_noise``) from the same seeded generator and keeps its own
slice. With ``parallel="ddp"`` every process holds the whole decomposition and the gradients are averaged with one
all-reduce per step; with ``"fsdp"`` its parameters, gradients and optimiser state are sharded over the processes
(:mod:`paramlens.decompose.parallel`). Micro-batches (``grad_accum_steps``) split each process's rows further; every
micro-batch cuts its noise from the same draw for the global batch. Either way the result equals single-process
training on the same global batch (up to float summation order).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from pydantic import BaseModel
from torch import Tensor, nn
from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

from paramlens.core.data import DataSource
from paramlens.core.ground_truth import GroundTruth
from paramlens.core.runs import fit_loop, save_config
from paramlens.core.weights import Target, frozen, select
from paramlens.decompose.evaluate import Evaluation, evaluate
from paramlens.decompose.forward import capture
from paramlens.decompose.parallel import FullState, ShardedLosses, gathered, on_first
from paramlens.decompose.result import Decomposition, rebuilt
from paramlens.errors import ParamLensError

DECOMPOSABLE = ("linear", "conv1d", "embedding")
BATCH_COUPLED = ("apd",)
"""Methods whose losses couple the inputs of a batch (APD's batch top-k and its running threshold): a micro-batch's
losses are not a part of the whole batch's, so they train without micro-batches."""
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
FUSED_ADAM = ("cpu", "cuda")
"""Devices whose parameters Adam updates in one fused kernel (about 3x faster than its per-tensor loop for the many
small tensors of a decomposition)."""


class Method(Protocol):
    """A decomposition method: what :func:`fit` needs to train one and :mod:`paramlens.decompose.evaluate` to score it.

    Register an implementation in :data:`paramlens.decompose.METHODS` (see :class:`~paramlens.decompose.spd.SPDMethod`
    and :class:`~paramlens.decompose.apd.APDMethod`). The methods are called on the class (static methods).

    Shapes: ``B``: inputs in the batch (under data parallelism, this process's share; with ``grad_accum_steps``,
    one micro-batch of it); ``...``: the batch dimensions
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
               cfg: Any, noise: Any, step: int) -> dict[str, Tensor]:
        """The method's losses on one batch at training step ``step`` (0-based; for schedules inside the losses, such
        as SPD's annealed minimality exponent), ``{name: scalar}``, with ``"total"``, the one minimised (it may also
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
        belongs to its ``rows`` of it (with micro-batches it is called for each, the generator set back to the same
        state, so the draws must not depend on ``rows``). SPD: ``n_mask_samples`` dicts ``{target: (..., C)}``;
        APD: output probes ``(n, n_out)``, shared by all inputs. ``inputs`` and ``target_out`` are those of
        ``rows``, as in :meth:`losses`; they give the shapes.
        """

    def importance(self, dec: nn.Module, model: nn.Module, x: Tensor, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """How much each component takes part on each input, ``{target: (..., C)}`` in ``[0, 1]``, for the batch
        ``x`` and the targets' ``inputs`` as in :meth:`losses`."""

    def component_matrix(self, dec: nn.Module, target: Target, index: int) -> Tensor:
        """Component ``index`` of ``target`` as a ``(d_out, d_in)`` matrix (its share of the target's weight)."""

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
    stop_when: Callable[[dict[str, float]], bool] | None = None,
) -> Decomposition:
    """Decompose ``model``'s targets with ``method``; see :func:`paramlens.decompose.decompose`."""
    targets = check_targets(model, patterns)
    rank, world = _world()
    rows = process_rows(cfg.batch_size, rank, world)
    check_micro_batches(method, cfg, rows)
    if eval_every:  # log on every evaluation step so its scores reach the history
        log_every = math.gcd(log_every, eval_every)
    model.eval()
    dec, initial = build_seeded(method, model, targets, cfg)
    eval_x = evaluation_batch(data, cfg, eval_size).to(device_of(model))
    checkpoints = folder is not None
    if world > 1 and cfg.parallel == "fsdp":  # all processes gather what process 0 checkpoints: its folder decides
        checkpoints = on_first(checkpoints)
    step = TrainingStep(method, model, dec, targets, data, cfg, rows, world, eval_x, ground_truth, eval_every,
                        checkpoint_every if checkpoints else None)

    def started() -> None:  # config.json is written once the run is known to be valid (a resume: its checkpoint fits)
        save_config(folder, cfg)
        if on_start is not None:
            on_start()

    with frozen(model):
        history = fit_loop(cfg.steps, step, step.stateful(), folder=folder, resume=resume,
                           checkpoint_every=checkpoint_every, write=rank == 0, log_every=log_every,
                           description=method.name, progress=progress and rank == 0,
                           on_start=started if folder is not None and rank == 0 else None, stop_when=stop_when)
        dec = step.plain()
        final, chance = final_evaluations(step, dec, initial)
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


def check_micro_batches(method: Method, cfg: BaseModel, rows: slice) -> None:
    """Refuse ``cfg.grad_accum_steps`` when this process's ``rows`` do not split evenly into that many micro-batches,
    or when ``method``'s losses couple the inputs of a batch (:data:`BATCH_COUPLED`)."""
    n, local = cfg.grad_accum_steps, rows.stop - rows.start
    if local % n:
        raise ParamLensError(f"batch_size {cfg.batch_size} gives {local} inputs to each process, which do not split "
                             f"into grad_accum_steps={n} micro-batches; choose a batch_size divisible by {n} times "
                             "the number of processes")
    if n > 1 and method.name in BATCH_COUPLED:
        raise ParamLensError(f"{method.name} chooses its active components by a top-k over the whole batch, which "
                             "micro-batches cannot reproduce; set grad_accum_steps=1 (a smaller batch_size also "
                             "lowers the memory)")


def micro_rows(rows: slice, n: int) -> list[slice]:
    """``rows`` of the global batch cut into ``n`` equal consecutive micro-batches."""
    size = (rows.stop - rows.start) // n
    return [slice(rows.start + k * size, rows.start + (k + 1) * size) for k in range(n)]


def device_of(model: nn.Module) -> str:
    """The device type (``"cpu"``, ``"cuda"``) of ``model``'s parameters, which the step's tensors live on."""
    return next((p.device.type for p in model.parameters()), "cpu")


def grad_scaler(cfg: BaseModel, device: str, sharded: bool) -> torch.amp.GradScaler | None:
    """The loss scaler of an fp16 run (None otherwise); sharded: one that agrees over the processes on overflow,
    each of which sees only its shard of the gradients."""
    if cfg.autocast != "fp16":
        return None
    if sharded:
        return ShardedGradScaler(device, process_group=dist.group.WORLD)
    return torch.amp.GradScaler(device)


def build_seeded(method: Method, model: nn.Module, targets: Sequence[Target],
                 cfg: BaseModel) -> tuple[nn.Module, dict[str, Tensor]]:
    """``method``'s module built with the global RNG seeded by ``cfg.seed`` (its state is restored after), and a copy
    of its initial state dict (the random-initialisation baseline of the final scores); on ``model``'s device."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        dec = method.build(model, targets, cfg).to(device_of(model))
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
    ``cfg.seed + 1``; on a GPU the noise has its own generator there, same seed): each step draws the global batch
    of ``cfg.batch_size`` inputs (moved to the model's device) and the method's noise, keeps
    this process's ``rows``, runs them as ``cfg.grad_accum_steps`` micro-batches (under ``cfg.autocast``), and
    combines the gradients of the ``world`` processes (``cfg.parallel``). Every ``eval_every`` steps (None: never)
    the evaluation scores of ``eval_x`` join the step's log entry. ``checkpoint_every``: the steps between the run's
    checkpoints (None: no run folder); a sharded module gathers its full state at those steps.
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
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.cfg.seed + 1)
        self.device = device_of(self.model)
        self.noise_generator = (self.generator if self.device == "cpu"
                                else torch.Generator(self.device).manual_seed(self.cfg.seed + 1))
        self.sharded = self.world > 1 and self.cfg.parallel == "fsdp"
        self.loss_fn: Callable[..., dict[str, Tensor]] = (
            ShardedLosses(self.method.losses, self.dec, self.device) if self.sharded
            else partial(self.method.losses, self.dec))
        self.params = [p for p in self.dec.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr,
                                    fused=True if self.device in FUSED_ADAM and not self.sharded else None)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, partial(lr_factor, self.cfg))
        self.scaler = grad_scaler(self.cfg, self.device, self.sharded)
        keep = dist.get_rank() == 0 if self.sharded else True
        self.full_states = [FullState(self.dec, keep), FullState(self.opt, keep)] if self.sharded else []

    def stateful(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume the run bit-identically (a sharded module: its full state)."""
        dec, opt = self.full_states if self.sharded else (self.dec, self.opt)
        states = {"decomposition": dec, "optimizer": opt, "scheduler": self.sched, "generator": self.generator}
        if self.noise_generator is not self.generator:
            states["noise_generator"] = self.noise_generator
        if self.scaler is not None:
            states["grad_scaler"] = self.scaler
        return states

    def __call__(self, i: int) -> dict[str, float]:
        self.opt.zero_grad(set_to_none=True)
        logged = self.accumulate(i)
        if self.world > 1 and not self.sharded:
            self.average_gradients()
        if self.scaler is None:
            self.opt.step()
        else:
            self.scaler.step(self.opt)
            self.scaler.update()
        with warnings.catch_warnings():  # a step the fp16 scaler skipped (overflow) still advances the schedule
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.sched.step()
        for state in self.full_states:
            state.now = i + 1
            if self.checkpoint_every and ((i + 1) % self.checkpoint_every == 0 or i + 1 == self.cfg.steps):
                state.take(i + 1)
        if self.eval_every and (i + 1) % self.eval_every == 0:
            logged.update(self.evaluate(generator=None).scalars)
        return logged

    def accumulate(self, i: int) -> dict[str, float]:
        """Run step ``i``'s micro-batches forward and backward (gradients summed into ``.grad``); each loss's mean
        over them. Every micro-batch cuts its noise from the same draw for the global batch (the generator is set
        back to where that draw starts), so the step equals one on all the process's rows."""
        n = self.cfg.grad_accum_steps
        x = self.data.sample(self.cfg.batch_size, self.generator)[self.rows].to(self.device)
        start = self.noise_generator.get_state()
        sums: dict[str, float] = {}
        for part, rows in zip(x.chunk(n), micro_rows(self.rows, n)):
            self.noise_generator.set_state(start)
            losses, values = self.losses(i, part, rows)
            total = losses["total"] / n
            (total if self.scaler is None else self.scaler.scale(total)).backward()
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
        return {name: value / n for name, value in sums.items()}

    def losses(self, i: int, x: Tensor, rows: slice) -> tuple[dict[str, Tensor], dict[str, float]]:
        """The method's losses on the micro-batch ``x`` (``rows`` of the global batch) of step ``i``, under the
        configured autocast, and their values (read in one transfer); a non-finite one stops the run naming it."""
        with self.precision():
            target_out, inputs = capture(self.model, self.targets, x)
            noise = self.method.draw_noise(self.cfg, self.targets, inputs, target_out, self.noise_generator, rows)
            losses = self.loss_fn(self.model, x, target_out, inputs, self.cfg, noise, i)
        values = dict(zip(losses, torch.stack([v.detach().float() for v in losses.values()]).tolist()))
        for name, value in values.items():
            if not math.isfinite(value):
                raise ParamLensError(
                    f"loss '{name}' is {value} at step {i}; stopped (the run folder keeps its last checkpoint, if one "
                    "was written): lower the learning rate or check the model's activations"
                )
        return losses, values

    def precision(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` to ``cfg.autocast`` on the model's device, or nothing when it is ``"off"``."""
        if self.cfg.autocast == "off":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device, dtype=AUTOCAST[self.cfg.autocast])

    def average_gradients(self) -> None:
        """Replace each gradient with its mean over the processes (one all-reduce of all of them)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        for p, chunk in zip(self.params, flat.split([p.numel() for p in self.params])):
            p.grad = chunk.view_as(p)

    def plain(self) -> nn.Module:
        """The decomposition module with full tensors: ``dec`` itself, or when sharded a new module holding the
        gathered parameters (collective: every process calls it at once)."""
        if not self.sharded:
            return self.dec
        return rebuilt(self.method, list(self.targets), self.cfg, gathered(self.dec.state_dict()))

    def evaluate(self, generator: torch.Generator | None, dec: nn.Module | None = None) -> Evaluation:
        """The evaluation on ``eval_x`` (:func:`~paramlens.decompose.evaluate.evaluate`) of ``dec`` (None: the
        module as it is now, see :meth:`plain`)."""
        return evaluate(self.method, dec if dec is not None else self.plain(), self.model, self.targets, self.eval_x,
                        self.cfg, self.ground_truth, generator=generator)


def final_evaluations(step: TrainingStep, dec: nn.Module, initial: dict[str, Tensor]) -> tuple[Evaluation, Evaluation]:
    """``(fitted, chance)``: the evaluation of the trained module ``dec`` (:meth:`TrainingStep.plain`), and of the
    same module at its ``initial`` state (then restored to the trained one); both draw their masks with seed
    ``cfg.seed + 3``."""
    seed = step.cfg.seed + 3
    final = step.evaluate(torch.Generator().manual_seed(seed), dec)
    current = {k: v.clone() for k, v in dec.state_dict().items()}
    dec.load_state_dict(initial)
    chance = step.evaluate(torch.Generator().manual_seed(seed), dec)
    dec.load_state_dict(current)
    return final, chance
