"""Boolean circuits: the netlist that compiled ReLU networks come from and that lifted ones are read into.

Signals are numbered: ``0 .. n_inputs - 1`` are the inputs, then one per gate in the order added. Gates:
``and``, ``or``, ``xor``, ``not``, ``copy`` (the same signal under a new id), ``buf`` (a copy computed by a neuron
of its own: ``ReLU(a)``), ``maj`` (at least 2 of 3), ``nand``, ``nor``, ``xnor``, ``const0`` / ``const1``, and
``threshold`` (``sum_i w_i a_i >= t`` with integer ``weights`` and ``threshold``: any binary ReLU neuron).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from paramlens.errors import ParamLensError

ARITY = {"and": None, "or": None, "nand": None, "nor": None, "xor": 2, "xnor": 2, "not": 1, "copy": 1, "buf": 1,
         "maj": 3, "const0": 0, "const1": 0, "threshold": None}


@dataclass(frozen=True)
class Gate:
    op: str
    inputs: tuple[int, ...]
    weights: tuple[int, ...] | None = None  # threshold gates only
    threshold: int | None = None


@dataclass
class Circuit:
    """A Boolean circuit built gate by gate; :meth:`evaluate` is the reference semantics."""

    n_inputs: int
    gates: list[Gate] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    barriers: list[int] = field(default_factory=list)

    @property
    def n_signals(self) -> int:
        return self.n_inputs + len(self.gates)

    def add(self, op: str, *inputs: int, weights: tuple[int, ...] | None = None, threshold: int | None = None) -> int:
        """Append a gate; returns its signal id. ``threshold`` gates also take ``weights`` and ``threshold``."""
        if op not in ARITY:
            raise ParamLensError(f"unknown gate '{op}'; gates: {', '.join(ARITY)}")
        arity = ARITY[op]
        if op == "threshold":
            if weights is None or threshold is None or len(weights) != len(inputs):
                raise ParamLensError("a threshold gate needs one weight per input and a threshold")
        elif (arity is not None and len(inputs) != arity) or (arity is None and len(inputs) < 2):
            raise ParamLensError(f"gate '{op}' takes {arity if arity is not None else '2 or more'} inputs, got {len(inputs)}")
        if any(not 0 <= i < self.n_signals for i in inputs):
            raise ParamLensError(f"gate '{op}' reads a signal that does not exist yet: {inputs}")
        self.gates.append(Gate(op, tuple(inputs), tuple(weights) if weights else None, threshold))
        return self.n_signals - 1

    def barrier(self) -> None:
        """Gates added from now on are scheduled after every gate so far (one round starts when the previous
        has finished), so repeated rounds compile to repeated blocks of layers."""
        self.barriers.append(len(self.gates))

    def evaluate(self, x: Tensor) -> Tensor:
        """``(batch, n_inputs)`` of 0/1 -> ``(batch, n_outputs)`` bool."""
        if x.shape[-1] != self.n_inputs:
            raise ParamLensError(f"the circuit has {self.n_inputs} inputs, got {x.shape[-1]}")
        values = list(x.bool().unbind(-1))
        zeros = torch.zeros(x.shape[:-1], dtype=torch.bool)
        for g in self.gates:
            ins = [values[i] for i in g.inputs]
            if g.op in ("and", "nand"):
                v = torch.stack(ins).all(0) ^ (g.op == "nand")
            elif g.op in ("or", "nor"):
                v = torch.stack(ins).any(0) ^ (g.op == "nor")
            elif g.op in ("xor", "xnor"):
                v = ins[0] ^ ins[1] ^ (g.op == "xnor")
            elif g.op == "threshold":
                total = sum(w * i.long() for w, i in zip(g.weights, ins)) if ins else zeros.long()
                v = total >= g.threshold
            elif g.op == "not":
                v = ~ins[0]
            elif g.op in ("copy", "buf"):
                v = ins[0]
            elif g.op == "maj":
                v = torch.stack(ins).sum(0) >= 2
            else:
                v = zeros if g.op == "const0" else ~zeros
            values.append(v)
        return torch.stack([values[o] for o in self.outputs], dim=-1)
