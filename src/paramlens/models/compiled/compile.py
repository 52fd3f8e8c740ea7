"""Compile a Boolean circuit into an integer ReLU network: ``h_{l+1} = ReLU(W_l h_l + b_l)``.

Every neuron is a threshold gate whose pre-activation is at most 1 on every 0/1 input, so every
activation is exactly 0 or 1. Gates lower to such neurons:

- ``not a``: ``ReLU(1 - a)``; ``buf a``: ``ReLU(a)``; ``and``: ``ReLU(sum a_i - (n - 1))``; ``copy`` adds no
  neuron, and a signal read layers after it is computed is carried by ``ReLU(a)`` copy rows;
- ``xor a b``: ``ReLU(a + b - 2 AND(a, b))`` (the ``+1, +1, -2`` rows), the AND one layer earlier;
- ``or``: ``ReLU(1 - NOR)`` with ``NOR = ReLU(1 - sum a_i)``;
- ``maj a b c``: ``ReLU(ab + ac + bc - 2 abc)`` from four ANDs one layer earlier;
- ``nor``: ``ReLU(1 - sum a_i)``; ``nand``: ``ReLU(1 - AND)``; ``xnor a b``: ``ReLU(1 - a - b + 2 AND(a, b))``;
  ``threshold``: one neuron ``ReLU(sum w_i a_i + 1 - t)`` when that can never exceed 1;
- constants are folded into the biases of the neurons that read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from paramlens.core.circuits import Circuit
from paramlens.errors import ParamLensError


@dataclass
class _Neuron:
    weights: dict[int, int]  # node id -> weight
    bias: int


@dataclass
class CompiledNetwork:
    """Integer layers: ``weights[l]`` ``(n_{l+1}, n_l)`` int64, ``biases[l]`` ``(n_{l+1},)`` int64."""

    weights: list[Tensor]
    biases: list[Tensor]

    @property
    def widths(self) -> list[int]:
        return [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, n_inputs)`` of 0/1 -> ``(batch, n_outputs)`` of 0/1 (int64, exact)."""
        h = x.long()
        for W, b in zip(self.weights, self.biases):
            h = torch.relu(h @ W.T + b)
        return h

    def state_dict(self, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """``layers.{l}.weight`` / ``layers.{l}.bias`` as an ordinary checkpoint would store them."""
        out = {}
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            out[f"layers.{i}.weight"] = W.to(dtype).contiguous()
            out[f"layers.{i}.bias"] = b.to(dtype).contiguous()
        return out

    def to_module(self) -> nn.Sequential:
        """An ``nn.Sequential`` of ``Linear`` + ``ReLU`` pairs computing the same function in float."""
        layers: list[nn.Module] = []
        for W, b in zip(self.weights, self.biases):
            lin = nn.Linear(W.shape[1], W.shape[0])
            with torch.no_grad():
                lin.weight.copy_(W.float())
                lin.bias.copy_(b.float())
            layers += [lin, nn.ReLU()]
        return nn.Sequential(*layers)

    def save(self, path: str | Path) -> Path:
        """Write a ``.safetensors`` checkpoint (float32 values, as a trained network would ship)."""
        save_file(self.state_dict(), str(path))
        return Path(path)


class _Lowering:
    """Circuit signals -> primitive neurons; node ids: inputs first, then neurons; constants kept apart."""

    def __init__(self, circuit: Circuit):
        self.n_inputs = circuit.n_inputs
        self.neurons: list[_Neuron] = []
        self.level = [0] * circuit.n_inputs  # per node: the layer that computes it
        self.floor = 0
        self.const: dict[int, int] = {}  # signal -> 0/1 for constant signals
        self.node_of: dict[int, int] = {i: i for i in range(circuit.n_inputs)}
        for i, g in enumerate(circuit.gates):
            if i in circuit.barriers:
                self.floor = max(self.level)
            self.lower(circuit.n_inputs + i, g.op, g.inputs, g.weights, g.threshold)

    def neuron(self, weights: list[tuple[int, int]], bias: int) -> int:
        """Add ``ReLU(sum w * node + bias)`` from ``[(signal, weight)]``; constant inputs fold into the
        bias. Returns the node id."""
        folded: dict[int, int] = {}
        for sig, w in weights:
            if sig in self.const:
                bias += w * self.const[sig]
            else:
                node = self.node_of[sig]
                folded[node] = folded.get(node, 0) + w
        folded = {n: w for n, w in folded.items() if w}
        self.neurons.append(_Neuron(folded, bias))
        self.level.append(max([self.floor] + [self.level[n] for n in folded]) + 1)
        return self.n_inputs + len(self.neurons) - 1

    def helper(self, weights: list[tuple[int, int]], bias: int) -> int:
        """A neuron that is not itself a circuit signal: registered under a fresh negative key."""
        key = -len(self.neurons) - 1
        self.node_of[key] = self.neuron(weights, bias)
        return key

    def lower(self, s: int, op: str, ins: tuple[int, ...], weights: tuple[int, ...] | None,
              threshold: int | None) -> None:
        if op in ("const0", "const1"):
            self.const[s] = int(op == "const1")
            return
        if op == "copy":
            if ins[0] in self.const:
                self.const[s] = self.const[ins[0]]
            else:
                self.node_of[s] = self.node_of[ins[0]]
            return
        if op == "not":
            node = self.neuron([(ins[0], -1)], 1)
        elif op == "buf":
            node = self.neuron([(ins[0], 1)], 0)
        elif op == "and":
            node = self.neuron([(i, 1) for i in ins], -(len(ins) - 1))
        elif op == "nor":
            node = self.neuron([(i, -1) for i in ins], 1)
        elif op == "nand":
            both = self.helper([(i, 1) for i in ins], -(len(ins) - 1))
            node = self.neuron([(both, -1)], 1)
        elif op == "xnor":
            a, b = ins
            both = self.helper([(a, 1), (b, 1)], -1)
            node = self.neuron([(a, -1), (b, -1), (both, 2)], 1)
        elif op == "threshold":
            if sum(max(w, 0) for w in weights) > threshold:
                raise ParamLensError(f"threshold gate {weights} >= {threshold} can exceed 1: not one binary neuron")
            node = self.neuron(list(zip(ins, weights)), 1 - threshold)
        elif op == "or":
            nor = self.helper([(i, -1) for i in ins], 1)
            node = self.neuron([(nor, -1)], 1)
        elif op == "xor":
            a, b = ins
            both = self.helper([(a, 1), (b, 1)], -1)
            node = self.neuron([(a, 1), (b, 1), (both, -2)], 0)
        else:  # maj
            a, b, c = ins
            pairs = [self.helper([(x, 1), (y, 1)], -1) for x, y in ((a, b), (a, c), (b, c))]
            triple = self.helper([(a, 1), (b, 1), (c, 1)], -2)
            node = self.neuron([(pairs[0], 1), (pairs[1], 1), (pairs[2], 1), (triple, -2)], 0)
        self.node_of[s] = node


def compile_circuit(circuit: Circuit) -> CompiledNetwork:
    """Lower ``circuit`` to binary ReLU neurons, schedule them in layers (copying signals that later layers
    read), and return the integer network. Its output equals ``circuit.evaluate`` on every input."""
    low = _Lowering(circuit)
    n_in, level = low.n_inputs, low.level
    outputs = []
    for o in circuit.outputs:
        if o in low.const:  # a constant output: a bias-only neuron
            outputs.append(low.neuron([], low.const[o]))
        else:
            outputs.append(low.node_of[o])
    depth = max([level[o] for o in outputs] + [1])
    last_use = [0] * len(level)
    for i, nr in enumerate(low.neurons):
        for n in nr.weights:
            last_use[n] = max(last_use[n], level[n_in + i] - 1)
    for o in outputs:
        last_use[o] = depth
    # layer l holds every node computed at level <= l that is still read at level > l (or is an output)
    layers: list[list[int]] = [list(range(n_in))]
    for lv in range(1, depth + 1):
        layers.append([n for n in range(len(level)) if level[n] == lv or (level[n] < lv and last_use[n] >= lv)])
    layers[-1] = outputs
    weights, biases = [], []
    for lv in range(1, depth + 1):
        prev = {n: j for j, n in enumerate(layers[lv - 1])}
        W = torch.zeros(len(layers[lv]), len(prev), dtype=torch.long)
        b = torch.zeros(len(layers[lv]), dtype=torch.long)
        for row, n in enumerate(layers[lv]):
            if level[n] == lv:
                nr = low.neurons[n - n_in]
                for src, w in nr.weights.items():
                    W[row, prev[src]] = w
                b[row] = nr.bias
            else:
                W[row, prev[n]] = 1  # copy
        weights.append(W)
        biases.append(b)
    return CompiledNetwork(weights, biases)
