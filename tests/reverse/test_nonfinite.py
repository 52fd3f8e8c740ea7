"""NaN, infinities and huge values in disclosed weights: reported by scan, refused by circuit, invert and
reassemble, never read as integers."""

import re

import pytest
import torch
from safetensors.torch import save_file

from paramlens.errors import ParamLensError
from paramlens.models.compiled import compile_circuit
from paramlens.models.compiled.builders import arx_mixer
from paramlens.reverse.circuit import lift
from paramlens.reverse.constants import describe_value, match_sequence
from paramlens.reverse.invert import check_options, invert_file, invert_relu, parse_target
from paramlens.reverse.layer_stats import layer_stats
from paramlens.reverse.read_circuit import read_circuit
from paramlens.reverse.reassemble import load_pieces, load_rows
from paramlens.reverse.scan import PROBLEM, scan

INF, NAN = float("inf"), float("nan")
LAYER = 2  # the layer the tests plant a value in
SOUND = ("binary", "ternary", "integer")


@pytest.fixture(scope="module")
def lock():
    """A small Boolean network with one output: 1 when the mixed 8-bit state equals 0x5."""
    return compile_circuit(arx_mixer(1, bits=4, target=0x5))


def planted(lock, folder, value: float, tensor: str = "weight", dtype: torch.dtype = torch.float32):
    """The network saved with ``value`` in place of one non-zero entry of layer ``LAYER``'s ``tensor``."""
    state = {k: v.clone() for k, v in lock.state_dict(dtype).items()}  # (int64 tensors are the network's own)
    t = state[f"layers.{LAYER}.{tensor}"]
    where = t.flatten().nonzero()[0, 0] if tensor == "weight" else 0
    t.view(-1)[where] = value
    path = folder / "planted.safetensors"
    save_file(state, str(path))
    return path


def one_line(e: pytest.ExceptionInfo) -> str:
    """The error's message, checked to be one line (the CLI prints it as is)."""
    text = str(e.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("value,word", [(NAN, "1 NaN"), (INF, r"1 \+Inf"), (-INF, "1 -Inf")])
def test_scan_reports_non_finite_layers_and_reads_their_finite_values(lock, tmp_path, value, word):
    clean = scan(lock.save(tmp_path / "clean.safetensors"), progress=False)
    r = scan(planted(lock, tmp_path, value), progress=False)
    row, before = r.layers[LAYER], clean.layers[LAYER]
    assert row["kind"] == "non-finite" and before["kind"] in SOUND
    assert re.fullmatch(rf"layers\.{LAYER}\.weight holds {word}", row[PROBLEM])
    assert f"non-finite values in layer {LAYER}: layers.{LAYER}.weight holds" in r.summary()
    assert r.table()[LAYER]["kind"] == "non-finite" and r.table()[LAYER][PROBLEM] == row[PROBLEM]
    assert row["values"] == before["values"] and row["signatures"] == {}  # the finite values are the same set
    assert all(other[PROBLEM] is None for other in r.layers if other is not row)
    assert all(v[PROBLEM] is None for v in clean.layers) and "non-finite" not in clean.summary()


def test_scan_names_non_finite_weight_and_bias_of_one_layer(lock, tmp_path):
    state = lock.state_dict()
    state[f"layers.{LAYER}.weight"][0, :2] = torch.tensor([NAN, -INF])
    state[f"layers.{LAYER}.bias"][1:4] = INF
    path = tmp_path / "both.safetensors"
    save_file(state, str(path))
    row = scan(path, progress=False).layers[LAYER]
    assert row[PROBLEM] == f"layers.{LAYER}.weight holds 1 NaN, 1 -Inf; layers.{LAYER}.bias holds 3 +Inf"
    assert "nan" not in str(row["bias values"]).lower() and "inf" not in str(row["values"]).lower()


@pytest.mark.parametrize("value,dtype", [(1e30, torch.float32), (2.0**60, torch.float32), (2**62, torch.int64),
                                         (-(2**63), torch.int64), (2.0**53 + 2, torch.float64)])
def test_scan_never_reads_out_of_range_values_as_integers(lock, tmp_path, value, dtype):
    r = scan(planted(lock, tmp_path, value, dtype=dtype), progress=False)
    row = r.layers[LAYER]
    assert row["kind"] not in SOUND and row["signatures"] == {}
    assert f"out-of-range values in layer {LAYER}: layers.{LAYER}.weight holds 1 value beyond ±2^31" in r.summary()


def test_large_in_range_weights_get_their_own_row_signatures():
    W = torch.tensor([[300000.0, 1.0], [1.0, 0.0], [0.0, -(2.0**31)]])
    s = layer_stats(W, None)
    assert s.integer and s.signatures == {"+1 +300000 | 0": 1, "+1 | 0": 1, "-2147483648 | 0": 1}


def test_bfloat16_layers_are_described():
    s = layer_stats(torch.tensor([[0.5, 1.0]], dtype=torch.bfloat16), torch.tensor([0.25], dtype=torch.bfloat16))
    assert s.kind == "few values" and s.bias_values == [0.25]


@pytest.mark.parametrize("value,tensor,found", [
    (INF, "weight", r"weight holds 1 \+Inf"), (NAN, "weight", "weight holds 1 NaN"),
    (-INF, "bias", "bias holds 1 -Inf"),
    (1e30, "weight", r"weight holds 1 value beyond ±2\^31 \(largest magnitude 1e\+30\)"),
    (2.0**60, "bias", r"bias holds 1 value beyond ±2\^31")])
def test_circuit_refuses_non_finite_and_out_of_range_values(lock, tmp_path, value, tensor, found):
    path = planted(lock, tmp_path, value, tensor)
    with pytest.raises(ParamLensError) as e:
        read_circuit(path)
    assert one_line(e).startswith(f"{path}: layer {LAYER}: layers.{LAYER}.{tensor} holds")
    assert re.search(found, str(e.value))


@pytest.mark.parametrize("value", [INF, -INF, 1e30, -(2.0**63)])
def test_a_huge_weight_is_not_proven_as_a_threshold_gate(tmp_path, value):
    path = tmp_path / "one.safetensors"
    save_file({"l.0.weight": torch.tensor([[1.0, value]]), "l.0.bias": torch.tensor([0.0])}, str(path))
    with pytest.raises(ParamLensError, match="l.0.weight holds 1"):
        read_circuit(path)
    with pytest.raises(ParamLensError, match="layer 0: weight holds 1"):
        lift([torch.tensor([[1.0, value]])], [torch.tensor([0.0])])


def test_a_proof_whose_int64_sum_would_overflow_falls_back_to_sampling():
    """``r = ReLU(2^31 p - 2^31 q)`` is 0 since p = q = a, but over independent p, q it is 2^31; the gate after it
    sums two of them times 2^31, which int64 cannot hold: it is checked on samples, not claimed proven."""
    big = 2.0**31
    weights = [torch.tensor([[1.0], [1.0]]), torch.tensor([[big, -big], [big, -big]]), torch.tensor([[big, big]])]
    biases = [torch.zeros(2), torch.zeros(2), torch.tensor([1.0])]
    assert lift(weights, biases).sampled == 1


def test_the_unchanged_network_still_reads_and_inverts(lock, tmp_path):
    path = lock.save(tmp_path / "clean.safetensors")
    assert read_circuit(path).proven is True
    result = invert_file(str(path), "1")
    assert result.found and lock.forward(torch.tensor([result.input]).long()).tolist() == [[1]]


@pytest.mark.parametrize("target", ["1", "0.5"])  # the SAT and the MILP paths
@pytest.mark.parametrize("value,found", [(NAN, "1 NaN"), (INF, r"1 \+Inf"), (2.0**40, r"1 value beyond ±2\^31")])
def test_invert_refuses_non_finite_and_out_of_range_weights(lock, tmp_path, target, value, found):
    path = planted(lock, tmp_path, value)
    with pytest.raises(ParamLensError, match=rf"layer {LAYER}: layers\.{LAYER}\.weight holds {found}") as e:
        invert_file(str(path), target)
    one_line(e)


def test_milp_refuses_non_finite_weights_targets_and_overflowing_bounds():
    weights, biases = [torch.tensor([[1.0, NAN]]), torch.tensor([[1.0]])], [torch.zeros(1), torch.zeros(1)]
    with pytest.raises(ParamLensError, match="layer 0: weight holds 1 NaN"):
        invert_relu(weights, biases, [0.0])
    fine = [torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0]])]
    with pytest.raises(ParamLensError, match="target holds nan"):
        invert_relu(fine, biases, [NAN])
    with pytest.raises(ParamLensError, match="overflow float64"):
        invert_relu([torch.full((2, 2), 2.0**31)] * 40, [torch.zeros(2)] * 40, [0.0, 0.0], high=1e300)


@pytest.mark.parametrize("text,n,message", [
    ("0xZZ", 4, "--target '0xZZ' is not a hex number"), ("0x", 4, "not a hex number"), ("", 4, "--target is empty"),
    ("  ", 4, "--target is empty"), ("0x1f", 4, "more than the network's 4 output bits"),
    ("1,two", 2, "--target '1,two': give 2 comma-separated numbers"),
    ("nan", 1, "holds nan: every value must be a finite number"),
    ("1,-inf", 2, "holds -inf"), ("1,2,3", 2, "--target has 3 values; the network has 2 outputs")])
def test_bad_targets_name_the_option_and_what_it_allows(text, n, message):
    with pytest.raises(ParamLensError) as e:
        parse_target(text, n)
    assert message in one_line(e)


@pytest.mark.parametrize("low,high,tol,message", [
    (2.0, 1.0, 1e-4, "--low 2.0 is above --high 1.0"), (NAN, 1.0, 1e-4, "--low nan: give a finite number"),
    (0.0, INF, 1e-4, "--high inf: give a finite number"), (-INF, 0.0, 1e-4, "--low -inf"),
    (0.0, 1.0, -1.0, "--tol -1.0: give a number >= 0"), (0.0, 1.0, NAN, "--tol nan")])
def test_bad_input_boxes_and_tolerances_name_the_option(lock, tmp_path, low, high, tol, message):
    with pytest.raises(ParamLensError, match="^" + re.escape(message)):
        check_options(low, high, tol)
    with pytest.raises(ParamLensError, match="^" + re.escape(message)):
        invert_file(str(lock.save(tmp_path / "clean.safetensors")), "0.5", low=low, high=high, tol=tol)
    check_options(0.0, 0.0, 0.0)  # a point box and an exact target are allowed


@pytest.mark.parametrize("value,found", [(NAN, "1 NaN"), (-INF, "1 -Inf"), (1e300, "1 value beyond float32's range")])
def test_reassemble_refuses_pieces_that_are_not_finite(tmp_path, value, found):
    for i in range(3):
        w = torch.ones(4 if i == 0 else 2, 2 if i != 1 else 4, dtype=torch.float64)
        bias = torch.zeros(len(w), dtype=torch.float64)
        save_file({"weight": w, "bias": bias}, str(tmp_path / f"piece_{i}.safetensors"))
    load_pieces(tmp_path)
    w = torch.ones(2, 4, dtype=torch.float64)
    w[1, 3] = value
    save_file({"weight": w, "bias": torch.zeros(2, dtype=torch.float64)}, str(tmp_path / "piece_1.safetensors"))
    with pytest.raises(ParamLensError, match=rf"piece_1\.safetensors: tensor 'weight' holds {found}") as e:
        load_pieces(tmp_path)
    one_line(e)


@pytest.mark.parametrize("cell,shown", [("nan", "'nan'"), ("-Infinity", "'-Infinity'"), ("1e39", "'1e39'")])
def test_reassemble_refuses_data_rows_that_are_not_finite(tmp_path, cell, shown):
    path = tmp_path / "data.csv"
    path.write_text(f"x0,x1,y\n1,2,3\n4,5,6\n7,{cell},9\n")
    with pytest.raises(ParamLensError, match=rf"data row 3 \(line 4\), column 'x1' holds {shown}") as e:
        load_rows(path, 2, 1)
    one_line(e)
    path.write_text("x0,x1,y\n1,2,3\n")
    assert load_rows(path, 2, 1)[1].tolist() == [[3.0]]


def test_constants_are_read_only_from_words_of_the_given_width():
    assert describe_value(-5, 8) == [] and describe_value(2**40, 32) == [] and describe_value(2**40, 64) == ["2^40"]
    assert match_sequence([-1, 0x2F], 8) == [] and match_sequence([2**40], 32) == []
    assert match_sequence([0x428A2F98], 32) == ["SHA-256 K[0]"]
