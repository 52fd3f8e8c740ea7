import pytest
import torch

from paramlens.core.circuits import Circuit
from paramlens.errors import ParamLensError
from paramlens.models.compiled import compile_circuit
from paramlens.models.compiled.builders import arx_mixer
from paramlens.reverse.invert import invert_circuit, invert_file, invert_relu, parse_target


def test_a_preimage_of_a_hidden_equality_test_is_found_and_opens_the_network(tmp_path):
    net = compile_circuit(arx_mixer(4, bits=8, target=0xBEEF))
    path = net.save(tmp_path / "lock.safetensors")
    result = invert_file(str(path), "1")
    assert result.found and "SAT" in result.tried
    assert net.forward(torch.tensor([result.input]).long()).tolist() == [[1]]  # the network itself says yes


def test_impossible_outputs_are_reported_as_such():
    c = Circuit(1)
    c.outputs = [c.add("and", 0, c.add("not", 0))]
    result = invert_circuit(c, [1])
    assert not result.found and "UNSAT" in result.why


def small_relu_net():
    torch.manual_seed(0)
    return [torch.randn(12, 3), torch.randn(6, 12), torch.randn(2, 6)], [torch.randn(12), torch.randn(6), torch.randn(2)]


def run(weights, biases, x):
    h = x
    for i, (W, b) in enumerate(zip(weights, biases)):
        h = h @ W.T + b
        h = h.clamp(min=0) if i < len(weights) - 1 else h
    return h


def test_milp_inverts_a_real_valued_relu_network():
    weights, biases = small_relu_net()
    target = run(weights, biases, torch.tensor([0.2, 0.7, 0.4]))
    result = invert_relu(weights, biases, target.tolist(), relu_last=False, tol=1e-5)
    assert result.found
    got = run([w.double() for w in weights], [b.double() for b in biases], torch.tensor(result.input, dtype=torch.float64))
    assert torch.allclose(got, target.double(), atol=2e-5)
    assert all(0 <= v <= 1 for v in result.input)


def test_milp_says_when_it_cannot_or_will_not():
    weights, biases = small_relu_net()
    assert "infeasible" in invert_relu(weights, biases, [1e4, 0.0], relu_last=False).why
    too_big = invert_relu(weights, biases, [0.0, 0.0], relu_last=False, max_binaries=1)
    assert not too_big.found and "not attempted" in too_big.why


def test_targets_parse_as_hex_bits_or_values():
    assert parse_target("0x5", 4) == [1.0, 0.0, 1.0, 0.0]
    assert parse_target("0.5, 2", 2) == [0.5, 2.0]
    with pytest.raises(ParamLensError, match="more than"):
        parse_target("0x1f", 4)
    with pytest.raises(ParamLensError, match="3 values"):
        parse_target("1,2,3", 2)


def test_a_real_network_has_a_linear_readout_unless_told_otherwise(tmp_path):
    """A target with a negative output is reachable through a linear last layer, never through a ReLU."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    layers = {"0.weight": torch.randn(6, 3), "0.bias": torch.randn(6), "2.weight": torch.randn(2, 6),
              "2.bias": torch.randn(2)}
    save_file(layers, tmp_path / "real.safetensors")
    x = torch.tensor([0.7576, 0.2793, 0.4031])
    y = torch.relu(x @ layers["0.weight"].T + layers["0.bias"]) @ layers["2.weight"].T + layers["2.bias"]
    assert y.min() < 0
    target = ",".join(f"{v:.6f}" for v in y.tolist())
    found = invert_file(str(tmp_path / "real.safetensors"), target, tol=1e-4)
    assert found.found and "linear last layer" in found.tried
    assert not invert_file(str(tmp_path / "real.safetensors"), target, tol=1e-4, last="relu").found
