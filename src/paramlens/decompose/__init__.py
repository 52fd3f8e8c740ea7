"""Parameter decomposition: split target weight matrices into few, simple, faithful mechanisms.

>>> result = decompose(model, data, targets=["linear1", "linear2"], method="spd", C=20, steps=5000)
>>> print(result.summary())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from paramlens.core.data import DataSource
from paramlens.core.ground_truth import GroundTruth
from paramlens.decompose.apd import APDConfig, APDMethod
from paramlens.decompose.fit import Method, fit
from paramlens.decompose.mechanism_scores import MechanismScores, score_mechanisms
from paramlens.decompose.result import Decomposition
from paramlens.decompose.spd import SPDConfig, SPDMethod
from paramlens.errors import ParamLensError

METHODS: dict[str, Method] = {"spd": SPDMethod, "apd": APDMethod}


def decompose(
    model: nn.Module,
    data: DataSource,
    targets: str | Sequence[str],
    method: str = "spd",
    *,
    config: Any = None,
    ground_truth: GroundTruth | None = None,
    folder: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    eval_every: int | None = None,
    log_every: int = 100,
    checkpoint_every: int = 1000,
    on_start: Callable[[], None] | None = None,
    stop_when: Callable[[dict[str, float]], bool] | None = None,
    **settings: Any,
) -> Decomposition:
    """Decompose the weight matrices of ``model`` selected by ``targets`` (glob patterns).

    Args:
        model: any ``nn.Module``; its Linear, Conv1D and Embedding targets are decomposed, the rest kept.
        data: a source of inputs (``sample(n, generator)``): sparse features for toy models, token
            windows for language models.
        method: ``"spd"`` or ``"apd"``.
        config: a method config (:class:`SPDConfig`, :class:`APDConfig`); or pass its fields as
            ``settings`` (``C=20, steps=5000, ...``) on top of the defaults.
        ground_truth: known mechanisms to score against (``model.ground_truth()`` for zoo models).
        folder: run folder for checkpoints and the saved result; ``resume`` continues from it.
        eval_every: also compute the metrics every so many steps (into ``result.history``).
        log_every, checkpoint_every: steps between loss log entries and between checkpoints.
        on_start: called once the run is ready to step (after ``config.json`` is written; a resumed run: after its
            checkpoint was read and found to fit).
        stop_when: asked of each log entry (the losses, and on evaluation steps the scores, e.g. ``mmcs/linear1``);
            True ends the run after that step, checkpointed and saved as a finished one (e.g. once the ground truth
            is recovered). The learning-rate schedule stays the one of ``steps``; under torchrun every process must
            answer alike (the scores are computed in each).
    """
    if method not in METHODS:
        raise ParamLensError(f"unknown decomposition method '{method}'; choose one of {', '.join(METHODS)}")
    impl = METHODS[method]
    if config is None:
        config = impl.config(**settings)
    elif settings:
        config = config.model_copy(update=settings)
    return fit(impl, model, data, targets, config, ground_truth=ground_truth, folder=folder, resume=resume,
               progress=progress, eval_every=eval_every, log_every=log_every, checkpoint_every=checkpoint_every,
               on_start=on_start, stop_when=stop_when)


__all__ = ["METHODS", "APDConfig", "APDMethod", "Decomposition", "MechanismScores", "Method", "SPDConfig", "SPDMethod",
           "decompose", "score_mechanisms"]
