"""``reverse circuit`` on hand-written hash networks: byte inputs, constant neurons, threshold ladders, disguises,
every save format, and word-level statements checked against what the builder emits."""

import random
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from paramlens.cli import app
from paramlens.core.circuits import Circuit
from paramlens.errors import ParamLensError, UsageError
from paramlens.models.compiled import Nuisance, SparseNetwork, disguise, hash_network
from paramlens.models.compiled.hashes import MD5_IV, MD5_K, SHA256_IV, md5_reference, sha256_reference
from paramlens.models.compiled.sparse_network import SparseLayer
from paramlens.reverse.chain import chain_weights
from paramlens.reverse.circuit_check import check_circuits, evaluate
from paramlens.reverse.circuit_functions import track_operands
from paramlens.reverse.circuit_words import function_name
from paramlens.reverse.read_circuit import read_circuit

M32 = 0xFFFFFFFF


def messages(n_bytes, count=24, seed=0):
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(n_bytes)) for _ in range(count)]


def circuit_bits(msgs):
    """Circuit inputs of byte messages: input 8k+j = bit j of byte k."""
    return torch.tensor([[(b >> j) & 1 for b in m for j in range(8)] for m in msgs])


def digests(out):
    return [bytes(sum(int(row[8 * k + j]) << j for j in range(8)) for k in range(len(row) // 8)) for row in out]


def run_file(path, msgs):
    """The saved network run in float64 on byte codes."""
    weights, biases = chain_weights(path, torch.float64)
    h = torch.tensor([list(m) for m in msgs], dtype=torch.float64)
    for W, b in zip(weights, biases):
        h = torch.relu(h @ W.T + b)
    return h.round().long()


@pytest.fixture(scope="module")
def md5_two(tmp_path_factory):
    """MD5 of 4-byte messages after 2 steps, written by hand, stored as float32 safetensors, and its reading."""
    net = hash_network("md5", 4, 2)
    path = net.save(tmp_path_factory.mktemp("md5") / "md5.safetensors", dtype=torch.float32)
    return net, path, read_circuit(path)


def md5_first_sum():
    """a + F(b, c, d) + K[0] of step 0 on the initial state (the builder's first adder, before the message)."""
    a, b, c, d = MD5_IV
    return (a + ((b & c) | (~b & d)) + MD5_K[0]) & M32


def test_md5_bytes_network_lifts_to_a_circuit_equal_to_network_and_reference(md5_two):
    _, path, reading = md5_two
    assert reading.inputs == "bytes:4" and reading.n_inputs == 32 and reading.n_outputs == 128
    assert reading.network_inputs == 256 and reading.network_mismatches == 0
    msgs = messages(4)
    out = reading.circuit().evaluate(circuit_bits(msgs)).long()
    assert torch.equal(out, run_file(path, msgs))
    assert digests(out) == [md5_reference(m, 2) for m in msgs]
    assert reading.random_mismatches == 0


def test_constant_neurons_are_folded(md5_two):
    net, _, reading = md5_two
    weightless = sum(int((torch.bincount(layer.rows, minlength=layer.n_out) == 0).sum()) for layer in net.layers)
    assert weightless > 100 and reading.folded_constants >= weightless
    ops = reading.gates
    assert ops.get("const0", 0) <= 1 and ops.get("const1", 0) <= 1  # at most one of each, for constant outputs
    consts = {g["id"] for g in reading.netlist["gates"] if g["op"].startswith("const")}
    assert not any(set(g["inputs"]) <= consts for g in reading.netlist["gates"] if g["inputs"])
    assert "constants folded" in reading.summary() and "lowest bit first" in reading.summary()


def test_word_statements_name_the_adders_the_builder_emits(md5_two):
    statements = md5_two[2].statements
    # 7 layers of byte bits, the function layer 7, then a + F + K + M over the 4 block layers 8..11
    assert f"layers 8..11: 32-bit adder (mod 2^32) of 2 words: W1 = M0 + 0x{md5_first_sum():08x}" in statements
    finals = [s for s in statements if s.startswith("layers 26..29: 32-bit adder")]  # state + initial state
    assert any(s.endswith(f"+ 0x{MD5_IV[1]:08x}") for s in finals)
    assert any(s.endswith(f"+ 0x{MD5_IV[2]:08x}") for s in finals)
    assert all("mod 2^32" in s for s in statements if "adder" in s)


def adder_at(statements, span):
    """The name of the adder whose statement starts with ``span`` (``"layers 30..33"``)."""
    line = next(s for s in statements if s.startswith(span + ": 32-bit adder"))
    return line.split("-> ")[1].split(";")[0] if "->" in line else line.split(": ")[2].split(" =")[0]


@pytest.fixture(scope="module")
def md5_four(tmp_path_factory):
    """MD5 of 4-byte messages after 4 steps, and its reading."""
    net = hash_network("md5", 4, 4)
    path = net.save(tmp_path_factory.mktemp("md5") / "md5.safetensors", dtype=torch.float32)
    return net, read_circuit(path, input="bytes:4")


def step_word(statements, step, which):
    """The name of MD5 step ``step``'s first (``which`` 0) or second (1) adder: function layer 7 + 9 step, then 4
    + 4 adder layers."""
    k = 4 * which
    return adder_at(statements, f"layers {8 + 9 * step + k}..{11 + 9 * step + k}")


def test_choice_of_the_state_words_is_named_where_md5_computes_it(md5_four):
    reading = md5_four[1]
    assert reading.network_mismatches == 0
    # b = the second adder's output; step 3 computes F = choice(b, c, d) of the outputs of steps 2, 1 and 0, on
    # every bit, and adds it to a (still the constant b0), K[3] and the padding word 3 (0)
    b, c, d = (step_word(reading.statements, i, 1) for i in (2, 1, 0))
    first = step_word(reading.statements, 3, 0)
    assert f"layer 34: bitwise choice({b}, {c}, {d}) on 32 bits (an operand of {first})" in reading.statements
    assert (f"layers 35..38: 32-bit adder (mod 2^32) of 2 words: {first} = choice({b}, {c}, {d}) + "
            f"0x{(MD5_IV[1] + MD5_K[3]) & M32:08x}") in reading.statements
    assert not any("majority" in s or "parity" in s for s in reading.statements)


def test_choice_with_a_constant_state_word_names_the_constant(md5_four):
    # step 2: d is still the constant b0, a the constant c0: F = choice(b, c, b0) of the outputs of steps 1 and 0
    statements = md5_four[1].statements
    b, c = (step_word(statements, i, 1) for i in (1, 0))
    first = step_word(statements, 2, 0)
    assert (f"layers 26..29: 32-bit adder (mod 2^32) of 2 words: {first} = choice({b}, {c}, 0x{MD5_IV[1]:08x}) + "
            f"0x{(MD5_IV[2] + MD5_K[2]) & M32:08x}") in statements


def test_each_second_adder_reads_the_rotated_first_sum(md5_two, md5_four):
    # b + rotl(a + F + K + M, s), s = 7 in step 0 (b the constant b0), 17 and 22 in steps 2 and 3
    assert (f"layers 12..15: 32-bit adder (mod 2^32) of 2 words: W2 = rotl(W1, 7) + 0x{MD5_IV[1]:08x}"
            in md5_two[2].statements)
    assert "layers 12..15: rotation left by 7 of W1 (read by W2)" in md5_two[2].statements
    # step 1: b + rotl(choice(b, c, d) + K + padding, 12), the inner sum (constants but b) folded into the layers
    assert any(s.startswith("layers 21..24: 32-bit adder (mod 2^32) of 3 words: W3 = W2 + choice(rotl(W2, 12), ")
               for s in md5_two[2].statements)
    statements = md5_four[1].statements
    for step, rotated in ((2, "rotr({}, 15)"), (3, "rotr({}, 10)")):
        first, second = step_word(statements, step, 0), step_word(statements, step, 1)
        b = step_word(statements, step - 1, 1)
        a, z = 8 + 9 * step + 4, 11 + 9 * step + 4
        assert (f"layers {a}..{z}: 32-bit adder (mod 2^32) of 2 words: {second} = {b} + "
                f"{rotated.format(first)}") in statements


def test_disguised_network_reads_the_same_steps(md5_four, tmp_path):
    net = disguise(md5_four[0], Nuisance(permute=True, dead=2, duplicate=3, seed=2))
    reading = read_circuit(net.save(tmp_path / "md5.safetensors", dtype=torch.float32))
    assert reading.network_mismatches == 0
    steps = [s for s in md5_four[1].statements if any(s.startswith(f"layer{x} {k}") for x in ("", "s")
                                                      for k in (12, 26, 30, 34, 35, 39))]
    assert len(steps) >= 8 and set(steps) <= set(reading.statements)


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_disguised_network_in_other_formats_reads_alike(md5_two, tmp_path, suffix):
    net = disguise(md5_two[0], Nuisance(permute=True, dead=2, duplicate=3, seed=1))
    path = net.save(tmp_path / f"md5{suffix}", dtype=torch.float32)
    reading = read_circuit(path)
    assert reading.network_mismatches == 0
    msgs = messages(4, seed=1)
    assert digests(reading.circuit().evaluate(circuit_bits(msgs))) == [md5_reference(m, 2) for m in msgs]
    assert md5_two[2].statements[0] in reading.statements


def test_sha256_two_steps(tmp_path):
    path = hash_network("sha256", 2, 2).save(tmp_path / "sha.safetensors")
    reading = read_circuit(path)
    msgs = messages(2)
    assert digests(reading.circuit().evaluate(circuit_bits(msgs))) == [sha256_reference(m, 2) for m in msgs]
    assert reading.network_mismatches == 0 and reading.inputs == "bytes:2"
    assert sum("32-bit adder (mod 2^32)" in s for s in reading.statements) >= 4


@pytest.mark.parametrize("disguised", [False, True])
def test_sha256_sigmas_choice_and_majority_are_read_through_the_constant_state(tmp_path, disguised):
    net = hash_network("sha256", 4, 2)
    if disguised:
        net = disguise(net, Nuisance(permute=True, dead=2, duplicate=3, seed=3))
    statements = read_circuit(net.save(tmp_path / "sha.safetensors", dtype=torch.float32)).statements
    a0, b0, _, _, _, f0, _, _ = SHA256_IV

    def word_with(constant):  # the final adders add the initial state: b + a0' = a of step 0, f + e0' = e
        line = next(s for s in statements if s.startswith("layers 18..21") and s.endswith(f"+ 0x{constant:08x}"))
        return line.split("= ")[1].split(" +")[0]

    a, e = word_with(b0), word_with(f0)
    sigma1 = f"parity(rotl({e}, 7), rotr({e}, 11), rotr({e}, 6))"  # rotations right by 25, 11, 6
    sigma0 = f"parity(rotl({a}, 10), rotr({a}, 13), rotr({a}, 2))"  # by 22, 13, 2
    step1 = [s for s in statements if s.startswith("layers 13..16: 32-bit adder (mod 2^32) of ")]
    assert len(step1) == 2
    # e' = d + h + Σ1(e) + Ch(e, f, g) + K + W: Ch of e and two constants is a choice between them where they differ
    assert any(s.split("= ")[1].startswith(f"{sigma1} + choice({e}, 0x") for s in step1)
    # a' adds Σ0(a) + Maj(a, b, c): with b, c the constants a0, b0, the majority is a where a0 and b0 differ
    assert any(sigma0 in s and f"choice({a}, 0x{a0 ^ b0:08x}, 0x00000000)" in s for s in step1)
    assert f"layer 12: bitwise {sigma0} on 32 bits (an operand of " in "\n".join(statements)


def small(tmp_path, rows0, rows1):
    """A two-layer network over 2 byte inputs from ``[(weights {col: w}, bias)]`` rows."""
    net = SparseNetwork([SparseLayer.from_rows(2, rows0), SparseLayer.from_rows(len(rows0), rows1)])
    return net.save(tmp_path / "small.safetensors")


def test_units_that_cannot_be_lifted_are_refused_in_one_line(tmp_path):
    two_bytes = small(tmp_path, [({0: 1, 1: 1}, -200), ({0: 1}, -127), ({0: 1}, -128)], [({0: 1}, 0)])
    with pytest.raises(ParamLensError) as e:
        read_circuit(two_bytes, input="bytes:2")
    assert str(e.value).startswith("layer 1 unit 0: reads ReLU of an integer ranging over")
    assert "threshold levels" in str(e.value) and "\n" not in str(e.value)
    not_binary = small(tmp_path, [({0: 1}, 0), ({0: 1}, -128)], [({0: 1}, 0)])
    with pytest.raises(ParamLensError, match=r"^layer 1 unit 0: is an output ranging over \[0, 255\], not 0/1"):
        read_circuit(not_binary)
    bit = small(tmp_path, [({0: 1}, -127), ({0: 1}, -128)], [({0: 1, 1: -1}, 0)])  # [x0 >= 128]: bit 7 of byte 0
    reading = read_circuit(bit)
    assert reading.inputs == "bytes:2" and reading.n_inputs == 16 and reading.netlist["outputs"] == [7]


def test_input_option_errors_are_one_line(md5_two, tmp_path):
    path = md5_two[1]
    with pytest.raises(UsageError, match="--input takes auto, bytes:N or bits:N"):
        read_circuit(path, input="bytes")
    with pytest.raises(ParamLensError, match="declares 5 inputs but the network reads 4; use --input bytes:4"):
        read_circuit(path, input="bytes:5")
    res = subprocess.run([sys.executable, "-m", "paramlens", "reverse", "circuit", str(path), "--input", "words:4",
                          "--out", str(tmp_path)], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "--input takes auto" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_cli_prints_the_word_statements(md5_two, tmp_path):
    res = CliRunner().invoke(app, ["reverse", "circuit", str(md5_two[1]), "--input", "bytes:4", "--out",
                                   str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "circuit input 8k+j = bit j of byte k (lowest bit first)" in res.output
    assert f"W1 = M0 + 0x{md5_first_sum():08x}" in res.output and "0 mismatches on 256 random inputs" in res.output
    (folder,) = tmp_path.glob("circuit-*")
    assert {"circuit.json", "circuit.dot", "circuit.py"} <= {p.name for p in folder.iterdir()}


def table_of(f):
    """The truth table of ``f(x, y, z)`` (row ``r``: bit 0 of ``r`` is x, bit 1 y, bit 2 z)."""
    return tuple(int(f(r & 1, (r >> 1) & 1, (r >> 2) & 1)) for r in range(8))


def test_the_round_functions_of_md5_and_sha_are_named():
    args = ["B", "C", "D"]
    assert function_name(table_of(lambda x, y, z: y if x else z), args) == "choice(B, C, D)"
    assert function_name(table_of(lambda x, y, z: z if y else x), args) == "choice(C, D, B)"  # MD5's G order
    assert function_name(table_of(lambda x, y, z: x ^ y ^ z), args) == "parity(B, C, D)"
    assert function_name(table_of(lambda x, y, z: x + y + z >= 2), args) == "majority(B, C, D)"
    assert function_name(table_of(lambda x, y, z: y ^ (x | (1 - z))), args) == "C ^ (B | ~D)"  # MD5's I


def test_a_choice_with_a_constant_word_is_fitted_and_checked_on_values():
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, 1 << 32, (64,), generator=gen) for _ in range(2))
    constant = 0xEFCDAB89
    truth = (x & y) | (~x & M32 & constant)
    # per column, the table over (x, y) that choice(x, y, constant bit) leaves; 3 columns unseen
    tables = {p: table_of(lambda a, b, _, p=p: b if a else (constant >> p) & 1)[:4] for p in range(32)
              if p not in (0, 8, 24)}
    ops = track_operands({"X": x, "Y": y}, [("X", 0), ("Y", 0)], tables, 32)
    right = [op for op in ops if torch.equal(op.value, truth)]
    assert [op.text for op in right] == [f"choice(X, Y, 0x{constant:08x})"]
    assert all(op.function for op in ops)


def test_bounded_evaluation_matches_the_circuit():
    c = Circuit(4)
    a = c.add("threshold", 0, 1, 2, weights=(2, -1, 1), threshold=1)
    b = c.add("xor", a, 3)
    c.add("and", 0, 1)  # read by nothing
    c.outputs = [b, c.add("maj", a, b, 2), a]
    x = torch.randint(0, 2, (50, 4), generator=torch.Generator().manual_seed(1))
    assert torch.equal(evaluate(c, x), c.evaluate(x))
    eq = check_circuits(c, c)
    assert eq.random_mismatches == 0 and eq.proven is True


@pytest.mark.parametrize("disguised", [False, True])
def test_hash_lock_lifts_to_an_equality_test_of_the_digest(tmp_path, disguised):
    """A lock (output 1 iff the reduced digest equals a target) lifts exactly: its readout ReLU(1 - sum of
    |byte - target byte|) is read as an AND of per-byte equalities, 1 on the preimage."""
    net = hash_network("md5", 2, steps=2, target=md5_reference(b"ab", 2))
    if disguised:
        net = disguise(net, Nuisance(permute=True, dead=2, duplicate=3, seed=4))
    path = net.save(tmp_path / "lock.safetensors", dtype=torch.float32)
    reading = read_circuit(path)
    assert reading.n_outputs == 1 and reading.network_mismatches == 0 and reading.random_mismatches == 0
    msgs = messages(2, 64) + [b"ab"]
    out = reading.circuit().evaluate(circuit_bits(msgs)).long()
    assert torch.equal(out, run_file(path, msgs))
    assert out[-1].item() == 1 and out[:-1].sum() == sum(md5_reference(m, 2) == md5_reference(b"ab", 2)
                                                         for m in msgs[:-1])
    assert any(s.startswith("output 0 = equality test: 1 iff") for s in reading.statements)
    assert "equality test" in reading.summary()
