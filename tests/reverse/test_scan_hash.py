"""scan on hand-written hash networks (MD5, SHA-256: byte-code inputs, constants in weightless rows, carry-chain
adders, a negated-bias equality block), disguised ones, a compiled one, and checkpoints that are no chain."""

import pytest
import torch

from paramlens.models.compiled import Nuisance, compile_circuit, disguise, hash_circuit, hash_network
from paramlens.models.compiled.hashes import REFERENCES
from paramlens.reverse.scan import scan

MESSAGE = b"sixteen byte msg"


def scanned(folder, name, steps, compare="byte", nuisance=None, suffix=".safetensors"):
    target = REFERENCES[name](MESSAGE, steps)
    net = hash_network(name, len(MESSAGE), steps, target, compare=compare)
    net = disguise(net, nuisance) if nuisance else net
    return scan(net.save(folder / f"{name}{suffix}", torch.float32), progress=False), target


def constants_at(result, position):
    return next(d["constants"] for d in result.differing if d["position"] == position)


@pytest.fixture(scope="module")
def md5(tmp_path_factory):
    return scanned(tmp_path_factory.mktemp("md5"), "md5", 12)


def test_md5_steps_are_the_block_and_t_is_read_one_entry_per_step(md5):
    r, _ = md5
    # 7 bit-extraction layers, then per step a function layer and two 4-layer adders (block=8)
    assert (r.period, r.block_start, r.n_repeats) == (9, 7, 12)
    varying = {d["position"]: d["varies"] for d in r.differing}
    assert "row kinds" in varying[0] and "biases" in varying[0]  # T[k] in the biases of weightless rows
    assert varying[0]["widths"].startswith("352 x4, 384 x8")  # steps 4.. add a padding word as constants too
    assert "wiring" in varying[1]  # the adder reads a message word or a constant one
    assert varying[5]["wiring"] == varying[6]["wiring"] == "cycle of 4 repeats"  # rotations 7, 12, 17, 22
    assert set(varying) == {0, 1, 5, 6}
    expected = "weightless rows 0..31, lowest bit first: MD5 T[0..11] (entry k at repeat k), 12 of 12 repeats"
    assert constants_at(r, 0) == [expected]
    assert any("MD5 IV[0..3]" in c for c in r.constants)


def test_md5_equality_block_gives_the_digest_checked_against_md5(md5):
    r, target = md5
    assert r.compared == target.hex() and r.compared_layer == 7 + 12 * 9 + 4
    assert r.checked.startswith("MD5 reduced to 12 steps of the 16-byte message")
    assert f"output = 1 iff the 16 bytes at layer {r.compared_layer} equal {target.hex()}" in r.summary()


def test_sha256_steps_constants_and_digest(tmp_path):
    r, target = scanned(tmp_path, "sha256", 8)
    assert (r.period, r.block_start, r.n_repeats) == (5, 7, 8)  # a function layer and one 4-layer adder per step
    assert "SHA-256 K[0..7] (entry k at repeat k), 8 of 8 repeats" in constants_at(r, 0)[0]
    assert any("SHA-256 IV[0..7]" in c for c in r.constants)
    assert r.compared == target.hex() and r.checked.startswith("SHA-256 reduced to 8 steps")


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_disguised_md5_reads_the_same_structure_constants_and_digest(tmp_path, suffix):
    nuisance = Nuisance(permute=True, dead=3, duplicate=4, seed=1)
    r, target = scanned(tmp_path, "md5", 8, compare="bit", nuisance=nuisance, suffix=suffix)
    assert r.undone["dead"] > 0 and r.undone["duplicates"] > 0
    assert (r.period, r.block_start, r.n_repeats) == (9, 7, 8)
    assert {d["position"] for d in r.differing} == {0, 1, 5, 6}
    # rows are shuffled: T is read from how the adder weighs each constant; step 4 also adds the 0x80 padding word
    (found,) = constants_at(r, 0)
    assert "by bit significance: MD5 T[0..7] (entry k at repeat k), 7 of 8 repeats; repeats 4 differ (by +0x80)" in found
    assert r.compared == target.hex()  # 128 compared bits, put in digest order by the check against MD5
    assert "128 bits" in r.summary() and r.checked.startswith("MD5 reduced to 8 steps")


def test_a_compiled_and_test_with_folded_constants_is_read_by_the_check(tmp_path):
    target = REFERENCES["md5"](b"k", 1)
    path = compile_circuit(hash_circuit("md5", 1, 1, target)).save(tmp_path / "compiled.safetensors")
    r = scan(path, progress=False)
    assert "AND of 128 activations" in r.output[0]
    assert r.compared == target.hex() and "one input per message bit" in r.checked


def test_transformer_checkpoints_get_per_tensor_findings_only(tmp_path):
    from safetensors.torch import save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16))
    torch.save(gpt2.state_dict(), tmp_path / "gpt2.pt")
    lens = torch.load("tests/data/lens/gpt2_ln.pt", weights_only=True)
    save_file({k: v.contiguous() for k, v in lens.items()}, str(tmp_path / "lens.safetensors"))
    for path, attention in ((tmp_path / "gpt2.pt", "transformer.h.0.attn.c_attn.weight"),
                            (tmp_path / "lens.safetensors", "blocks.0.attn.W_K")):
        r = scan(path, progress=False)
        assert r.architecture and attention in r.architecture[0] and r.n_repeats == 0 and not r.output
        assert "per-tensor findings only" in r.summary() and "repeating block of" not in r.summary()
        assert {row["role"] for row in r.layers} >= {"attention", "MLP", "embedding / unembedding"}
    assert any("more than 2 dimensions" in reason for reason in r.architecture)
    assert any("residual stream: width 24" in reason for reason in r.architecture)
