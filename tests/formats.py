"""Weights files in the formats users bring, written the way other tools write them (not by ParamLens)."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn


def with_location(src: Path, dst: Path, location: str) -> Path:
    """A copy of the torch zip ``src`` whose storages say they were saved on ``location`` (``"cuda:0"``, ``"mps"``),
    as a checkpoint written on a GPU machine is: the location strings inside ``data.pkl`` are rewritten."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data.pkl"):
                new = location.encode()  # BINUNICODE (protocol 2) or SHORT_BINUNICODE records of "cpu"
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X" + len(new).to_bytes(4, "little") + new)
                data = data.replace(b"\x8c\x03cpu", b"\x8c" + bytes([len(new)]) + new)
                assert new in data
            zout.writestr(info.filename, data)
    return dst


class Payload:
    """Unpickling this writes ``marker``: the proof that a reader ran pickled code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def weights_files(model: nn.Module, folder: Path) -> dict[str, Path]:
    """``model``'s weights in every weights-only format: ``{format name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()  # an OrderedDict carrying _metadata, as torch.save(model.state_dict()) writes it
    writers: dict[str, Callable[[Path], None]] = {
        "safetensors": lambda p: save_file({k: v.contiguous() for k, v in sd.items()}, str(p)),
        "state_dict.pt": lambda p: torch.save(sd, p),
        "legacy.pt": lambda p: torch.save(sd, p, _use_new_zipfile_serialization=False),
        "wrapped_state_dict.ckpt": lambda p: torch.save({"state_dict": sd, "epoch": 3, "lr": 0.1}, p),
        "wrapped_model.pth": lambda p: torch.save({"model": sd, "optimizer": {"step": torch.tensor(5.0)}}, p),
        "ddp_module.pt": lambda p: torch.save({f"module.{k}": v for k, v in sd.items()}, p),
        "arrays.npz": lambda p: np.savez(p, **{k: v.numpy() for k, v in sd.items()}),
    }
    out = {}
    for name, write in writers.items():
        path = folder / name.replace("safetensors", "weights.safetensors")
        write(path)
        out[name] = path
    out["cuda.pt"] = with_location(out["state_dict.pt"], folder / "cuda.pt", "cuda:0")
    out["mps.pt"] = with_location(out["state_dict.pt"], folder / "mps.pt", "mps")
    return out


def whole_module(model: nn.Module, path: Path) -> Path:
    """``torch.save(model)``: the architecture is pickled code."""
    buffer = io.BytesIO()
    torch.save(model, buffer)
    path.write_bytes(buffer.getvalue())
    return path


def _safetensors_parts(path: Path) -> tuple[bytes, bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return raw[8: 8 + n], raw[8 + n:]


def _safetensors_with_header(header: bytes, data: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header + data


def malformed_files(valid: dict[str, Path], folder: Path) -> dict[str, Path]:
    """Damaged copies of ``valid`` files (from :func:`weights_files`): ``{what is wrong: path}``."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    st = valid["safetensors"].read_bytes()
    header, data = _safetensors_parts(valid["safetensors"])
    meta = json.loads(header)
    name = next(k for k in meta if k != "__metadata__")
    past = dict(meta, **{name: {**meta[name], "data_offsets": [0, len(data) + 4096]}})
    bad_dtype = dict(meta, **{name: {**meta[name], "dtype": "Q9"}})
    pt = valid["state_dict.pt"].read_bytes()
    legacy = valid["legacy.pt"].read_bytes()
    npz = valid["arrays.npz"].read_bytes()
    cases = {
        "empty.safetensors": b"",
        "empty.pt": b"",
        "header_cut.safetensors": st[:20],
        "data_cut.safetensors": st[:-7],
        "header_length_absurd.safetensors": (1 << 60).to_bytes(8, "little") + st[8:],
        "offsets_past_end.safetensors": _safetensors_with_header(json.dumps(past).encode(), data),
        "bad_dtype.safetensors": _safetensors_with_header(json.dumps(bad_dtype).encode(), data),
        "zip_cut.pt": pt[: len(pt) // 2],
        "zip_tail_cut.pt": pt[:-30],
        "legacy_cut.pt": legacy[: len(legacy) - 40],
        "npz_cut.npz": npz[: len(npz) // 2],
        "text_named.pt": b"this is a text file, not a checkpoint\n",
        "random.bin": bytes(range(256)) * 4,
    }
    out = {}
    for file, content in cases.items():
        (folder / file).write_bytes(content)
        out[file] = folder / file
    return out
