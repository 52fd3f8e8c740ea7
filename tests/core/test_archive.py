"""core.archive: tensors, object graphs and configs out of torch checkpoints (zip and legacy); no pickled code runs."""

import argparse
import functools
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from paramlens import ParamLensError
from paramlens.core.archive import is_torch_file, open_archive, plain, read_archive, tensors_in
from paramlens.core.loading import load


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
    sd = {"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4), "ids": torch.arange(5),
          "h": torch.randn(2, 2).half()}
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
    loaded = load(path)
    assert list(loaded.tensors) == ["w"] and "posix.system" in loaded.note
    cli = subprocess.run([sys.executable, "-m", "paramlens", "inspect", str(path)], check=False, capture_output=True,
                         text=True)
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


# ---- formats real checkpoints come in -------------------------------------------------------------------------


def rewrite_zip(src: Path, dst: Path, edit) -> Path:
    """A copy of a zip archive with each record's bytes passed through ``edit(name, data)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info)))
    return dst


def test_a_modules_state_dict_reads_in_order_with_its_metadata(tmp_path):
    """``torch.save(model.state_dict())`` pickles an OrderedDict whose ``_metadata`` attribute BUILD restores."""
    sd = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)).state_dict()
    assert hasattr(sd, "_metadata")
    torch.save(sd, tmp_path / "sd.pt")
    archive = open_archive(tmp_path / "sd.pt")
    assert archive.format == "torch zip" and [t.name for t in archive.tensors] == list(sd)
    assert all(torch.equal(t.value, sd[t.name]) for t in archive.tensors)
    assert archive.globals == [] and not archive.pickles_code and archive.modules == []
    assert list(archive.root) == list(sd) and plain(archive.root) == {}


@pytest.mark.parametrize("location", ["cuda:0", "mps"])
def test_storages_saved_on_other_devices_read_on_the_cpu(tmp_path, location):
    sd = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).state_dict()
    torch.save(sd, tmp_path / "cpu.pt")
    tag = location.encode()

    def relocate(name: str, data: bytes) -> bytes:
        if not name.endswith("data.pkl"):
            return data
        assert data.count(b"X\x03\x00\x00\x00cpu") == 1  # BINUNICODE 'cpu', memoized after its first use
        return data.replace(b"X\x03\x00\x00\x00cpu", b"X" + struct.pack("<I", len(tag)) + tag)

    path = rewrite_zip(tmp_path / "cpu.pt", tmp_path / "moved.pt", relocate)
    if location == "cuda:0" and not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # the edit took: torch itself needs map_location
            torch.load(path)
    got = read_archive(path)
    assert [t.name for t in got] == list(sd) and all(torch.equal(t.value, sd[t.name]) for t in got)
    assert all(t.value.device.type == "cpu" for t in got)


def test_big_endian_archives_read_in_native_order(tmp_path):
    saved = {"f": torch.randn(3, 2), "h": torch.randn(4).half(), "i": torch.arange(5), "c": torch.randn(2).cfloat(),
             "b": torch.tensor([True, False])}
    torch.save(saved, tmp_path / "le.pt")
    units = {"0": 4, "1": 2, "2": 8, "3": 4, "4": 1}  # storage keys in save order -> bytes per number to swap

    def to_big(name: str, data: bytes) -> bytes:
        if name.endswith("byteorder"):
            return b"big"
        unit = units.get(name.rsplit("/", 1)[-1], 1) if "/data/" in name else 1
        if unit > 1:
            return np.frombuffer(data, dtype=f"<u{unit}").byteswap().tobytes()
        return data

    path = rewrite_zip(tmp_path / "le.pt", tmp_path / "be.pt", to_big)
    got = {t.name: t.value for t in read_archive(path)}
    assert all(torch.equal(got[k], saved[k]) for k in saved)


def test_legacy_files_read_like_torch_load(tmp_path):
    base = torch.randn(4, 5)
    saved = {"base": base, "t": base.T, "row": base[2], "narrow": base[:, 1:3], "h": torch.randn(3).half(),
             "bf": torch.randn(3).bfloat16(), "i": torch.arange(4), "b": torch.tensor([True, False]),
             "c": torch.randn(2, dtype=torch.complex64), "sd": nn.Linear(2, 3).state_dict(), "step": 7}
    torch.save(saved, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    expected = torch.load(tmp_path / "old.pt", weights_only=True)
    archive = open_archive(tmp_path / "old.pt")
    got = {t.name: t.value for t in archive.tensors}
    assert archive.format == "torch legacy" and not archive.pickles_code
    assert list(got) == ["base", "t", "row", "narrow", "h", "bf", "i", "b", "c", "sd.weight", "sd.bias"]
    assert all(torch.equal(got[k], expected[k]) for k in ["base", "t", "row", "narrow", "h", "bf", "i", "b", "c"])
    assert torch.equal(got["sd.weight"], saved["sd"]["weight"]) and archive.root["step"] == 7
    assert got["t"].stride() == base.T.stride()


def test_legacy_whole_modules_read_without_their_classes(tmp_path):
    model = nn.Sequential(WithState(), nn.ReLU(), nn.Linear(2, 1))
    torch.save(model, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    archive = open_archive(tmp_path / "old.pt")
    got = {t.name: t.value for t in archive.tensors}
    assert set(got) == set(model.state_dict()) and all(torch.equal(got[k], v) for k, v in model.state_dict().items())
    assert archive.modules == ["", "0", "0.lin", "1", "2"]
    assert archive.globals[0] == "torch.nn.modules.container.Sequential" and f"{__name__}.WithState" in archive.globals


def test_cut_legacy_files_are_truncated(tmp_path):
    torch.save({"w": torch.randn(100)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    data = (tmp_path / "old.pt").read_bytes()
    for cut in (len(data) - 7, len(data) // 2, 40):
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        with pytest.raises(ParamLensError, match=r"^\S*cut.pt: .*(truncated|not a valid pickle)"):
            read_archive(tmp_path / "cut.pt")


def test_whole_modules_name_their_classes_and_module_paths(tmp_path):
    torch.save(nn.Sequential(WithState(), nn.ReLU(), nn.Linear(2, 1)), tmp_path / "whole.pt")
    archive = open_archive(tmp_path / "whole.pt")
    assert archive.pickles_code and archive.modules == ["", "0", "0.lin", "1", "2"]
    assert archive.globals == ["torch.nn.modules.container.Sequential", f"{__name__}.WithState",
                               "torch.nn.modules.linear.Linear", "torch.nn.modules.activation.ReLU"]


UNKNOWN = {
    "text": (b"just some notes\n", "a text file, not a torch checkpoint"),
    "git lfs pointer": (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n", "git lfs pull"),
    "random bytes": (bytes(range(7, 250, 3)), "unknown binary data (starting 07 0a 0d"),
    "plain pickle": (pickle.dumps({"w": [1.0]}, 2), "a pickle without torch's magic number"),
    "empty": (b"", "an empty file"),
}


@pytest.mark.parametrize("content", UNKNOWN.values(), ids=UNKNOWN.keys())
def test_files_that_are_not_checkpoints_say_what_they_are_not(tmp_path, content):
    data, expected = content
    (tmp_path / "x.pt").write_bytes(data)
    with pytest.raises(ParamLensError) as caught:
        open_archive(tmp_path / "x.pt")
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "x.pt")) and expected in message and "\n" not in message
    assert "save it again" not in message and not is_torch_file(tmp_path / "x.pt")


def test_the_old_tar_format_is_named_and_never_advised_to_be_loaded(tmp_path):
    with tarfile.open(tmp_path / "old.pt", "w") as tar:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            member = tarfile.TarInfo(name)
            member.size = 4
            tar.addfile(member, io.BytesIO(b"\x80\x02N."))
    with pytest.raises(ParamLensError, match=r"old.pt: a tar archive \(how torch < 0.4 saved\)") as caught:
        open_archive(tmp_path / "old.pt")
    assert "load it" not in str(caught.value)


def test_non_regular_files_are_refused_without_opening_them(tmp_path):
    os.mkfifo(tmp_path / "fifo.pt")
    code = f"from paramlens.core.archive import open_archive; open_archive({str(tmp_path / 'fifo.pt')!r})"
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert "fifo.pt: not a regular file" in done.stderr  # a blocking open would hang until the timeout
    for path in (tmp_path, Path("/dev/null")):
        with pytest.raises(ParamLensError, match="not a regular file"):
            open_archive(path)
        assert not is_torch_file(path)


def test_is_torch_file_sniffs_both_formats(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "new.pt")
    torch.save({"w": torch.ones(1)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    np.savez(tmp_path / "arrays.npz", w=np.ones(2))
    assert is_torch_file(tmp_path / "new.pt") and is_torch_file(str(tmp_path / "old.pt"))
    assert not is_torch_file(tmp_path / "arrays.npz") and not is_torch_file(tmp_path / "missing.pt")


def test_plain_reads_configs_stored_in_checkpoints(tmp_path):
    config = {"lr": 0.1, "layers": (2, 3), "dtype": torch.bfloat16, "name": "tiny", "tags": {"b", "a"}, "on": True,
              "none": None, "np_float": np.float64(2.5), "np_int": np.int32(-3), "shape": torch.Size([4, 5]),
              "device": torch.device("cuda", 0), 3: "three", "w": torch.ones(2), "custom": Custom(), "raw": b"\x00",
              "z": complex(1, 2), "cut": slice(1, 2)}
    torch.save({"config": config, "w": torch.ones(1)}, tmp_path / "c.pt")
    archive = open_archive(tmp_path / "c.pt")
    assert plain(archive.root["config"]) == {
        "lr": 0.1, "layers": [2, 3], "dtype": "bfloat16", "name": "tiny", "tags": ["a", "b"], "on": True,
        "none": None, "np_float": 2.5, "np_int": -3, "shape": [4, 5], "device": "cuda:0", "3": "three"}
    assert archive.globals == [f"{__name__}.Custom"]  # numpy scalars, bytes, sets, sizes, devices are plain data
    assert archive.root["config"]["raw"] == b"\x00" and archive.root["config"]["z"] == complex(1, 2)


def test_plain_bounds_shared_and_cyclic_containers():
    loop: list = [1]
    loop.append(loop)
    assert plain({"a": loop, "b": (loop, 2)}) == {"a": [1], "b": [[1], 2]}
    dag: list = [1]
    for _ in range(30):
        dag = [dag, dag]
    with pytest.raises(ParamLensError, match="more than 1000000 values"):
        plain(dag)
    deep: list = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(ParamLensError, match="nested deeper than 256"):
        plain(deep)
    assert plain(Custom()) is None and plain(torch.float16) == "float16"


def test_small_expanded_tensors_read_within_the_budget(tmp_path):
    saved = {"rows": torch.arange(3.0).expand(1000, 3), "scalar": torch.tensor(2.0).expand(5, 5)}
    torch.save(saved, tmp_path / "e.pt")
    got = {t.name: t.value for t in read_archive(tmp_path / "e.pt")}
    assert all(torch.equal(got[k], v) and got[k].stride() == v.stride() for k, v in saved.items())


def test_tensors_in_walks_trusted_objects_like_archives():
    model = nn.Sequential(WithState(), nn.Linear(2, 1))
    found = tensors_in({"model": model, "extra": [model[1].weight], "custom": Custom()})
    assert [t.name for t in found] == ["model.0.scale", "model.0.lin.weight", "model.0.lin.bias", "model.1.weight",
                                       "model.1.bias", "extra.0", "custom.table"]  # buffers before submodules
    assert found[5].value is found[3].value  # a tensor under two names (tied) is listed under both, not copied


@pytest.mark.parametrize("protocol", [1, 2, 4, 5])  # torch.load itself cannot read protocol 0
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_every_pickle_protocol_reads(tmp_path, protocol, zip_format):
    saved = {"w": torch.randn(2, 3), "ids": torch.arange(4), "nested": {"b": torch.ones(1)}, "name": "x"}
    torch.save(saved, tmp_path / "p.pt", pickle_protocol=protocol, _use_new_zipfile_serialization=zip_format)
    archive = open_archive(tmp_path / "p.pt")
    got = {t.name: t.value for t in archive.tensors}
    assert list(got) == ["w", "ids", "nested.b"] and torch.equal(got["w"], saved["w"])
    assert archive.globals == [] and archive.root["name"] == "x"


def test_a_training_checkpoint_reads_with_optimizer_state_and_arrays(tmp_path):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
                  "args": argparse.Namespace(lr=0.1), "history": np.arange(3.0)}
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    archive = open_archive(tmp_path / "ckpt.pt")
    names = [t.name for t in archive.tensors]
    assert names[:2] == ["model.weight", "model.bias"] and "optimizer.state.0.exp_avg" in names
    assert archive.globals == ["argparse.Namespace"]  # numpy arrays and optimizer state are plain data
    assert plain(archive.root["optimizer"]["param_groups"])[0]["params"] == [0, 1] and archive.root["epoch"] == 3
