import copy
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paramlens.core.circuits import Circuit, Gate
from paramlens.errors import ParamLensError
from paramlens.models.compiled import compile_circuit
from paramlens.models.compiled.builders import arx_mixer
from paramlens.reverse.circuit import lift, simplify
from paramlens.reverse.equivalence import check
from paramlens.reverse.netlist import from_json, to_dot, to_json, to_python


def lifted(c: Circuit):
    net = compile_circuit(c)
    return lift([w.float() for w in net.weights], [b.float() for b in net.biases])


@pytest.mark.parametrize("op,arity", [("xor", 2), ("or", 3), ("maj", 3), ("xnor", 2), ("nand", 2)])
def test_each_gate_is_recovered_by_name(op, arity):
    c = Circuit(arity)
    c.outputs = [c.add(op, *range(arity))]
    simple = simplify(lifted(c).circuit)
    assert [g.op for g in simple.gates] == [op]
    assert check(c, simple).proven is True


@st.composite
def circuits(draw):
    c = Circuit(draw(st.integers(2, 5)))
    for _ in range(draw(st.integers(1, 15))):
        op = draw(st.sampled_from(["and", "or", "xor", "not", "maj", "nor", "const1"]))
        k = {"not": 1, "xor": 2, "maj": 3, "const1": 0}.get(op)
        k = draw(st.integers(2, 3)) if k is None else k
        c.add(op, *[draw(st.integers(0, c.n_signals - 1)) for _ in range(k)])
    c.outputs = draw(st.lists(st.integers(c.n_inputs, c.n_signals - 1), min_size=1, max_size=3))
    return c


@settings(max_examples=40, deadline=None)
@given(circuits())
def test_lifted_and_simplified_circuits_are_proven_equal_to_the_source(c):
    simple = simplify(lifted(c).circuit)
    eq = check(c, simple)
    assert eq.proven is True and eq.random_mismatches == 0


def test_arx_network_reads_back_as_xor_and_majority_gates():
    c = arx_mixer(3, bits=8, target=0xBEEF)
    simple = simplify(lifted(c).circuit)
    ops = [g.op for g in simple.gates]
    assert ops.count("maj") >= 3 * 6 and ops.count("xor") + ops.count("xnor") >= 3 * 16
    assert "threshold" not in ops
    final = simple.gates[simple.outputs[0] - simple.n_inputs]
    assert final.op == "and" and len(final.inputs) == 16  # the equality test: an AND over 16 (negated) bits
    assert check(c, simple).proven is True


def test_a_changed_gate_is_caught_with_a_counterexample():
    c = arx_mixer(2, bits=8)
    simple = simplify(lifted(c).circuit)
    i = next(k for k, g in enumerate(simple.gates) if g.op == "xor")
    wrong = copy.deepcopy(simple)
    wrong.gates[i] = Gate("or", simple.gates[i].inputs)
    eq = check(c, wrong)
    assert eq.proven is False
    x = torch.tensor([eq.counterexample])
    assert not torch.equal(c.evaluate(x), wrong.evaluate(x))


def test_exports_compute_the_same_function():
    c = arx_mixer(1, bits=4)
    simple = simplify(lifted(c).circuit)
    namespace: dict = {}
    exec(to_python(simple), namespace)  # the generated source of this test's own circuit
    x = torch.tensor(list(itertools.product([0, 1], repeat=8)))
    assert [list(namespace["circuit"](row)) for row in x.tolist()] == simple.evaluate(x).long().tolist()
    assert torch.equal(from_json(to_json(simple)).evaluate(x), simple.evaluate(x))
    assert to_dot(simple).startswith("digraph") and "xor" in to_dot(simple)


def test_networks_that_are_not_boolean_are_refused():
    with pytest.raises(ParamLensError, match="not a Boolean network"):  # ReLU(a + b) reaches 2
        lift([torch.tensor([[1.0, 1.0]])], [torch.tensor([0.0])])
    with pytest.raises(ParamLensError, match="non-integer"):
        lift([torch.tensor([[0.5, 1.0]])], [torch.tensor([0.0])])
