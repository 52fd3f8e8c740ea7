import hashlib
import random
from statistics import mode

import pytest
import torch

import paramlens
from paramlens.errors import ParamLensError
from paramlens.models.compiled import (
    REFERENCES,
    Nuisance,
    SparseNetwork,
    bits_to_bytes,
    compile_circuit,
    disguise,
    hash_circuit,
    hash_network,
    message_bits,
)
from paramlens.models.compiled.builders import SHA256_K as SHA256_K16
from paramlens.models.compiled.hashes import MD5_K, SHA1_K, SHA256_IV, SHA256_K
from paramlens.reverse.chain import natural_key

HASHES = ["md5", "sha1", "sha256"]


def messages(n_bytes, count=4, seed=0):
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(n_bytes)) for _ in range(count)]


def codes(msgs):
    return torch.tensor([list(m) for m in msgs])


def run_loaded(tensors, x):
    """Run the Linear + ReLU chain stored in ``tensors`` (names in natural order) in float64."""
    h = x.double()
    for name in sorted((k for k, v in tensors.items() if v.ndim == 2), key=natural_key):
        W, b = tensors[name].double(), tensors[name.removesuffix("weight") + "bias"].double()
        h = torch.relu(h @ W.T + b)
    return h


@pytest.mark.parametrize("name", HASHES)
def test_references_equal_hashlib_and_reduced_steps_keep_the_feed_forward(name):
    for n in (1, 2, 17, 54, 55):
        for m in messages(n, count=2, seed=n):
            assert REFERENCES[name](m) == hashlib.new(name, m).digest()
    # no step run: the digest is the initial state added to itself, whatever the message
    assert len({REFERENCES[name](m, 0) for m in messages(9)}) == 1


def test_round_constants_are_the_published_ones():
    assert SHA256_K[:16] == SHA256_K16 and SHA256_K[63] == 0xC67178F2 and SHA256_IV[0] == 0x6A09E667
    assert MD5_K[0] == 0xD76AA478 and MD5_K[63] == 0xEB86D391
    assert SHA1_K == (0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6)


@pytest.mark.parametrize("name", HASHES)
def test_full_circuits_equal_hashlib(name):
    msgs = messages(6, count=3)
    out = hash_circuit(name, 6).evaluate(message_bits(msgs))
    assert bits_to_bytes(out) == [hashlib.new(name, m).digest() for m in msgs]


@pytest.fixture(scope="module")
def compiled_md5():
    """MD5 of 1-byte messages after one step, compiled from its circuit."""
    return compile_circuit(hash_circuit("md5", 1, 1))


@pytest.mark.parametrize("name, steps", [("sha1", 1), ("sha256", 1)])
def test_compiled_reduced_networks_equal_the_reference(name, steps):
    msgs = messages(2)
    net = compile_circuit(hash_circuit(name, 2, steps))
    assert bits_to_bytes(net.forward(message_bits(msgs))) == [REFERENCES[name](m, steps) for m in msgs]


def test_compiled_equality_bit_fires_on_the_target_only():
    msgs = messages(3)
    net = compile_circuit(hash_circuit("md5", 3, 1, target=REFERENCES["md5"](msgs[0], 1)))
    assert net.widths[-1] == 1
    assert net.forward(message_bits(msgs)).flatten().tolist() == [1, 0, 0, 0]


@pytest.mark.parametrize("name, n_bytes, steps, block",
                         [("md5", 5, 3, 8), ("md5", 8, 17, 4), ("sha1", 5, 21, 8), ("sha256", 5, 18, 8),
                          ("sha256", 2, 2, 32), ("sha1", 4, 2, 1)])
def test_handwritten_reduced_networks_equal_the_reference(name, n_bytes, steps, block):
    msgs = messages(n_bytes, seed=steps)
    net = hash_network(name, n_bytes, steps, block=block)
    out = net.forward(codes(msgs))
    assert out.max() <= 1 and bits_to_bytes(out) == [REFERENCES[name](m, steps) for m in msgs]


def test_handwritten_full_md5_equals_hashlib_with_round_dependent_widths():
    msgs = messages(8)
    net = hash_network("md5", 8)
    assert len(net.layers) == 7 + 64 * 9 + 6
    assert bits_to_bytes(net.forward(codes(msgs))) == [hashlib.md5(m).digest() for m in msgs]
    w = [net.widths[8 + 9 * i] for i in range(64)]  # the function layer of every step: F, G 2 rows a bit; H, I 3
    assert mode(w[:16]) == mode(w[16:32]) < mode(w[32:48]) == mode(w[48:])


@pytest.mark.parametrize("compare", ["byte", "bit"])
def test_handwritten_equality_output_with_the_target_as_negated_bias(compare):
    msgs = messages(4, count=3)
    msgs.append(msgs[0][:-1] + bytes([msgs[0][-1] ^ 1]))
    target = REFERENCES["sha1"](msgs[0], 3)
    net = hash_network("sha1", 4, 3, target=target, compare=compare)
    assert net.forward(codes(msgs)).flatten().tolist() == [1, 0, 0, 0]
    compared = list(target) if compare == "byte" else [(t >> j) & 1 for t in target for j in range(8)]
    last_hidden = net.layers[-2]
    assert last_hidden.bias[0::2].tolist() == [-c for c in compared]
    assert last_hidden.bias[1::2].tolist() == compared
    assert net.layers[-1].bias.tolist() == [1] and set(net.layers[-1].values.tolist()) == {-1}


def test_handwritten_layout_constants_bits_and_adders():
    one, two = hash_network("md5", 4, 1), hash_network("md5", 4, 2)
    assert len(two.layers) - len(one.layers) == 9  # function layer + two adders of 4 layers each
    first = one.layers[0]  # the initial state as constant rows; bit 7 of each byte: ReLU(x - 127), ReLU(x - 128)
    assert set(first.bias.tolist()) == {-128, -127, 0, 1} and set(first.values.tolist()) == {1}
    assert first.values.numel() == 3 * 4  # and each byte carried on
    step = two.layers[7 + 9]  # the function layer of step 1: MD5's K[1] as weightless rows, lowest bit first
    weighted = set(step.rows.tolist())
    weightless = [int(step.bias[r]) for r in range(step.n_out) if r not in weighted]
    k = [(MD5_K[1] >> i) & 1 for i in range(32)]
    assert any(weightless[i:i + 32] == k for i in range(len(weightless) - 31))
    for layer in two.layers[:7 + 2 * 9]:  # every layer up to the last step carries values on pass-through rows
        counts = torch.bincount(layer.rows, minlength=layer.n_out)
        single = (counts == 1)[layer.rows] & (layer.values == 1) & (layer.bias[layer.rows] == 0)
        assert single.any()


NUISANCES = [Nuisance(permute=True), Nuisance(dead=3), Nuisance(duplicate=4), Nuisance(True, 2, 3, seed=7)]


@pytest.mark.parametrize("nuisance", NUISANCES, ids=["permute", "dead", "duplicate", "all"])
def test_nuisance_keeps_the_function(nuisance):
    msgs = messages(5)
    net = hash_network("sha1", 5, 2)
    shown = disguise(net, nuisance)
    assert torch.equal(shown.forward(codes(msgs)), net.forward(codes(msgs)))
    grown = nuisance.dead + nuisance.duplicate
    assert [w + grown for w in net.widths[1:-1]] == shown.widths[1:-1]
    assert shown.widths[0] == net.widths[0] and shown.widths[-1] == net.widths[-1]
    for layer in shown.layers[:-1]:
        dead = [r for r in range(layer.n_out) if r not in set(layer.rows.tolist()) and layer.bias[r] < 0]
        assert len(dead) >= nuisance.dead
    if nuisance.permute:
        assert not torch.equal(shown.layers[0].bias[:net.layers[0].n_out], net.layers[0].bias)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".pt"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_saved_networks_load_back_and_compute_the_digest(tmp_path, suffix, dtype):
    msgs = messages(2)
    net = disguise(hash_network("sha1", 2, 1), Nuisance(True, 1, 2, seed=1))
    loaded = paramlens.load(net.save(tmp_path / f"net{suffix}", dtype=dtype))
    assert {t.dtype for t in loaded.tensors.values()} == {dtype}
    assert len(loaded.tensors) == 2 * len(net.layers)
    out = run_loaded(loaded.tensors, codes(msgs))
    assert bits_to_bytes(out) == [REFERENCES["sha1"](m, 1) for m in msgs]
    if suffix == ".pt":
        assert hasattr(torch.load(tmp_path / "net.pt", weights_only=True), "_metadata")


def test_compiled_networks_take_the_same_nuisance_and_load_back(tmp_path, compiled_md5):
    msgs = messages(1)
    x = message_bits(msgs)
    shown = disguise(SparseNetwork.from_dense(compiled_md5.weights, compiled_md5.biases), Nuisance(True, 2, 2))
    assert torch.equal(shown.forward(x), compiled_md5.forward(x))
    loaded = paramlens.load(compiled_md5.save(tmp_path / "a.safetensors"))
    assert bits_to_bytes(run_loaded(loaded.tensors, x)) == [REFERENCES["md5"](m, 1) for m in msgs]


@pytest.mark.parametrize("call, match", [
    (lambda: hash_network("md5", 56), "1..55 bytes"),
    (lambda: hash_network("sha1", 4, 81), "80 steps"),
    (lambda: hash_circuit("sha3", 4), "unknown hash"),
    (lambda: hash_network("md5", 4, 1, block=3), "block must be"),
    (lambda: hash_network("md5", 4, 1, target=b"short"), "16-byte digest"),
    (lambda: hash_circuit("sha256", 4, 1, target=b"short"), "32-byte digest"),
])
def test_bad_arguments_are_clear_errors(call, match):
    with pytest.raises(ParamLensError, match=match):
        call()
