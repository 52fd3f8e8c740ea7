"""Are two Boolean circuits the same function? Random simulation always; a SAT miter when small enough."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from paramlens.core.circuits import Circuit, Gate

MAX_TABLE_FAN_IN = 10


@dataclass
class Equivalence:
    """``random_mismatches`` out of ``random_inputs``; ``proven``: True (SAT: no input differs), False (SAT
    found one: ``counterexample``), None (not attempted: ``why``)."""

    random_inputs: int
    random_mismatches: int
    proven: bool | None
    counterexample: list[int] | None
    why: str


def random_check(a: Circuit, b: Circuit, n: int = 10_000, seed: int = 0) -> int:
    """Number of random inputs (of ``n``) on which the outputs differ."""
    x = torch.randint(0, 2, (n, a.n_inputs), generator=torch.Generator().manual_seed(seed))
    return int((a.evaluate(x) != b.evaluate(x)).any(-1).sum())


class CNF:
    def __init__(self, n_inputs: int):
        self.clauses: list[list[int]] = []
        self.n_vars = n_inputs

    def new(self) -> int:
        self.n_vars += 1
        return self.n_vars

    def gate(self, g: Gate, ins: list[int]) -> int | None:
        """Tseitin clauses for ``out <-> g(ins)``; None when the gate is too wide to encode."""
        out = self.new()
        op = g.op
        if op in ("copy", "buf", "not"):
            s = 1 if op != "not" else -1
            self.clauses += [[-out, s * ins[0]], [out, -s * ins[0]]]
        elif op in ("and", "nand", "or", "nor"):
            o = out if op in ("and", "or") else -out
            if op in ("and", "nand"):
                self.clauses += [[-o, i] for i in ins] + [[o] + [-i for i in ins]]
            else:
                self.clauses += [[o, -i] for i in ins] + [[-o] + ins]
        elif op in ("const0", "const1"):
            self.clauses.append([out if op == "const1" else -out])
        elif op == "threshold" and all(abs(w) == 1 for w in g.weights) and self._literal_gate(g, ins, out):
            pass
        elif len(ins) <= MAX_TABLE_FAN_IN:
            c = Circuit(len(ins))
            c.outputs = [c.add(op, *range(len(ins)), weights=g.weights, threshold=g.threshold)]
            rows = torch.tensor(list(itertools.product([0, 1], repeat=len(ins))))
            values = c.evaluate(rows)[:, 0] if len(ins) else c.evaluate(torch.zeros(1, 0))[:, 0]
            for row, v in zip(rows.tolist(), values.tolist()):
                self.clauses.append([-i if bit else i for i, bit in zip(ins, row)] + [out if v else -out])
        else:
            return None
        return out

    def _literal_gate(self, g: Gate, ins: list[int], out: int) -> bool:
        """A +-1 threshold gate that is an AND or an OR of literals (any width); False if it is neither."""
        lits = [i if w > 0 else -i for i, w in zip(ins, g.weights)]
        n_pos = sum(w > 0 for w in g.weights)
        if g.threshold == n_pos:  # every literal must hold
            self.clauses += [[-out, lit] for lit in lits] + [[out] + [-lit for lit in lits]]
        elif g.threshold == n_pos - len(lits) + 1:  # at least one literal holds
            self.clauses += [[out, -lit] for lit in lits] + [[-out] + lits]
        else:
            return False
        return True

    def circuit(self, c: Circuit) -> list[int] | None:
        var = list(range(1, c.n_inputs + 1))
        for g in c.gates:
            v = self.gate(g, [var[i] for i in g.inputs])
            if v is None:
                return None
            var.append(v)
        return [var[o] for o in c.outputs]


def check(a: Circuit, b: Circuit, n_random: int = 10_000, max_clauses: int = 2_000_000, seed: int = 0) -> Equivalence:
    """Random simulation, then (when both encode within ``max_clauses``) a SAT miter: proven equal when
    no input makes any output differ."""
    if a.n_inputs != b.n_inputs or len(a.outputs) != len(b.outputs):
        return Equivalence(0, 0, False, None, "different numbers of inputs or outputs")
    bad = random_check(a, b, n_random, seed)
    cnf = CNF(a.n_inputs)
    outs_a, outs_b = cnf.circuit(a), cnf.circuit(b)
    if outs_a is None or outs_b is None:
        return Equivalence(n_random, bad, None, None, f"a gate has more than {MAX_TABLE_FAN_IN} inputs")
    if len(cnf.clauses) > max_clauses:
        return Equivalence(n_random, bad, None, None, f"{len(cnf.clauses):,} clauses exceed {max_clauses:,}")
    diffs = []
    for x, y in zip(outs_a, outs_b):  # d <-> x xor y
        d = cnf.new()
        cnf.clauses += [[-d, x, y], [-d, -x, -y], [d, -x, y], [d, x, -y]]
        diffs.append(d)
    cnf.clauses.append(diffs)
    from pysat.solvers import Solver

    with Solver(name="cadical153", bootstrap_with=cnf.clauses) as solver:
        if solver.solve():
            model = set(solver.get_model())
            return Equivalence(n_random, bad, False, [int(i + 1 in model) for i in range(a.n_inputs)],
                               "SAT found an input where they differ")
    return Equivalence(n_random, bad, True, None, f"SAT: no input differs ({len(cnf.clauses):,} clauses)")
