"""The known mechanisms of a zoo model, in the ``(d_out, d_in)`` view of :mod:`paramlens.core.weights`."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class GroundTruth:
    """What a zoo model is known to compute, per target weight matrix.

    Attributes:
        matrices: ``{target: (n_mechanisms, d_out, d_in)}``: the part of the target's weight that each
            known mechanism uses; they sum to the target's weight where the mechanisms cover it.
        input_directions: ``{target: (n_mechanisms, d_in)}`` unit vectors: the direction each mechanism
            reads from the target's input.
        description: one line on what the mechanisms are.
    """

    matrices: dict[str, Tensor] = field(default_factory=dict)
    input_directions: dict[str, Tensor] = field(default_factory=dict)
    description: str = ""
