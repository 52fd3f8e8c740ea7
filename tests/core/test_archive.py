"""core.archive.read_archive: tensors out of torch checkpoints, and no pickled code ever runs."""

import functools
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from paramlens import ParamLensError
from paramlens.core.archive import read_archive
from paramlens.core.loading import inspect, load


class Planted:
    """Unpickling this writes a file: the proof that a loader ran pickled code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Custom:
    def __init__(self):
        self.table = torch.arange(6.0).reshape(2, 3)


def scaled(x, factor):
    return x * factor


class WithState(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("scale", torch.tensor([2.0, 3.0]))


def test_reads_a_state_dict_in_order_with_exact_values(tmp_path):
    sd = {"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4), "ids": torch.arange(5), "h": torch.randn(2, 2).half()}
    torch.save(sd, tmp_path / "sd.pt")
    found = read_archive(tmp_path / "sd.pt")
    assert [t.name for t in found] == list(sd)
    for t in found:
        assert t.dtype == sd[t.name].dtype and t.shape == tuple(sd[t.name].shape)
        assert torch.equal(t.value, sd[t.name])


def test_views_and_shared_storage_keep_their_strides(tmp_path):
    base = torch.randn(4, 5)
    torch.save({"base": base, "t": base.T, "row": base[2]}, tmp_path / "v.pt")
    got = {t.name: t.value for t in read_archive(tmp_path / "v.pt")}
    assert torch.equal(got["t"], base.T) and torch.equal(got["row"], base[2])


def test_reads_whole_modules_without_their_classes(tmp_path):
    model = nn.Sequential(WithState(), nn.ReLU(), nn.Linear(2, 1))
    torch.save(model, tmp_path / "whole.pt")
    got = {t.name: t.value for t in read_archive(tmp_path / "whole.pt")}
    expected = model.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_reads_custom_classes_and_pickled_functions(tmp_path):
    checkpoint = {"custom": Custom(), "hook": functools.partial(scaled, factor=torch.tensor(0.5)), "fn": scaled,
                  "step": 7}
    torch.save(checkpoint, tmp_path / "c.pt")
    found = read_archive(tmp_path / "c.pt")
    assert [t.name for t in found] == ["custom.table", "hook.2.factor"]  # partial state: (fn, args, kwargs, dict)
    assert torch.equal(found[0].value, torch.arange(6.0).reshape(2, 3))
    assert torch.equal(found[1].value, torch.tensor(0.5))


def test_no_path_of_paramlens_runs_planted_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2, 2), "payload": Planted(marker)}, path)

    found = read_archive(path)
    assert [t.name for t in found] == ["w"] and torch.equal(found[0].value, torch.ones(2, 2))
    with pytest.raises(ParamLensError, match="pickles code.*trust_code"):
        load(path)
    report = inspect(path)
    assert [r["name"] for r in report.rows] == ["w"] and "without running" in report.note
    cli = subprocess.run([sys.executable, "-m", "paramlens", "inspect", str(path)], capture_output=True, text=True)
    assert cli.returncode == 0 and "w" in cli.stdout
    assert not marker.exists(), "pickled code was executed"

    load(path, trust_code=True)  # the explicit opt-in does unpickle: the planted file proves the test can fail
    assert marker.exists()


def test_truncated_and_foreign_files_raise_clear_errors(tmp_path):
    torch.save({"w": torch.randn(100, 100)}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ParamLensError, match="cut.pt.*truncated"):
        read_archive(tmp_path / "cut.pt")
    with pytest.raises(ParamLensError, match="no such file"):
        read_archive(tmp_path / "missing.pt")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ParamLensError, match="without data.pkl"):
        read_archive(tmp_path / "plain.zip")
