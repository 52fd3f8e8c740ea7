"""Config field types shared by every method's pydantic config, so a value out of range is refused the same way
everywhere (from the command line, ``--set key=value``, or the Python API)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AllowInfNan, Field

MAX_SEED = 2**31 - 1  # seeds are offset per use (seed + 1, seed + 7, ...), which must stay within 64 bits

Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="seed of every random draw")]
LearningRate = Annotated[float, Field(gt=0, le=1e3), AllowInfNan(False)]
