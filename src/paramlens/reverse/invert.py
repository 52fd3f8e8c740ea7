"""Find an input that makes a network produce a given output.

- Boolean networks (integer ReLU over 0/1): lift to a circuit, then SAT with the outputs fixed.
- Small real-valued ReLU networks: a mixed-integer linear program (one binary per hidden neuron, big-M
  bounds from interval arithmetic), solved with HiGHS through SciPy.

Both refuse weights that are NaN, infinite or beyond ``±2^31`` (:mod:`paramlens.reverse.values`), and say
which option is wrong for a bad ``--target``, ``--low``/``--high`` box or ``--tol``.

Both say what was tried and why they stopped when the instance is too large or has no solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from paramlens.core.circuits import Circuit
from paramlens.errors import ParamLensError, UsageError
from paramlens.reverse.equivalence import CNF
from paramlens.reverse.values import RANGE, first_bad_layer, layer_problem, refuse_bad_values


@dataclass
class Inversion:
    """``found``: an input was found (``input``; ``message``: the bytes it spells, for byte-reading networks);
    ``tried``: what was run; ``why``: outcome in words."""

    found: bool
    input: list[float] | None
    tried: str
    why: str
    message: bytes | None = None


def invert_circuit(c: Circuit, target: list[int], max_clauses: int = 5_000_000, time_limit: float = 60.0) -> Inversion:
    """An input on which ``c`` outputs ``target`` (one 0/1 per output), by SAT."""
    if len(target) != len(c.outputs):
        raise ParamLensError(f"target has {len(target)} bits; the circuit has {len(c.outputs)} outputs")
    if any(bit not in (0, 1) for bit in target):
        raise ParamLensError(f"target {list(target)}: a circuit's target is one bit (0 or 1) per output")
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
    """Interval bounds of every layer's pre-activation, for inputs in ``[lo, hi]`` (inf or NaN where they
    overflow float64)."""
    out = []
    for W, b in zip(weights, biases):
        W, b = W.double().numpy(), b.double().numpy()
        pos, neg = W.clip(min=0), W.clip(max=0)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as inf/NaN, refused by the caller
            pre_lo, pre_hi = pos @ lo + neg @ hi + b, pos @ hi + neg @ lo + b
        out.append((pre_lo, pre_hi))
        lo, hi = pre_lo.clip(min=0), pre_hi.clip(min=0)
    return out


@dataclass
class _Program:
    """The MILP: per variable its bounds and integrality, and constraint rows ``lo <= sum coef * var <= hi``."""

    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    integ: list[int] = field(default_factory=list)
    rows: list[dict[int, float]] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)

    def var(self, lb: float, ub: float, integer: bool = False) -> int:
        """A new variable in ``[lb, ub]``; returns its index."""
        self.lb.append(lb)
        self.ub.append(ub)
        self.integ.append(int(integer))
        return len(self.lb) - 1

    def row(self, coef: dict[int, float], lo: float, hi: float) -> None:
        """The constraint ``lo <= sum coef[k] * var_k <= hi``."""
        self.rows.append(coef)
        self.lo.append(lo)
        self.hi.append(hi)


def _encode_layer(p: _Program, W: np.ndarray, b: np.ndarray, pre: tuple[np.ndarray, np.ndarray], is_relu: bool,
                  prev: list[int]) -> list[int]:
    """Add one layer's outputs ``h`` (a ReLU with a binary ``d`` and big-M bounds ``pre`` where its sign is
    undecided) and return their variable indices."""
    pre_lo, pre_hi = pre
    cur = []
    for r in range(len(b)):
        minus_wx = {prev[j]: -W[r, j] for j in np.nonzero(W[r])[0]}
        if not is_relu or pre_lo[r] >= 0:  # linear: h = w.x + b
            h = p.var(-np.inf if not is_relu else 0.0, np.inf)
            p.row({h: 1.0} | minus_wx, b[r], b[r])
        elif pre_hi[r] <= 0:  # always off
            h = p.var(0.0, 0.0)
        else:
            h = p.var(0.0, float(pre_hi[r]))
            d = p.var(0.0, 1.0, integer=True)
            p.row({h: 1.0} | minus_wx, b[r], np.inf)  # h >= w.x + b
            p.row({h: 1.0, d: -float(pre_lo[r])} | minus_wx, -np.inf, b[r] - float(pre_lo[r]))  # h <= w.x+b-lo(1-d)
            p.row({h: 1.0, d: -float(pre_hi[r])}, -np.inf, 0.0)  # h <= hi d
        cur.append(h)
    return cur


def _check_relu_instance(weights: list[Tensor], biases: list[Tensor], target: list[float], low: float, high: float,
                         tol: float) -> None:
    """Refuse what the MILP cannot solve faithfully: bad options, non-finite targets, non-finite or out-of-range
    weights."""
    check_options(low, high, tol)
    bad_target = next((t for t in target if not math.isfinite(t)), None)
    if bad_target is not None:
        raise ParamLensError(f"target holds {bad_target}: every target value must be a finite number")
    index = first_bad_layer(weights, biases)
    if index is not None:
        raise ParamLensError(f"layer {index}: {layer_problem(weights[index], biases[index])}; the MILP needs "
                             f"finite weights and biases with {RANGE}")


def invert_relu(weights: list[Tensor], biases: list[Tensor], target: list[float], low: float = 0.0,
                high: float = 1.0, tol: float = 1e-4, relu_last: bool = True, max_binaries: int = 2000,
                time_limit: float = 60.0) -> Inversion:
    """An input in ``[low, high]^n`` whose output is within ``tol`` of ``target``, by MILP.

    Raises:
        ParamLensError: bad ``low``/``high``/``tol`` (see :func:`check_options`), a target of the wrong length
            or with NaN/infinities, weights that are not finite or beyond ``±2^31``, or interval bounds that
            overflow float64.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    _check_relu_instance(weights, biases, target, low, high, tol)
    n_in = weights[0].shape[1]
    bounds = _bounds(weights, biases, np.full(n_in, low), np.full(n_in, high))
    overflow = next((k for k, (lo, hi) in enumerate(bounds) if not (np.isfinite(lo).all() and np.isfinite(hi).all())),
                    None)
    if overflow is not None:
        raise ParamLensError(f"layer {overflow}: the interval bounds of its pre-activations overflow float64 for "
                             f"inputs in [{low}, {high}]; give a smaller --low/--high box")
    hidden = [len(b) for b in biases[:-1]] + ([len(biases[-1])] if relu_last else [])
    unstable = sum(int(((lo < 0) & (hi > 0)).sum()) for (lo, hi), _ in zip(bounds, hidden))
    tried = f"MILP (HiGHS): {n_in} inputs, {sum(hidden)} ReLUs ({unstable} undecided by interval bounds)"
    if unstable > max_binaries:
        return Inversion(False, None, tried, f"{unstable} binaries exceed the limit of {max_binaries}; not attempted")
    if len(target) != len(biases[-1]):
        raise ParamLensError(f"target has {len(target)} values; the network has {len(biases[-1])} outputs")
    p = _Program()
    prev = [p.var(low, high) for _ in range(n_in)]
    for layer, (W, b) in enumerate(zip(weights, biases)):
        is_relu = layer < len(weights) - 1 or relu_last
        prev = _encode_layer(p, W.double().numpy(), b.double().numpy(), bounds[layer], is_relu, prev)
    for o, t in zip(prev, target):
        p.row({o: 1.0}, t - tol, t + tol)
    A = np.zeros((len(p.rows), len(p.lb)))
    for i, row in enumerate(p.rows):
        for k, v in row.items():
            A[i, k] = v
    res = milp(c=np.zeros(len(p.lb)), constraints=LinearConstraint(A, p.lo, p.hi), integrality=np.array(p.integ),
               bounds=Bounds(p.lb, p.ub), options={"time_limit": time_limit})
    if res.x is None:
        why = "infeasible: no input in the box gives this output" if res.status == 2 else res.message
        return Inversion(False, None, tried, why)
    return _checked(weights, biases, res.x[:n_in], target, relu_last, tried)


def _checked(weights: list[Tensor], biases: list[Tensor], x_found: np.ndarray, target: list[float], relu_last: bool,
             tried: str) -> Inversion:
    """The found input, with the error of running the network on it (float64)."""
    x = torch.tensor(x_found)
    h = x
    for layer, (W, b) in enumerate(zip(weights, biases)):
        h = h @ W.double().T + b.double()
        if layer < len(weights) - 1 or relu_last:
            h = h.clamp(min=0)
    err = float((h - torch.tensor(target, dtype=torch.float64)).abs().max())
    return Inversion(True, x.tolist(), tried, f"found; running the network gives max error {err:.2e}")


def _hex_target(text: str, n_outputs: int) -> list[float]:
    """``0x...`` as one bit per output, lowest bit = output 0."""
    try:
        value = int(text, 16)
    except ValueError:
        raise UsageError(f"--target '{text}' is not a hex number: give 0x followed by hex digits 0-9, a-f "
                             f"(lowest bit = output 0)") from None
    if value >> n_outputs:
        raise UsageError(f"--target {text} needs more than the network's {n_outputs} output bits: give a value "
                             f"below 2^{n_outputs}")
    return [float((value >> i) & 1) for i in range(n_outputs)]


def parse_target(text: str, n_outputs: int) -> list[float]:
    """``"0,1,1"`` or ``"0.5,2"`` (one finite value per output), or ``"0xbeef"`` (bits, lowest bit = output 0).

    Raises:
        ParamLensError: an empty target, a bad hex number or one wider than the outputs, values that are not
            numbers or not finite, or not one value per output; the message names ``--target``.
    """
    text = text.strip()
    if not text:
        raise UsageError(f"--target is empty: give {n_outputs} comma-separated numbers or a 0x... hex value")
    if text.lower().startswith("0x"):
        return _hex_target(text, n_outputs)
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--target '{text}': give {n_outputs} comma-separated numbers or a 0x... hex "
                             "value") from None
    bad = next((v for v in values if not math.isfinite(v)), None)
    if bad is not None:
        raise UsageError(f"--target '{text}' holds {bad}: every value must be a finite number")
    if len(values) != n_outputs:
        raise UsageError(f"--target has {len(values)} values; the network has {n_outputs} outputs: give one "
                             "value per output")
    return values


def check_options(low: float, high: float, tol: float) -> None:
    """Refuse an input box ``[low, high]`` that is not finite or is empty, and a ``tol`` that is not >= 0.

    Raises:
        ParamLensError: naming the option (``--low``, ``--high``, ``--tol``) and what it allows.
    """
    for name, value in (("--low", low), ("--high", high)):
        if not math.isfinite(value):
            raise UsageError(f"{name} {value}: give a finite number (the bound of every input)")
    if low > high:
        raise UsageError(f"--low {low} is above --high {high}: give --low <= --high")
    if not tol >= 0:  # also NaN
        raise UsageError(f"--tol {tol}: give a number >= 0 (the allowed error per output)")


LAST = ("auto", "linear", "relu")


def invert_file(path: str, target: str, low: float = 0.0, high: float = 1.0, tol: float = 1e-4,
                last: str = "auto", *, domain: str = "auto", words: str | Path | None = None,
                state_dir: Path | None = None, max_seconds: float = 3600.0, progress: bool = True) -> Inversion:
    """Invert the layer chain in ``path``: a candidate search when it is a hash lock, SAT when it is a Boolean
    network and the target is 0/1, else MILP.

    A network reading bytes, or too large for SAT (:data:`LOCK_CHECK_UNITS` ReLUs), is first identified
    (``domain``: its inputs, as for ``identify``); when its output tests a one-way function of the input against a
    digest and ``target`` asks for the test to pass, candidates from ``words`` (default: the system word list) are
    searched (:mod:`paramlens.reverse.preimage`; ``state_dir``: where the search is saved and resumed;
    ``max_seconds``: its time limit).

    ``last``: whether the last layer's outputs pass a ReLU. ``"auto"``: yes for a Boolean network (its gates are
    ReLU units), no for the MILP (a real network's readout is linear); ``"relu"`` / ``"linear"`` say it outright.

    Raises:
        ParamLensError: bad options (:func:`check_options`, :func:`parse_target`), or a layer holding NaN,
            infinities or values beyond ``±2^31`` (named with its tensors and what they hold).
    """
    from paramlens.reverse.chain import chain_weights
    from paramlens.reverse.circuit import lift, simplify

    check_options(low, high, tol)
    if last not in LAST:
        raise UsageError(f"--last {last!r}: choose one of {', '.join(LAST)}")
    locked, lock_note = _invert_lock(path, target, domain, words, state_dir, max_seconds, progress)
    if locked is not None:
        return locked
    weights, biases = chain_weights(path, torch.float64)
    refuse_bad_values(path, weights, biases, "inversion (SAT or MILP)")
    values = parse_target(target, len(biases[-1]))
    if all(v in (0.0, 1.0) for v in values) and last != "linear":
        try:
            circuit = simplify(lift(weights, biases).circuit)
        except ParamLensError as e:
            boolean_why = str(e)
        else:
            return invert_circuit(circuit, [int(v) for v in values])
    else:
        boolean_why = "the target is not 0/1" if last != "linear" else "the last layer is linear (--last linear)"
    result = invert_relu(weights, biases, values, low=low, high=high, tol=tol, relu_last=last == "relu")
    readout = "ReLU on the outputs" if last == "relu" else "linear last layer (--last relu applies a ReLU)"
    result.tried = f"{lock_note}not a Boolean instance ({boolean_why}); {result.tried}; {readout}"
    return result


LOCK_CHECK_UNITS = 4096  # networks with more ReLUs than this are identified before SAT is tried


def _invert_lock(path: str, target: str, domain: str, words, state_dir: Path | None, max_seconds: float,
                 progress: bool) -> tuple[Inversion | None, str]:
    """The candidate search's answer when the network is a hash lock and ``target`` opens it, else None and what
    identify found instead (empty when the network was not identified)."""
    from paramlens.reverse.candidates import load_words
    from paramlens.reverse.chain import TensorStore, find_chain
    from paramlens.reverse.identify_domain import choose_domain, parse_input
    from paramlens.reverse.preimage import find_lock, invert_lock

    store = TensorStore(path)
    layers, _ = find_chain(store)
    units = sum(ref.shape[0] for ref in layers)
    first = layers[0]
    try:
        kind = choose_domain(parse_input(domain), store.get(first.weight),
                             store.get(first.bias) if first.bias else None).kind
    except ParamLensError:
        return None, ""
    if kind != "bytes" and units <= LOCK_CHECK_UNITS:
        return None, ""
    lock, _ = find_lock(path, domain=domain, progress=progress)
    if lock is None:
        return None, ("identify: no output tests a one-way function of the input (`paramlens reverse identify` "
                      "shows what the layers carry); ")
    values = parse_target(target, layers[-1].shape[0])
    if values[lock.unit] != lock.value:
        return None, f"identify: {lock.statement()}, and the target does not ask for it to hold; "
    return invert_lock(path, lock, load_words(words), units, state_dir=state_dir, max_seconds=max_seconds,
                       progress=progress), ""
