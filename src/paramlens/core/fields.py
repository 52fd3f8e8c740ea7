"""Config field types shared by every method's pydantic config, so a value out of range is refused the same way
everywhere (from the command line, ``--set key=value``, or the Python API)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AllowInfNan, Field

MAX_SEED = 2**31 - 1  # seeds are offset per use (seed + 1, seed + 7, ...), which must stay within 64 bits

Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="seed of every random draw")]
LearningRate = Annotated[float, Field(gt=0, le=1e3), AllowInfNan(False)]
Steps = Annotated[int, Field(ge=1, description="optimisation steps")]
BatchSize = Annotated[int, Field(ge=1, description="examples per step (all processes together)")]
LrSchedule = Literal["cosine", "constant"]
WarmupFraction = Annotated[float, Field(ge=0, lt=1, description="share of the steps with a linear lr warm-up")]
