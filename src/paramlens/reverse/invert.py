"""Find an input that makes a network produce a given output.

- Boolean networks (integer ReLU over 0/1): lift to a circuit, then SAT with the outputs fixed.
- Small real-valued ReLU networks: a mixed-integer linear program (one binary per hidden neuron, big-M
  bounds from interval arithmetic), solved with HiGHS through SciPy.

Both say what was tried and why they stopped when the instance is too large or has no solution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from paramlens.core.circuits import Circuit
from paramlens.errors import ParamLensError
from paramlens.reverse.equivalence import CNF


@dataclass
class Inversion:
    """``found``: an input was found (``input``); ``tried``: what was run; ``why``: outcome in words."""

    found: bool
    input: list[float] | None
    tried: str
    why: str


def invert_circuit(c: Circuit, target: list[int], max_clauses: int = 5_000_000, time_limit: float = 60.0) -> Inversion:
    """An input on which ``c`` outputs ``target`` (one 0/1 per output), by SAT."""
    if len(target) != len(c.outputs):
        raise ParamLensError(f"target has {len(target)} bits; the circuit has {len(c.outputs)} outputs")
    cnf = CNF(c.n_inputs)
    outs = cnf.circuit(c)
    tried = f"SAT (CaDiCaL) on {c.n_inputs} inputs, {len(c.gates)} gates"
    if outs is None:
        return Inversion(False, None, tried, "a gate is too wide to encode as clauses; nothing was solved")
    if len(cnf.clauses) > max_clauses:
        return Inversion(False, None, tried, f"{len(cnf.clauses):,} clauses exceed the limit of {max_clauses:,}")
    cnf.clauses += [[o if bit else -o] for o, bit in zip(outs, target)]
    from pysat.solvers import Solver

    with Solver(name="cadical153", bootstrap_with=cnf.clauses) as solver:
        if not solver.solve():
            return Inversion(False, None, tried + f", {len(cnf.clauses):,} clauses", "no input gives this output (UNSAT)")
        model = set(solver.get_model())
    x = [float(i + 1 in model) for i in range(c.n_inputs)]
    got = c.evaluate(torch.tensor([x]))[0].long().tolist()
    if got != list(target):
        raise ParamLensError("internal check failed: the SAT model does not reproduce the target")
    return Inversion(True, x, tried + f", {len(cnf.clauses):,} clauses", "found; checked by running the circuit")


def _bounds(weights: list[Tensor], biases: list[Tensor], lo: np.ndarray, hi: np.ndarray):
    """Interval bounds of every layer's pre-activation, for inputs in ``[lo, hi]``."""
    out = []
    for W, b in zip(weights, biases):
        W, b = W.double().numpy(), b.double().numpy()
        pos, neg = W.clip(min=0), W.clip(max=0)
        pre_lo, pre_hi = pos @ lo + neg @ hi + b, pos @ hi + neg @ lo + b
        out.append((pre_lo, pre_hi))
        lo, hi = pre_lo.clip(min=0), pre_hi.clip(min=0)
    return out


def invert_relu(weights: list[Tensor], biases: list[Tensor], target: list[float], low: float = 0.0,
                high: float = 1.0, tol: float = 1e-4, relu_last: bool = True, max_binaries: int = 2000,
                time_limit: float = 60.0) -> Inversion:
    """An input in ``[low, high]^n`` whose output is within ``tol`` of ``target``, by MILP."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    n_in = weights[0].shape[1]
    bounds = _bounds(weights, biases, np.full(n_in, low), np.full(n_in, high))
    hidden = [len(b) for b in biases[:-1]] + ([len(biases[-1])] if relu_last else [])
    unstable = sum(int(((lo < 0) & (hi > 0)).sum()) for (lo, hi), _ in zip(bounds, hidden))
    tried = f"MILP (HiGHS): {n_in} inputs, {sum(hidden)} ReLUs ({unstable} undecided by interval bounds)"
    if unstable > max_binaries:
        return Inversion(False, None, tried, f"{unstable} binaries exceed the limit of {max_binaries}; not attempted")
    if len(target) != len(biases[-1]):
        raise ParamLensError(f"target has {len(target)} values; the network has {len(biases[-1])} outputs")
    # variables: x, then per layer: h (post) and d (binary) for ReLU layers, or y for a linear last layer
    names: list[tuple[str, int, int]] = [("x", 0, i) for i in range(n_in)]
    lb, ub, integ = [low] * n_in, [high] * n_in, [0] * n_in
    rows, lo_c, hi_c = [], [], []
    prev = list(range(n_in))
    for layer, (W, b) in enumerate(zip(weights, biases)):
        W, b = W.double().numpy(), b.double().numpy()
        pre_lo, pre_hi = bounds[layer]
        is_relu = layer < len(weights) - 1 or relu_last
        cur = []
        for r in range(len(b)):
            coef = {prev[j]: W[r, j] for j in np.nonzero(W[r])[0]}
            h = len(names)
            names.append(("h", layer, r))
            cur.append(h)
            if not is_relu or pre_lo[r] >= 0:  # linear: h = w.x + b
                lb.append(-np.inf if not is_relu else 0.0)
                ub.append(np.inf)
                integ.append(0)
                rows.append({h: 1.0} | {k: -v for k, v in coef.items()})
                lo_c.append(b[r])
                hi_c.append(b[r])
            elif pre_hi[r] <= 0:  # always off
                lb.append(0.0)
                ub.append(0.0)
                integ.append(0)
            else:
                d = len(names)
                names.append(("d", layer, r))
                lb += [0.0, 0.0]
                ub += [float(pre_hi[r]), 1.0]
                integ += [0, 1]
                rows.append({h: 1.0} | {k: -v for k, v in coef.items()})  # h >= w.x + b
                lo_c.append(b[r])
                hi_c.append(np.inf)
                rows.append({h: 1.0, d: -float(pre_lo[r])} | {k: -v for k, v in coef.items()})  # h <= w.x+b-lo(1-d)
                lo_c.append(-np.inf)
                hi_c.append(b[r] - float(pre_lo[r]))
                rows.append({h: 1.0, d: -float(pre_hi[r])})  # h <= hi d
                lo_c.append(-np.inf)
                hi_c.append(0.0)
        prev = cur
    for o, t in zip(prev, target):
        rows.append({o: 1.0})
        lo_c.append(t - tol)
        hi_c.append(t + tol)
    A = np.zeros((len(rows), len(names)))
    for i, row in enumerate(rows):
        for k, v in row.items():
            A[i, k] = v
    res = milp(c=np.zeros(len(names)), constraints=LinearConstraint(A, lo_c, hi_c), integrality=np.array(integ),
               bounds=Bounds(lb, ub), options={"time_limit": time_limit})
    if res.x is None:
        why = "infeasible: no input in the box gives this output" if res.status == 2 else res.message
        return Inversion(False, None, tried, why)
    x = torch.tensor(res.x[:n_in])
    h = x
    for layer, (W, b) in enumerate(zip(weights, biases)):
        h = h @ W.double().T + b.double()
        if layer < len(weights) - 1 or relu_last:
            h = h.clamp(min=0)
    err = float((h - torch.tensor(target, dtype=torch.float64)).abs().max())
    return Inversion(True, x.tolist(), tried, f"found; running the network gives max error {err:.2e}")


def parse_target(text: str, n_outputs: int) -> list[float]:
    """``"0,1,1"`` or ``"0.5,2"`` (one value per output), or ``"0xbeef"`` (bits, lowest bit = output 0)."""
    text = text.strip()
    if text.lower().startswith("0x"):
        value = int(text, 16)
        if value >> n_outputs:
            raise ParamLensError(f"target {text} needs more than the network's {n_outputs} output bits")
        return [float((value >> i) & 1) for i in range(n_outputs)]
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ParamLensError(f"target '{text}': give comma-separated numbers or a 0x... hex value") from None
    if len(values) != n_outputs:
        raise ParamLensError(f"target has {len(values)} values; the network has {n_outputs} outputs")
    return values


def invert_file(path: str, target: str, low: float = 0.0, high: float = 1.0, tol: float = 1e-4) -> Inversion:
    """Invert the layer chain in ``path``: SAT when it is a Boolean network and the target is 0/1, else MILP."""
    from paramlens.reverse.chain import chain_weights
    from paramlens.reverse.circuit import lift, simplify

    weights, biases = chain_weights(path, torch.float64)
    values = parse_target(target, len(biases[-1]))
    if all(v in (0.0, 1.0) for v in values):
        try:
            circuit = simplify(lift(weights, biases).circuit)
        except ParamLensError as e:
            boolean_why = str(e)
        else:
            return invert_circuit(circuit, [int(v) for v in values])
    else:
        boolean_why = "the target is not 0/1"
    result = invert_relu(weights, biases, values, low=low, high=high, tol=tol)
    result.tried = f"not a Boolean instance ({boolean_why}); {result.tried}"
    return result
