"""Lift an integer ReLU network over 0/1 activations to a Boolean circuit, simplify it to named gates, and
export it (JSON netlist, Graphviz DOT, a Python function).

Each neuron ``ReLU(w . x + b)`` whose pre-activation can never exceed 1 on 0/1 inputs is the threshold
gate ``[w . x >= 1 - b]``. Simplification: copies become wires, constants propagate, and each gate is named
from its truth table over its inputs, or over the inputs of helper gates that feed only it (an AND that
exists only to build an XOR is folded into the XOR). Unused gates are dropped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import Tensor

from paramlens.core.circuits import Circuit, Gate
from paramlens.errors import ParamLensError
from paramlens.reverse.values import RANGE, in_range, is_integer, layer_problem

MAX_LEAVES = 6


MAX_PROOF_LEAVES = 12


def _local_max(row: Tensor, bias: int, W_prev: Tensor | None, b_prev: Tensor | None) -> int:
    """Largest pre-activation of one neuron on 0/1 inputs: the independent-input bound, or, when that
    exceeds 1 and the inputs' own inputs are few, the exact maximum over those (inputs that share
    sources, such as ``a``, ``b`` and ``AND(a, b)``, are not independent)."""
    bound = bias + int(row.clamp(min=0).sum())
    if bound <= 1 or W_prev is None:
        return bound
    used = row.nonzero().flatten()
    leaves = W_prev[used].ne(0).any(0).nonzero().flatten()
    if len(leaves) > MAX_PROOF_LEAVES:
        return bound
    grid = torch.tensor(list(itertools.product([0, 1], repeat=len(leaves))), dtype=torch.long)
    hidden = torch.relu(grid @ W_prev[used][:, leaves].T + b_prev[used])  # (2^k, used)
    if int(hidden.max()) * int(row[used].abs().sum()) + abs(bias) >= 1 << 62:  # int64 could overflow: the bound
        return bound
    return int((hidden @ row[used] + bias).max())


def _check_integer(layer: int, W: Tensor, b: Tensor) -> None:
    """Refuse a layer that is not integer: non-finite or out-of-range values named, else non-integer ones."""
    if not (in_range(W) and in_range(b)):
        raise ParamLensError(f"layer {layer}: {layer_problem(W, b)}; lifting needs finite integer weights and "
                             f"biases with {RANGE}")
    if not (is_integer(W) and is_integer(b)):
        raise ParamLensError(f"layer {layer} has non-integer weights or biases; lifting needs an integer network")


@dataclass
class Lifted:
    """The threshold-gate circuit of a network; ``sampled``: neurons whose 0/1 output rests on random
    simulation (``n_samples`` inputs) rather than on a proof over their inputs' inputs."""

    circuit: Circuit
    sampled: int
    n_samples: int


def lift(weights: list[Tensor], biases: list[Tensor], n_samples: int = 4096, seed: int = 0) -> Lifted:
    """Every neuron as a ``threshold`` gate ``[w . x >= 1 - b]``.

    A neuron lifts exactly when it can never output more than 1 on 0/1 inputs. That is proven from the
    weights (independent-input bound, else exhaustively over its inputs' inputs when they are few); when
    neither settles it, ``n_samples`` random inputs must never push it above 1.

    Weights and biases must be finite integers within ``±2^31`` (see :mod:`paramlens.reverse.values`).

    Raises:
        ParamLensError: non-finite, out-of-range or non-integer weights, sizes that do not chain, or a neuron
            seen above 1.
    """
    n_in = weights[0].shape[1]
    c = Circuit(n_in)
    prev = list(range(n_in))
    W_prev = b_prev = None
    h = torch.randint(0, 2, (n_samples, n_in), generator=torch.Generator().manual_seed(seed))
    sampled = 0
    for layer, (W, b) in enumerate(zip(weights, biases)):
        _check_integer(layer, W, b)
        if W.shape[1] != len(prev):
            raise ParamLensError(f"layer {layer} reads {W.shape[1]} activations but the layer before writes {len(prev)}")
        Wi, bi = W.round().long(), b.round().long()
        h = torch.relu(h @ Wi.T + bi)
        seen = h.max(0).values
        cur = []
        for r in range(len(Wi)):
            if _local_max(Wi[r], int(bi[r]), W_prev, b_prev) > 1:
                if int(seen[r]) > 1:
                    raise ParamLensError(f"layer {layer} neuron {r} outputs {int(seen[r])} on some 0/1 input: not a "
                                         "Boolean network (every neuron must be a threshold gate with output 0 or 1)")
                sampled += 1
            nz = Wi[r].nonzero().flatten().tolist()
            cur.append(c.add("threshold", *[prev[j] for j in nz], weights=tuple(int(Wi[r, j]) for j in nz),
                             threshold=1 - int(bi[r])))
        prev, W_prev, b_prev = cur, Wi, bi
    c.outputs = prev
    return Lifted(c, sampled, n_samples)


def _eval_gate(g: Gate, values: list[bool]) -> bool:
    """Reference semantics of one gate on Python booleans."""
    if g.op == "threshold":
        return sum(w * v for w, v in zip(g.weights, values)) >= g.threshold
    x = torch.tensor([values], dtype=torch.bool) if values else torch.zeros(1, 0, dtype=torch.bool)
    c = Circuit(len(values))
    c.outputs = [c.add(g.op, *range(len(values)), weights=g.weights, threshold=g.threshold)]
    return bool(c.evaluate(x)[0, 0])


def _named(table: tuple[bool, ...], leaves: list[int]) -> tuple[str, list[int]] | None:
    """``(op, inputs)`` of the named gate with this truth table over ``leaves`` (rows in
    ``itertools.product`` order), after dropping leaves it does not depend on; None if unnamed."""
    k = len(leaves)
    t = torch.tensor(table).reshape((2,) * k) if k else torch.tensor(table)
    keep = [i for i in range(k) if not torch.equal(t.select(i, 0), t.select(i, 1))]
    for i in reversed(range(k)):
        if i not in keep:
            t = t.select(i, 0)
    if not keep:
        return ("const1" if bool(t) else "const0"), []
    op = _name(tuple(t.flatten().tolist()), len(keep))
    return (op, [leaves[i] for i in keep]) if op is not None else None


def _name(table: tuple[bool, ...], k: int) -> str | None:
    """The named gate with this truth table over ``k`` inputs (rows in ``itertools.product`` order)."""
    rows = list(itertools.product([0, 1], repeat=k))
    ones = [sum(r) for r in rows]
    named = {
        "and": [n == k for n in ones], "or": [n >= 1 for n in ones], "nand": [n < k for n in ones],
        "nor": [n == 0 for n in ones],
    }
    if k == 1:
        named = {"copy": [bool(r[0]) for r in rows], "not": [not r[0] for r in rows]}
    if k == 2:
        named |= {"xor": [n == 1 for n in ones], "xnor": [n != 1 for n in ones]}
    if k == 3:
        named["maj"] = [n >= 2 for n in ones]
    return next((op for op, t in named.items() if tuple(t) == table), None)


MAX_EXPANDED_INPUTS = 5


def _table(gate: Gate, expand: tuple[int, ...], nodes: dict, leaves: list[int]) -> tuple[bool, ...]:
    """Truth table of ``gate`` over ``leaves``, its inputs in ``expand`` computed from their own inputs."""
    table = []
    for r in itertools.product([0, 1], repeat=len(leaves)):
        val = dict(zip(leaves, map(bool, r)))
        for h in expand:
            hn = nodes[h]
            val[h] = _eval_gate(Gate(hn.op, tuple(hn.inputs), hn.weights, hn.threshold), [val[j] for j in hn.inputs])
        table.append(_eval_gate(gate, [val[i] for i in gate.inputs]))
    return tuple(table)


def _best_name(n: _Node, nodes: dict, uses: dict[int, int]) -> tuple[str, list[int], list[int]] | None:
    """Name a threshold gate, possibly over the inputs of some of its input gates ("expanding" them).

    Every subset of input gates is tried (up to :data:`MAX_EXPANDED_INPUTS` inputs); among named results
    the one that leaves the most gates unused wins (an AND that only served an XOR is absorbed), then
    the one with the fewest inputs. Returns ``(op, inputs, absorbed helpers)``.
    """
    gate = Gate(n.op, tuple(n.inputs), n.weights, n.threshold)
    if len(n.inputs) > MAX_LEAVES:  # too wide for truth tables: the plain AND / OR / NOR forms by their weights
        k, ws, t = len(n.inputs), set(n.weights), n.threshold
        op = {(1, k): "and", (1, 1): "or", (-1, 0): "nor", (-1, 1 - k): "nand"}.get((ws.pop(), t)) \
            if len(ws) == 1 else None
        return (op, list(n.inputs), []) if op else None
    expandable = [i for i in n.inputs if i in nodes] if len(n.inputs) <= MAX_EXPANDED_INPUTS else []
    best, best_key = None, None
    for size in range(len(expandable) + 1):
        for expand in itertools.combinations(expandable, size):
            leaves = sorted({j for i in n.inputs for j in (nodes[i].inputs if i in expand else [i])})
            if len(leaves) > MAX_LEAVES or set(expand) & set(leaves):
                continue
            found = _named(_table(gate, expand, nodes, leaves), leaves)
            if found is None:
                continue
            absorbed = [h for h in expand if uses.get(h) == 1]
            key = (-len(absorbed), len(found[1]))
            if best_key is None or key < best_key:
                best, best_key = (found[0], found[1], absorbed), key
    return best


@dataclass
class _Node:
    op: str
    inputs: list[int]
    weights: tuple[int, ...] | None = None
    threshold: int | None = None


def simplify(c: Circuit) -> Circuit:
    """Wires for copies, constants folded, duplicate gates merged, gates named from truth tables, unused
    gates removed."""
    folded = _Folded()
    for s, g in enumerate(c.gates, start=c.n_inputs):
        folded.add(s, g)
    uses = _uses(folded, c.outputs)
    for s in list(folded.nodes):
        if folded.nodes[s].op == "threshold":
            _name_gate(folded, s, uses)
    return _rebuild(c, folded.nodes, folded.res, folded.const)


@dataclass
class _Folded:
    """A circuit being simplified: gates kept (``nodes``), signals that are wires to another (``alias``), and
    signals of constant value (``const``)."""

    nodes: dict[int, _Node] = field(default_factory=dict)
    alias: dict[int, int] = field(default_factory=dict)
    const: dict[int, bool] = field(default_factory=dict)
    seen: dict[tuple, int] = field(default_factory=dict)  # threshold gates kept, by inputs, weights and threshold

    def res(self, s: int) -> int:
        """The signal ``s`` stands for, following wires."""
        while s in self.alias:
            s = self.alias[s]
        return s

    def add(self, s: int, g: Gate) -> None:
        """Gate ``g`` as signal ``s``: a threshold gate that is constant becomes a constant, a copy a wire, and one
        that repeats an earlier gate a wire to it; anything else is kept."""
        ins, ws, t = [self.res(i) for i in g.inputs], list(g.weights or ()), g.threshold
        if g.op != "threshold":
            self.nodes[s] = _Node(g.op, ins)
            return
        merged_w: dict[int, int] = {}
        for i, w in zip(ins, ws):  # an input read twice (through copies) adds up its weights
            merged_w[i] = merged_w.get(i, 0) + w
        live = [(i, w) for i, w in merged_w.items() if i not in self.const and w]
        t -= sum(w for i, w in merged_w.items() if self.const.get(i))
        lo, hi = sum(min(w, 0) for _, w in live), sum(max(w, 0) for _, w in live)
        if lo >= t or hi < t:
            self.const[s] = lo >= t
        elif len(live) == 1 and live[0][1] == 1 and t == 1:
            self.alias[s] = live[0][0]
        else:
            key = ("threshold", tuple(i for i, _ in live), tuple(w for _, w in live), t)
            if key in self.seen:  # the same neuron computed twice (duplicated rows): one gate
                self.alias[s] = self.seen[key]
            else:
                self.seen[key] = s
                self.nodes[s] = _Node("threshold", list(key[1]), key[2], t)


def _uses(folded: _Folded, outputs: list[int]) -> dict[int, int]:
    """How many times each signal is read, by kept gates and as an output."""
    uses: dict[int, int] = {}
    for n in folded.nodes.values():
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1
    for o in outputs:
        uses[folded.res(o)] = uses.get(folded.res(o), 0) + 1
    return uses


def _name_gate(folded: _Folded, s: int, uses: dict[int, int]) -> None:
    """Replace threshold gate ``s`` with its named gate (:func:`_best_name`), if it has one, updating ``uses`` for
    the helper gates it absorbs."""
    found = _best_name(folded.nodes[s], folded.nodes, uses)
    if found is None:
        return
    op, ins, absorbed = found
    for h in absorbed:
        uses[h] -= 1
        for j in folded.nodes[h].inputs:
            uses[j] = uses.get(j, 0) + 1
    if op in ("const0", "const1"):
        folded.const[s] = op == "const1"
        del folded.nodes[s]
    elif op == "copy":
        folded.alias[s] = ins[0]
        folded.nodes[s] = _Node("copy", ins)
    else:
        folded.nodes[s] = _Node(op, ins)


def _rebuild(c: Circuit, nodes: dict[int, _Node], res, const: dict[int, bool]) -> Circuit:
    """Keep what the outputs need, renumbered in topological (original) order."""
    needed: set[int] = set()
    stack = [res(o) for o in c.outputs]
    while stack:
        s = res(stack.pop())
        if s in needed or s < c.n_inputs or s in const:
            continue
        needed.add(s)
        stack.extend(nodes[s].inputs)
    out = Circuit(c.n_inputs)
    new: dict[int, int] = {i: i for i in range(c.n_inputs)}
    for value in (False, True):
        if any(res(o) in const and const[res(o)] == value for o in c.outputs) or any(
                const.get(i) == value for s in needed for i in nodes[s].inputs):
            new[-1 - value] = out.add("const1" if value else "const0")
    for s in sorted(needed):
        n = nodes[s]
        ins = [new[-1 - const[res(i)]] if res(i) in const else new[res(i)] for i in n.inputs]
        new[s] = out.add(n.op, *ins, weights=n.weights, threshold=n.threshold)
    out.outputs = [new[-1 - const[res(o)]] if res(o) in const else new[res(o)] for o in c.outputs]
    return out
