"""The optimisation schedule both decomposition methods share: steps, batch, learning rate and its shape."""

from __future__ import annotations

from pydantic import BaseModel

from paramlens.core.fields import BatchSize, LearningRate, LrSchedule, Steps, WarmupFraction


class Schedule(BaseModel):
    """Steps, global batch, learning rate, cosine or constant decay after a linear warm-up over ``lr_warmup_frac`` of
    the steps. The defaults are SPD's paper settings for TMS 5-2; a method with other defaults re-declares them."""

    steps: Steps = 40_000
    batch_size: BatchSize = 4096
    lr: LearningRate = 1e-3
    lr_schedule: LrSchedule = "cosine"
    lr_warmup_frac: WarmupFraction = 0.0
