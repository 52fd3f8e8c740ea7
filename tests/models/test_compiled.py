import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paramlens.errors import ParamLensError
from paramlens.models.compiled import Circuit, compile_circuit
from paramlens.models.compiled.builders import add_words, arx_mixer, equals_const, greater_equal, input_words

OPS = ["and", "or", "nand", "nor", "xor", "xnor", "not", "copy", "buf", "maj", "const0", "const1"]


def all_inputs(n):
    return torch.tensor(list(itertools.product([0, 1], repeat=n)))


@st.composite
def circuits(draw):
    n = draw(st.integers(1, 5))
    c = Circuit(n)
    for _ in range(draw(st.integers(1, 25))):
        op = draw(st.sampled_from(OPS))
        k = {"not": 1, "copy": 1, "buf": 1, "xor": 2, "xnor": 2, "maj": 3, "const0": 0, "const1": 0}.get(op)
        k = draw(st.integers(2, 4)) if k is None else k
        c.add(op, *[draw(st.integers(0, c.n_signals - 1)) for _ in range(k)])
    c.outputs = draw(st.lists(st.integers(0, c.n_signals - 1), min_size=1, max_size=4))
    return c


@settings(max_examples=60, deadline=None)
@given(circuits())
def test_compiled_networks_equal_their_circuits_and_stay_binary(c):
    net = compile_circuit(c)
    x = all_inputs(c.n_inputs)
    assert torch.equal(net.forward(x).bool(), c.evaluate(x))
    h = x.long()
    for W, b in zip(net.weights, net.biases):
        h = torch.relu(h @ W.T + b)
        assert h.max() <= 1  # every neuron is a threshold gate
    with torch.no_grad():  # the float module saved as a checkpoint computes the same
        assert torch.equal(net.to_module()(x.float()), net.forward(x).float())


def test_word_circuits_compute_arithmetic():
    c, (a, b) = input_words(2, 4)
    total, carry = add_words(c, a, b)
    c.outputs = [*total, carry, greater_equal(c, a, b), equals_const(c, a, 0b1010)]
    x = all_inputs(8)
    out = compile_circuit(c).forward(x)
    av = (x[:, :4] * (2 ** torch.arange(4))).sum(1)
    bv = (x[:, 4:] * (2 ** torch.arange(4))).sum(1)
    s = (out[:, :5] * (2 ** torch.arange(5))).sum(1)
    assert torch.equal(s, av + bv)
    assert torch.equal(out[:, 5].bool(), av >= bv) and torch.equal(out[:, 6].bool(), av == 10)


def test_xor_rows_have_the_plus_plus_minus_two_signature():
    c = Circuit(2)
    c.outputs = [c.add("xor", 0, 1)]
    net = compile_circuit(c)
    assert net.weights[-1].tolist() == [[1, 1, -2]] or sorted(net.weights[-1][0].tolist()) == [-2, 1, 1]


def test_rounds_compile_to_repeating_blocks_of_layers():
    nets = [compile_circuit(arx_mixer(r, bits=4)) for r in (1, 2, 3, 4)]
    depths = [len(n.weights) for n in nets]
    period = depths[1] - depths[0]
    assert period > 1 and all(b - a == period for a, b in zip(depths, depths[1:]))
    widths = nets[-1].widths
    assert widths[1:period + 1] == widths[period + 1:2 * period + 1]  # same layer widths in every round


def test_bad_gates_are_clear_errors():
    c = Circuit(2)
    with pytest.raises(ParamLensError, match="unknown gate"):
        c.add("mux", 0, 1)
    with pytest.raises(ParamLensError, match="does not exist"):
        c.add("and", 0, 5)
    with pytest.raises(ParamLensError, match="takes 1 inputs"):
        c.add("not", 0, 1)
    c.add("threshold", 0, 1, weights=(1, 1), threshold=1)  # OR: a + b can reach 2
    with pytest.raises(ParamLensError, match="not one binary neuron"):
        compile_circuit(c)


def test_shuffled_pieces_reproduce_the_data_in_their_true_order(tmp_path):
    from paramlens.models.shuffled import PiecesConfig, make_shuffled

    cfg = PiecesConfig(n_blocks=4, d_model=8, d_hidden=16, n_rows=200, n_steps=100, batch_size=64)
    s = make_shuffled(cfg)
    assert sorted(s.order) == list(range(9)) and s.order != list(range(9))
    x = s.x
    for k in range(4):
        (We, be), (Wc, bc) = s.pieces[s.order[2 * k]], s.pieces[s.order[2 * k + 1]]
        assert We.shape == (16, 8) and Wc.shape == (8, 16)
        x = x + torch.relu(x @ We.T + be) @ Wc.T + bc
    Wf, bf = s.pieces[s.order[-1]]
    assert torch.allclose(x @ Wf.T + bf, s.y, atol=1e-5)
    folder = s.save(tmp_path / "pieces")
    assert len(list(folder.glob("piece_*.safetensors"))) == 9
    assert (folder / "data.csv").read_text().splitlines()[0].endswith(",y")
