"""``reverse identify`` on networks whose function is known: hand-written MD5 (plain, reduced, disguised), compiled
bit circuits, a hand-made network with one edited weight, and malformed requests."""

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from paramlens.errors import ParamLensError, UsageError
from paramlens.models.compiled import Nuisance, SparseNetwork, compile_circuit, disguise, hash_network
from paramlens.models.compiled.builders import add_words, equals_const, input_words, xor_words
from paramlens.reverse import Identification, identify
from paramlens.reverse.catalogue import CATALOGUE, Catalogue

TARGET = hashlib.md5(b"k").hexdigest()


def _statements(result, entry=None):
    return [s for s in result.found() if entry is None or s.entry == entry]


@pytest.fixture(scope="module")
def md5_lock(tmp_path_factory):
    """Hand-written MD5 of 1 byte code (all 64 steps), output 1 iff the digest is md5(b"k"): the sparse network
    and its float32 safetensors file."""
    net = hash_network("md5", 1, target=bytes.fromhex(TARGET))
    path = tmp_path_factory.mktemp("md5") / "lock.safetensors"
    save_file(dict(net.tensors(torch.float32)), str(path))
    return net, path


@pytest.fixture(scope="module")
def disguised(md5_lock, tmp_path_factory):
    """The lock with rows permuted, dead and duplicated in its last 40 layers (the last steps, the final adder, the
    digest bytes' gaps and the test: all the md5 statements), as a .pt state dict and an .npz, float32."""
    folder = tmp_path_factory.mktemp("disguised")
    layers = md5_lock[0].layers
    tail = disguise(SparseNetwork(layers[-40:]), Nuisance(permute=True, dead=2, duplicate=2, seed=3))
    net = SparseNetwork(layers[:-40] + tail.layers)
    torch.save(dict(net.tensors(torch.float32)), folder / "lock.pt")
    return folder / "lock.pt", net.save(folder / "lock.npz", torch.float32)


def test_full_md5_lock_names_the_digest_its_bit_order_and_the_target(md5_lock):
    result = identify(md5_lock[1], samples=64, progress=False)
    assert result.domain == "bytes:1" and "127, 128" in result.domain_why
    md5 = _statements(result, "md5")
    bits = [s for s in md5 if s.view == "bits" and len(s.positions) == 96 and s.first == s.last]
    assert bits and bits[0].order == "lowest bit first" and bits[0].confirmed == 64
    offsets = {s.claim for s in md5 if s.kind == "units" and s.view == "bytes" and s.positions == list(range(16))}
    assert offsets == {f"relu(md5(input) bytes 0..15 - c), c = {TARGET}", f"relu(c - md5(input) bytes 0..15), c = {TARGET}"}
    (lock,) = [s for s in result.found() if s.kind == "equality"]
    assert lock.output and lock.units == [0] and lock.constant == TARGET
    assert lock.claim == f"is 1 iff md5(input) equals {TARGET}" and lock.confirmed == 64
    assert f"output layer {result.n_layers - 1}: unit 0 is 1 iff md5(input) equals {TARGET}" in result.summary()


@pytest.mark.parametrize("which", [0, 1], ids=["pt", "npz"])
def test_disguised_md5_lock_is_read_through_permuted_dead_and_duplicated_rows(disguised, which):
    result = identify(disguised[which], samples=64, progress=False)
    md5 = [s for s in _statements(result, "md5") if s.view == "bits" and len(s.positions) == 96]
    assert md5 and md5[0].order == "in no fixed order" and md5[0].confirmed == 64
    (lock,) = [s for s in result.found() if s.kind == "equality"]
    assert lock.output and lock.claim == f"is 1 iff md5(input) equals {TARGET}"
    gaps = [s for s in _statements(result, "md5") if s.kind == "units" and s.view == "bytes" and len(s.positions) == 16]
    assert len(gaps) == 2 and {s.constant for s in gaps} == {TARGET}


def test_reduced_md5_is_not_called_md5(tmp_path):
    path = hash_network("md5", 1, steps=8).save(tmp_path / "md5-8.safetensors", torch.float32)  # 8 of 64 steps
    result = identify(path, samples=64, progress=False)
    assert result.found() and {s.entry for s in result.found()} == {"input"}


@pytest.fixture(scope="module")
def adder(tmp_path_factory):
    """Style a: 16 input bits (bytes x, y) -> the 9 bits of x + y, then [x == 0x5a]."""
    c, (x, y) = input_words(2, 8)
    total, carry = add_words(c, x, y)
    c.outputs = total + [carry, equals_const(c, x, 0x5A)]
    return compile_circuit(c).save(tmp_path_factory.mktemp("adder") / "adder.safetensors")


def test_compiled_bit_circuit_statements_about_the_input(adder):
    result = identify(adder, progress=False)
    assert result.domain == "bits:16"
    last = result.n_layers - 1
    (total,) = [s for s in result.found() if s.last == last and s.entry == "byte sum" and s.kind == "units"]
    assert total.claim == "byte sum(input as bytes, lowest bit first) bits 0..8" and total.units == list(range(9))
    assert total.order == "lowest bit first"
    tests = [s for s in result.found() if s.kind == "equality"]
    assert {s.claim.partition(" (")[0] for s in tests} == {"is 1 iff input byte 0 equals 5a"}
    assert any(s.output and s.units == [9] for s in tests)
    assert any(s.first == 0 and s.claim == "input bits 0..15" for s in result.found())


def _copies_with_an_edit(path):
    """16 input bits copied twice; layer 0 also computes the rare AND of bits 0..5, and one edited weight adds it
    into layer 1's copy of bit 15, wrong wherever that AND is 1 (1 input in 64)."""
    w0 = torch.cat([torch.eye(16), torch.tensor([[1.0] * 6 + [0.0] * 10])])
    b0 = torch.tensor([0.0] * 16 + [-5.0])
    w1 = torch.cat([torch.eye(16), torch.zeros(16, 1)], 1)
    w1[15, 16] = 1.0  # the edit
    save_file({"0.weight": w0, "0.bias": b0, "1.weight": w1, "1.bias": torch.zeros(16)}, str(path))
    return path


def test_a_statement_that_fails_on_some_inputs_reports_the_first_counterexample(tmp_path):
    result = identify(_copies_with_an_edit(tmp_path / "edited.safetensors"), samples=256, progress=False)
    broken = [s for s in result.found() if s.first == 1 and s.counterexample]
    assert len(broken) == 1 and broken[0].units == [15] and broken[0].claim == "input bit 15"
    cex = broken[0].counterexample
    assert 0 < broken[0].samples - broken[0].confirmed <= 16 and cex["got"] == cex["expected"] + 1
    x = bytes.fromhex(cex["input"])
    assert x[0] & 0x3F == 0x3F and cex["expected"] == x[1] >> 7  # bits 0..5 all set: the AND fired
    assert "first counterexample: layer 1, input" in broken[0].line()
    whole = [s for s in result.found() if s.first == 1 and not s.counterexample]
    assert [s.positions for s in whole] == [list(range(15))]


def test_a_registered_catalogue_entry_is_found(tmp_path):
    c, (x, y) = input_words(2, 8)
    c.outputs = xor_words(c, x, y)
    path = compile_circuit(c).save(tmp_path / "xor.safetensors")
    assert not any("xor" in s.claim for s in identify(path, progress=False).found())
    mine = CATALOGUE.copy()
    mine.register("xor", lambda m: m[0] ^ m[1])
    found = [s for s in identify(path, catalogue=mine, progress=False).found() if s.entry == "xor"]
    assert found and found[0].output and set(found[0].positions) <= set(range(8)) and len(found[0].positions) >= 6


def test_catalogue_registration_and_failing_entries_are_one_line(adder):
    mine = Catalogue()
    with pytest.raises(ParamLensError, match="not a function"):
        mine.register("x", 3)
    mine.register("first", lambda m: m[:1])
    with pytest.raises(ParamLensError, match="already has an entry 'first'"):
        mine.register("first", bytes)
    mine.register("broken", lambda m: 1 // 0)
    with pytest.raises(ParamLensError, match="catalogue entry 'broken' failed on input [0-9a-f]+: ZeroDivisionError"):
        identify(adder, catalogue=mine, samples=32, progress=False)
    odd = Catalogue()
    odd.register("odd", lambda m: m if m[0] % 2 else 5)
    with pytest.raises(ParamLensError, match="must return bytes of one length or a non-negative int"):
        identify(adder, catalogue=odd, samples=32, progress=False)


@pytest.mark.parametrize("spec", ["bytes", "bits:0", "words:2", "bytes:x", "bytes:2:3", ""])
def test_malformed_input_declarations_are_one_usage_line(adder, spec):
    with pytest.raises(UsageError, match="--input takes auto, bytes:N or bits:N"):
        identify(adder, domain=spec)


def test_declarations_and_networks_that_do_not_fit_are_one_line(adder, tmp_path):
    with pytest.raises(ParamLensError, match="declares 3 inputs but the network reads 16; use --input bytes:16"):
        identify(adder, domain="bytes:3")
    with pytest.raises(UsageError, match="samples must be 32..4096"):
        identify(adder, samples=8)
    real = tmp_path / "real.safetensors"
    save_file({"0.weight": torch.randn(4, 3), "0.bias": torch.randn(4)}, str(real))
    with pytest.raises(ParamLensError, match="inputs look real-valued.*declare --input bytes:N or bits:N"):
        identify(real)
    bad = tmp_path / "nan.safetensors"
    save_file({"0.weight": torch.eye(3), "1.weight": torch.full((2, 3), float("nan"))}, str(bad))
    with pytest.raises(ParamLensError, match="layer 1: 1.weight holds 6 NaN"):
        identify(bad, progress=False)


def test_cli_identify_prints_the_statements_and_writes_a_run_folder(cli, adder, tmp_path):
    code, out, err = cli("reverse", "identify", adder, "--input", "bits:16", "--samples", "64", "--out", tmp_path)
    assert code == 0, err
    assert "inputs bits:16 (declared)" in out and "unit 9 is 1 iff input byte 0 equals 5a" in out and "report:" in out
    (folder,) = tmp_path.glob("identify-*")
    loaded = Identification.load(folder)
    assert loaded.samples == 64 and any(s.kind == "equality" for s in loaded.found())
    code, out, err = cli("reverse", "identify", adder, "--input", "bytes:7", "--out", tmp_path)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "use --input bytes:16" in err
    code, out, err = cli("reverse", "identify", adder, "--input", "nibbles:2", "--out", tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--input takes auto" in err
    code, out, err = cli("reverse", "identify", adder, "--samples", "5", "--out", tmp_path)
    assert code == 2 and "Traceback" not in err
