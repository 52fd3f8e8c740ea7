import numpy as np
import pytest
import torch

from paramlens.errors import ParamLensError
from paramlens.models.compiled import compile_circuit
from paramlens.models.compiled.builders import SHA256_K, arx_mixer
from paramlens.reverse.constant_search import LayerConstants, repeat_constants
from paramlens.reverse.constants import TABLES
from paramlens.reverse.scan import Scan, scan
from paramlens.reverse.structure import find_period
from paramlens.reverse.words import readings


@pytest.fixture(scope="module")
def arx(tmp_path_factory):
    path = tmp_path_factory.mktemp("arx") / "arx.safetensors"
    compile_circuit(arx_mixer(6, bits=8, target=0xBEEF)).save(path)
    return path


def test_scan_recovers_rounds_constants_and_the_final_test(arx, tmp_path):
    r = scan(arx, progress=False)
    assert r.n_repeats == 6 and r.period == 18  # six ARX rounds of 18 layers each
    varying = {d["position"]: d for d in r.differing}
    assert {"row kinds", "biases"} <= set(varying[15]["varies"])  # the NOT/copy rows holding the round constant
    assert all(set(d["varies"]) == {"wiring"} for p, d in varying.items() if p != 15)  # reading them, or the inputs
    assert [p for p, d in varying.items() if d["constants"]] == [15]
    assert any("SHA-256 K[0..5] (low 8 bits)" in c for c in varying[15]["constants"])
    assert r.constant == "0xbeef" and r.compared == "efbe" and r.compared_layer == 107
    assert any("AND of 16" in line for line in r.output)
    loaded = Scan.load(r.save(tmp_path))
    assert loaded.summary() == r.summary()
    assert all((tmp_path / n).stat().st_size > 1000 for n, _ in loaded.figures(tmp_path))


def test_rounds_and_constants_change_with_the_circuit(tmp_path):
    path = tmp_path / "three.safetensors"
    compile_circuit(arx_mixer(3, bits=8, target=0x1234)).save(path)
    r = scan(path, progress=False)
    assert r.n_repeats == 3 and r.constant == "0x1234"
    assert any("SHA-256 K[0..2]" in c for d in r.differing for c in d["constants"])
    assert SHA256_K[0] & 0xFF == 0x98


def test_period_finder_on_known_sequences():
    p = find_period(list("xabcabcabcabcy"))
    assert (p.period, p.start, p.n_repeats) == (3, 1, 4)
    assert find_period(list("abcdefg")).n_repeats == 0


def test_period_finder_tolerates_positions_that_differ_between_repeats():
    step = ["f", "a", "b", "b", "b", "r", "b", "b", "b"]  # one position differs at every repeat, one every other
    keys = list("0123456") + [f"{s}{k * (i == 0)}{k % 2 * (i == 5)}" for k in range(20) for i, s in enumerate(step)]
    p = find_period(keys + list("xyz"))
    assert (p.period, p.start, p.n_repeats) == (9, 7, 20)


def test_constant_tables_are_the_published_ones():
    t = {table.name: table.values for table in TABLES}
    assert t["AES S-box"][:4] == (0x63, 0x7C, 0x77, 0x7B) and t["AES inverse S-box"][0] == 0x52
    assert t["AES Rcon"][-2:] == (0x1B, 0x36) and t["CRC-32 table"][1] == 0x77073096
    assert t["Blowfish P (pi)"][0] == 0x243F6A88 and t["Blowfish P (pi)"][17] == 0x8979FB1B
    assert t["SHA-512 K"][0] == 0x428A2F98D728AE22 and t["SHA-384 IV"][0] == 0xCBBB9D5DC1059ED8
    assert t["SHA-224 IV"][0] == 0xC1059ED8 and t["SHA-256 IV"][7] == 0x5BE0CD19 and t["SHA-1 K"][3] == 0xCA62C1D6
    assert t["MD5 T"][63] == 0xEB86D391 and t["ChaCha 'expand 32-byte k'"][3] == 0x6B206574


@pytest.mark.parametrize("reading", ["lowest bit first", "highest bit first",
                                     "bytes highest first, bits lowest first", "bytes lowest first, bits highest first"])
def test_per_repeat_constants_are_found_in_every_bit_and_byte_order(reading):
    (order,) = [sig for name, sig in readings(32) if name == reading]
    table = {table.name: table.values for table in TABLES}["Blowfish P (pi)"]
    layers = [LayerConstants({"weightless rows": np.array([0, 1, 1] + [(v >> int(s)) & 1 for s in order])})
              for v in table[2:8]]  # three other rows first: the word starts at row 3
    ((found, match),) = repeat_constants(layers)
    assert match.table.name == "Blowfish P (pi)" and match.start == 2
    assert found == f"weightless rows 3..34, {reading}: Blowfish P (pi)[2..7] (entry k+2 at repeat k), 6 of 6 repeats"


class Payload:  # pickled by reference: scanning must never import or call it
    def __reduce__(self):
        return (exec, ("raise SystemExit('code ran')",))


def test_torch_archives_with_code_are_scanned_without_running_it(tmp_path):
    net = compile_circuit(arx_mixer(2, bits=4))
    path = tmp_path / "net.pt"
    torch.save({"state": net.state_dict(), "trap": Payload()}, path)
    r = scan(path, progress=False)
    assert r.n_repeats == 2 and len(r.layers) == len(net.weights)
    assert r.notes == []  # the pickled object holds no tensors: nothing outside the chain


def test_truncated_and_empty_files_are_clear_errors(arx, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(arx.read_bytes()[: arx.stat().st_size // 2])
    with pytest.raises(ParamLensError, match="truncated|corrupt"):
        scan(cut, progress=False)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ParamLensError):
        scan(junk, progress=False)
    with pytest.raises(ParamLensError, match="no such file"):
        scan(tmp_path / "missing.safetensors", progress=False)


def test_real_valued_networks_are_described_without_signatures(tmp_path):
    torch.manual_seed(0)
    layers = {f"net.{i}.weight": torch.randn(8, 8) for i in range(3)} | {f"net.{i}.bias": torch.randn(8) for i in range(3)}
    layers["net.3.weight"] = torch.randn(4, 8)  # a head without bias
    path = tmp_path / "mlp.safetensors"
    from safetensors.torch import save_file

    save_file(layers, str(path))
    r = scan(path, progress=False)
    assert r.widths == [8, 8, 8, 8, 4] and [row["kind"] for row in r.layers] == ["real"] * 4
    assert r.layers[0]["signatures"] == {} and "linear readout" in r.output[0]
    assert r.n_params == 3 * (64 + 8) + 32


def test_a_layer_without_rows_is_empty_not_binary(tmp_path):
    import torch

    from paramlens.reverse.scan import scan

    torch.save({"a.weight": torch.zeros(0, 5), "a.bias": torch.zeros(0)}, tmp_path / "empty.pt")
    assert "1 empty" in scan(tmp_path / "empty.pt", progress=False).summary()
