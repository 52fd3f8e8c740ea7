"""The simplified circuit against the lifted one, in memory bounded by the circuits' width rather than their depth.

Both run on random input rows (``(rows, n_inputs)`` 0/1, the rows :func:`~paramlens.reverse.equivalence.
random_check` draws, :data:`CHUNK` at a time); a signal's values are dropped after the last gate that reads it,
a gate nothing reads is not run, and a threshold gate is one weighted sum over its stacked inputs. A SAT miter
(:func:`~paramlens.reverse.equivalence.check`) follows only when every gate can be encoded; otherwise the reason
is given, as ``check`` gives it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from paramlens.core.circuits import Circuit
from paramlens.reverse.equivalence import MAX_TABLE_FAN_IN, Equivalence, check

N_RANDOM = 10_000
CHUNK = 1_000  # rows run at a time


def evaluate(c: Circuit, x: Tensor) -> Tensor:
    """``(n, n_inputs)`` 0/1 -> ``(n, n_outputs)`` bool, each signal kept only until its last reader."""
    last = {s: i for i, g in enumerate(c.gates) for s in g.inputs}
    keep = set(c.outputs)
    values: dict[int, Tensor] = dict(enumerate(x.bool().unbind(-1)))
    zeros = torch.zeros(x.shape[:-1], dtype=torch.bool)
    for i, g in enumerate(c.gates):
        if c.n_inputs + i in last or c.n_inputs + i in keep:  # a gate nothing reads is not run
            values[c.n_inputs + i] = _gate(g, [values[s] for s in g.inputs], zeros)
        for s in set(g.inputs):
            if last[s] == i and s not in keep:
                del values[s]
    return torch.stack([values[o] for o in c.outputs], dim=-1)


def _gate(g, ins: list[Tensor], zeros: Tensor) -> Tensor:
    if g.op == "threshold":
        if not ins:
            return zeros | (0 >= g.threshold)
        w = torch.tensor(g.weights, dtype=torch.int32)[:, None]
        return (torch.stack(ins).to(torch.int32) * w).sum(0) >= g.threshold
    if g.op in ("and", "nand"):
        return torch.stack(ins).all(0) ^ (g.op == "nand")
    if g.op in ("or", "nor"):
        return torch.stack(ins).any(0) ^ (g.op == "nor")
    if g.op in ("xor", "xnor"):
        return ins[0] ^ ins[1] ^ (g.op == "xnor")
    if g.op == "not":
        return ~ins[0]
    if g.op in ("copy", "buf"):
        return ins[0]
    if g.op == "maj":
        return torch.stack(ins).sum(0) >= 2
    return zeros if g.op == "const0" else ~zeros


def _unencodable(c: Circuit) -> bool:
    """A gate the SAT encoding refuses: wider than :data:`MAX_TABLE_FAN_IN` and not a threshold of ``±1`` weights."""
    return any(len(g.inputs) > MAX_TABLE_FAN_IN and not (g.op == "threshold" and all(abs(w) == 1 for w in g.weights))
               for g in c.gates)


def check_circuits(a: Circuit, b: Circuit, seed: int = 0) -> Equivalence:
    """``a`` against ``b`` on :data:`N_RANDOM` random inputs (:data:`CHUNK` rows at a time), then by the SAT miter
    of :func:`~paramlens.reverse.equivalence.check` when every gate can be encoded."""
    x = torch.randint(0, 2, (N_RANDOM, a.n_inputs), generator=torch.Generator().manual_seed(seed))
    bad = sum(int((evaluate(a, part) != evaluate(b, part)).any(-1).sum()) for part in x.split(CHUNK))
    if _unencodable(a) or _unencodable(b):
        return Equivalence(N_RANDOM, bad, None, None, f"a gate has more than {MAX_TABLE_FAN_IN} inputs")
    return dataclasses.replace(check(a, b, 0, seed=seed), random_inputs=N_RANDOM, random_mismatches=bad)
