"""The optimisation schedule both decomposition methods share: steps, batch, learning rate and its shape, and how
each step is computed (micro-batches, mixed precision, how processes share the work under ``torchrun``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from paramlens.core.fields import BatchSize, LearningRate, LrSchedule, Steps, WarmupFraction


class Schedule(BaseModel):
    """Steps, global batch, learning rate, cosine or constant decay after a linear warm-up over ``lr_warmup_frac`` of
    the steps. The defaults are SPD's paper settings for TMS 5-2; a method with other defaults re-declares them."""

    steps: Steps = 40_000
    batch_size: BatchSize = 4096
    lr: LearningRate = 1e-3
    lr_schedule: LrSchedule = "cosine"
    lr_warmup_frac: WarmupFraction = 0.0
    grad_accum_steps: int = Field(
        1, ge=1, description="micro-batches per optimisation step: each process's share of the batch is split into "
        "this many, run and backpropagated one after another (less memory, the same step up to float rounding; "
        "the batch must split evenly; SPD only)")
    autocast: Literal["off", "bf16", "fp16"] = Field(
        "off", description="run the training forward passes and losses in this precision (torch.autocast; fp16 "
        "also scales the loss against underflow); parameters, gradients and optimiser state stay float32")
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp", description="under torchrun: ddp keeps the whole decomposition in every process and averages the "
        "gradients; fsdp shards its parameters, gradients and optimiser state over the processes (FSDP2)")
