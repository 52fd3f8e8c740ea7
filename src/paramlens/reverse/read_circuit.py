"""``paramlens reverse circuit``: a network file -> a named-gate circuit, checked and exported, with word-level
statements (adders, bitwise functions, rotations) where the network computes on 32-bit words.

The layers stream by one at a time (:mod:`paramlens.reverse.circuit_stream`); byte inputs become 8 circuit inputs
each (bit ``j`` of byte ``k`` is input ``8 k + j``, lowest bit first).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

from paramlens.core.circuits import Circuit
from paramlens.core.runs import Result
from paramlens.reverse.circuit import simplify
from paramlens.reverse.circuit_check import check_circuits
from paramlens.reverse.circuit_operands import statements
from paramlens.reverse.circuit_peak import peak_statements
from paramlens.reverse.circuit_stream import lift_file, random_inputs
from paramlens.reverse.circuit_words import Reader
from paramlens.reverse.identify_domain import parse_input
from paramlens.reverse.netlist import from_json, to_dot, to_json, to_python


@dataclasses.dataclass
class CircuitReading(Result):
    """The circuit read from a network: gate counts before and after simplification, the checks, word-level
    ``statements`` and the netlist (``netlist``: JSON form; written beside as ``circuit.json``, ``circuit.dot``,
    ``circuit.py``). ``inputs``: ``bits:N`` or ``bytes:N`` and how it was decided; ``network_mismatches`` of
    ``network_inputs``: random network inputs on which the circuit's outputs differ from the network's (float64)."""

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
    inputs: str = ""
    inputs_why: str = ""
    layers: int = 0
    folded_constants: int = 0
    network_inputs: int = 0
    network_mismatches: int = 0
    statements: list[str] = dataclasses.field(default_factory=list)

    def circuit(self) -> Circuit:
        return from_json(self.netlist)

    def _inputs_line(self) -> str:
        if self.inputs.startswith("bytes"):
            return (f"  inputs: {self.inputs} ({self.inputs_why}); circuit input 8k+j = bit j of byte k "
                    f"(lowest bit first)")
        return f"  inputs: {self.inputs} ({self.inputs_why})" if self.inputs else ""

    def summary(self) -> str:
        proof = {True: "proven equal by SAT", False: "SAT found a difference", None: "not proven"}[self.proven]
        return "\n".join(line for line in [
            (f"{self.path}: {f'{self.layers} layers, ' if self.layers else ''}{self.neurons} neurons -> "
             f"{sum(self.gates.values())} gates over {self.n_inputs} inputs, {self.n_outputs} outputs"),
            self._inputs_line(),
            f"  constants folded: {self.folded_constants} constant neurons" if self.folded_constants else "",
            "  gates: " + ", ".join(f"{n} {op}" for op, n in self.gates.items()),
            (f"  circuit vs network: {self.network_mismatches} mismatches on {self.network_inputs} random inputs "
             "(network run in float64)") if self.network_inputs else "",
            (f"  simplified circuit vs lifted network: {self.random_mismatches} mismatches on {self.random_inputs} "
             f"random inputs; {proof} ({self.proof})"),
            *([f"  {self.sampled_neurons} neurons are 0/1 on random inputs but not proven so from the weights"]
              if self.sampled_neurons else []),
            *(["  word level (checked on random inputs):"] + [f"    {s}" for s in self.statements]
              if self.statements else []),
        ] if line)

    def table(self) -> list[dict]:
        return ([{"kind": "gate", "what": op, "count": n} for op, n in self.gates.items()]
                + [{"kind": "word level", "what": s, "count": ""} for s in self.statements])

    def save(self, folder: str | Path) -> Path:
        folder = super().save(folder)
        c = self.circuit()
        (folder / "circuit.json").write_text(json.dumps(self.netlist))
        (folder / "circuit.dot").write_text(to_dot(c))
        (folder / "circuit.py").write_text(to_python(c))
        return folder


def read_circuit(path: str | Path, input: str = "auto", samples: int = 256, seed: int = 0) -> CircuitReading:
    """Lift every unit of the layer chain at ``path`` to threshold gates over input bits (``input``: ``auto``,
    ``bits:N`` or ``bytes:N``), simplify to named gates, check the simplified circuit against the lifted one and
    the lifted one against the network on ``samples`` random inputs, and read word-level statements.

    Weights are read in float64, exact for every integer the lifting accepts (``|v| <= 2^31``).

    Raises:
        UsageError: ``input`` is not ``auto``, ``bits:N`` or ``bytes:N``.
        ParamLensError: a layer holds NaN, infinities or values beyond ``±2^31`` (named with its tensors and
            what they hold), is not integer, or a unit cannot be lifted (layer and unit named).
    """
    lifted = lift_file(path, parse_input(input), samples, seed)
    simple = simplify(lifted.circuit)
    eq = check_circuits(lifted.circuit, simple)
    found = []
    if lifted.lifter.ladder_of:
        _, bits = random_inputs(lifted.domain, samples, seed + 1)
        found = statements(Reader(lifted.lifter, bits, lifted.domain.kind == "bytes"))
    found += peak_statements(lifted.lifter, lifted.circuit.outputs)
    return CircuitReading(
        path=str(path), n_inputs=simple.n_inputs, n_outputs=len(simple.outputs), neurons=lifted.neurons,
        gates=dict(Counter(g.op for g in simple.gates).most_common()), sampled_neurons=lifted.lifter.sampled,
        random_inputs=eq.random_inputs, random_mismatches=eq.random_mismatches, proven=eq.proven, proof=eq.why,
        netlist=to_json(simple), inputs=lifted.domain.spec, inputs_why=lifted.domain.why, layers=lifted.layers,
        folded_constants=lifted.lifter.folded, network_inputs=lifted.samples,
        network_mismatches=lifted.mismatches, statements=found)
