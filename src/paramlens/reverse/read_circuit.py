"""``paramlens reverse circuit``: a network file -> a named-gate circuit, checked and exported."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import torch

from paramlens.core.circuits import Circuit
from paramlens.core.runs import Result
from paramlens.reverse.chain import chain_weights
from paramlens.reverse.circuit import lift, simplify
from paramlens.reverse.equivalence import check
from paramlens.reverse.netlist import from_json, to_dot, to_json, to_python
from paramlens.reverse.values import refuse_bad_values


@dataclasses.dataclass
class CircuitReading(Result):
    """The circuit read from a network: gate counts before and after simplification, the checks, and
    the netlist (``netlist``: JSON form; written beside as ``circuit.json``, ``circuit.dot``, ``circuit.py``)."""

    kind = "reverse_circuit"
    path: str
    n_inputs: int
    n_outputs: int
    neurons: int
    gates: dict[str, int]
    sampled_neurons: int
    random_inputs: int
    random_mismatches: int
    proven: bool | None
    proof: str
    netlist: dict

    def circuit(self) -> Circuit:
        return from_json(self.netlist)

    def summary(self) -> str:
        proof = {True: "proven equal by SAT", False: "SAT found a difference", None: "not proven"}[self.proven]
        return "\n".join([
            f"{self.path}: {self.neurons} neurons -> {sum(self.gates.values())} gates over {self.n_inputs} inputs, "
            f"{self.n_outputs} outputs",
            "  gates: " + ", ".join(f"{n} {op}" for op, n in self.gates.items()),
            f"  simplified circuit vs lifted network: {self.random_mismatches} mismatches on {self.random_inputs} "
            f"random inputs; {proof} ({self.proof})",
            *([f"  {self.sampled_neurons} neurons are 0/1 on random inputs but not proven so from the weights"]
              if self.sampled_neurons else []),
        ])

    def table(self) -> list[dict]:
        return [{"gate": op, "count": n} for op, n in self.gates.items()]

    def save(self, folder: str | Path) -> Path:
        folder = super().save(folder)
        c = self.circuit()
        (folder / "circuit.json").write_text(json.dumps(self.netlist))
        (folder / "circuit.dot").write_text(to_dot(c))
        (folder / "circuit.py").write_text(to_python(c))
        return folder


def read_circuit(path: str | Path) -> CircuitReading:
    """Lift every neuron of the layer chain at ``path`` to a threshold gate, simplify to named gates, and
    check the simplified circuit against the lifted one.

    Weights are read in float64, exact for every integer the lifting accepts (``|v| <= 2^31``).

    Raises:
        ParamLensError: a layer holds NaN, infinities or values beyond ``±2^31`` (named with its tensors and
            what they hold), or is not an integer Boolean network.
    """
    weights, biases = chain_weights(path, torch.float64)
    refuse_bad_values(path, weights, biases, "circuit lifting")
    lifted = lift(weights, biases)
    simple = simplify(lifted.circuit)
    eq = check(lifted.circuit, simple)
    return CircuitReading(
        path=str(path), n_inputs=simple.n_inputs, n_outputs=len(simple.outputs),
        neurons=sum(len(b) for b in biases), gates=dict(Counter(g.op for g in simple.gates).most_common()),
        sampled_neurons=lifted.sampled, random_inputs=eq.random_inputs, random_mismatches=eq.random_mismatches,
        proven=eq.proven, proof=eq.why, netlist=to_json(simple))
