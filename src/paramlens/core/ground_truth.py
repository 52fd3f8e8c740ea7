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
        names: ``{target: [name of mechanism k]}`` in the order of the first axis above (missing: ``mechanism k``).
    """

    matrices: dict[str, Tensor] = field(default_factory=dict)
    input_directions: dict[str, Tensor] = field(default_factory=dict)
    description: str = ""
    names: dict[str, list[str]] = field(default_factory=dict)

    def name(self, target: str, k: int) -> str:
        """The name of ``target``'s mechanism ``k``."""
        names = self.names.get(target, [])
        return names[k] if k < len(names) else f"mechanism {k}"
