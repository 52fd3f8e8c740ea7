"""Every ``paramlens reverse`` command reads a network alike whichever way it was saved: ``torch.save`` of a state
dict (zip, legacy, an ``OrderedDict`` built by hand with its ``_metadata``, one saved on a GPU), safetensors and
``.npz`` (arrays saved by name, or by position as ``arr_0``, ``arr_1``, ...), with integer weights stored as float64
or float32. Each answer is compared with the one read from safetensors and with what the network is known to
compute."""

import io
import json
import pickletools
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from paramlens.core.loading import load
from paramlens.models.compiled import compile_circuit, hash_network
from paramlens.models.compiled.builders import arx_mixer
from paramlens.models.compiled.hashes import REFERENCES
from paramlens.models.shuffled import PiecesConfig, make_shuffled
from paramlens.reverse import identify
from paramlens.reverse.invert import invert_file
from paramlens.reverse.read_circuit import read_circuit
from paramlens.reverse.reassemble import Reassembly
from paramlens.reverse.scan import scan
from tests.formats import with_location

FORMATS = ["safetensors", "state_dict.pt", "ordered_dict.pt", "legacy.pt", "legacy_ordered_dict.pt", "cuda.pt",
           "legacy_cuda.pt", "arrays.npz", "positional.npz", "letters.npz"]
LOADED_AS = {"safetensors": "safetensors", "arrays.npz": "npz", "positional.npz": "npz", "letters.npz": "npz",
             **{f: "torch legacy" for f in FORMATS if "legacy" in f}}  # the rest: "torch zip"
DTYPES = {"float64": torch.float64, "float32": torch.float32}
MATRIX = [pytest.param(fmt, dtype, id=f"{fmt}-{dtype}") for fmt in FORMATS for dtype in DTYPES]
MESSAGE = b"ok"


def by_hand(sd: dict[str, Tensor]) -> OrderedDict:
    """``sd`` as a ``collections.OrderedDict`` with the ``_metadata`` a module's ``state_dict()`` carries, set by
    hand (``{"": {"version": 1}, "0": {"version": 1}, ...}``)."""
    out = OrderedDict((k, v.clone()) for k, v in sd.items())
    out._metadata = OrderedDict([("", {"version": 1})] + [(k.rpartition(".")[0], {"version": 1}) for k in sd])
    return out


def legacy_on_gpu(src: Path, dst: Path) -> Path:
    """A copy of the legacy torch file ``src`` as torch < 1.6 wrote it from a GPU: in the object pickle, storage
    types ``torch.cuda.<T>Storage`` and location ``cuda:0``."""
    data = src.read_bytes()
    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system information
        list(pickletools.genops(f))
    start = f.tell()
    list(pickletools.genops(f))
    obj = re.sub(rb"ctorch\n(\w+Storage)\n", rb"ctorch.cuda\n\1\n", data[start:f.tell()])
    obj = obj.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")  # BINUNICODE "cpu" (protocol 2)
    assert b"torch.cuda" in obj and b"cuda:0" in obj
    dst.write_bytes(data[:start] + obj + data[f.tell():])
    return dst


def write(module: nn.Module, fmt: str, path: Path) -> Path:
    """``module``'s weights saved the way ``fmt`` names (see :data:`FORMATS`)."""
    sd = module.state_dict()  # an OrderedDict with _metadata, as torch.save(model.state_dict()) stores it
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif fmt == "state_dict.pt":
        torch.save(sd, path)
    elif fmt == "ordered_dict.pt":
        torch.save(by_hand(sd), path)
    elif fmt == "legacy.pt":
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    elif fmt == "legacy_ordered_dict.pt":
        torch.save(by_hand(sd), path, _use_new_zipfile_serialization=False)
    elif fmt == "cuda.pt":  # every storage says it was saved on cuda:0
        torch.save(sd, path.with_suffix(".cpu"))
        with_location(path.with_suffix(".cpu"), path, "cuda:0")
        path.with_suffix(".cpu").unlink()
    elif fmt == "legacy_cuda.pt":
        torch.save(sd, path.with_suffix(".cpu"), _use_new_zipfile_serialization=False)
        legacy_on_gpu(path.with_suffix(".cpu"), path)
        path.with_suffix(".cpu").unlink()
    elif fmt == "arrays.npz":
        np.savez(path, **{k: v.numpy() for k, v in sd.items()})
    elif fmt == "positional.npz":  # arr_0, arr_1, ...: the names do not say which is a weight and which a bias
        np.savez(path, *(v.numpy() for v in sd.values()))
    elif fmt == "letters.npz":  # W0, W1, ..., b0, b1, ...: all weights sort before all biases
        arrays = [v.numpy() for v in sd.values()]
        np.savez(path, **{f"{'W' if a.ndim == 2 else 'b'}{i // 2}": a for i, a in enumerate(arrays)})
    else:
        raise AssertionError(fmt)
    return path


def sequential(weights: list[Tensor], biases: list[Tensor], dtype: torch.dtype) -> nn.Sequential:
    """``Linear`` + ``ReLU`` pairs holding the integer layers in ``dtype``."""
    layers: list[nn.Module] = []
    for W, b in zip(weights, biases):
        lin = nn.utils.skip_init(nn.Linear, W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(b)
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers)


def saved(module_of, folder: Path) -> dict[tuple[str, str], Path]:
    """``{(format, dtype): path}``; ``module_of(dtype)`` builds the network's module."""
    folder.mkdir(parents=True, exist_ok=True)
    return {(fmt, name): write(module_of(dtype), fmt, folder / f"{name}-{fmt}")
            for name, dtype in DTYPES.items() for fmt in FORMATS}


def body(text: str, path: Path) -> str:
    """Printed findings without the file's name, the report line and the time taken."""
    text = text.split("report:")[0].replace(str(path), "<network>")
    return re.sub(r"; [0-9.]+ s$", "", text, flags=re.MULTILINE).strip()


def ran(code: int, err: str) -> bool:
    """The command succeeded and printed no traceback."""
    return code == 0 and "Traceback" not in err


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_files_are_saved_as_their_names_say(tmp_path, fmt):
    """What torch reads back: the state dict's ``_metadata`` where one was saved, GPU files refused without a
    ``map_location``; ParamLens reads the same values from every file."""
    module = sequential([torch.tensor([[1, -2], [0, 3]])], [torch.tensor([-1, 2])], torch.float64)
    path = write(module, fmt, tmp_path / fmt)
    assert load(path).format == LOADED_AS.get(fmt, "torch zip")
    values = {tuple(v.shape): v.tolist() for v in load(path).tensors.values()}
    assert values == {(2, 2): [[1, -2], [0, 3]], (2,): [-1, 2]}
    if fmt.endswith(".pt"):
        if "cuda" in fmt:
            with pytest.raises(RuntimeError, match="CUDA"):
                torch.load(path, weights_only=True)
        back = torch.load(path, weights_only=True, map_location="cpu")
        assert type(back) is OrderedDict and {"", "0"} <= set(back._metadata)


# --- scan and identify: MD5 of a 2-byte message reduced to 2 steps, output 1 iff the digest equals a target ----


@pytest.fixture(scope="module")
def md5(tmp_path_factory):
    target = REFERENCES["md5"](MESSAGE, 2)
    net = hash_network("md5", len(MESSAGE), 2, target)
    return target, saved(net.to_module, tmp_path_factory.mktemp("md5"))


@pytest.fixture(scope="module")
def md5_scan(md5):
    """The scan of the float64 safetensors file; it finds what the network is known to compute."""
    target, files = md5
    path = files["safetensors", "float64"]
    result = scan(path, progress=False)
    assert result.compared == target.hex() and result.checked.startswith("MD5 reduced to 2 steps of the 2-byte")
    assert result.n_repeats == 2 and any("MD5 T[0..1]" in line for line in result.summary().splitlines())
    return body(result.summary(), path)


@pytest.fixture(scope="module")
def md5_identify(md5):
    path = md5[1]["safetensors", "float64"]
    result = identify(path, samples=64, progress=False)
    assert result.domain == "bytes:2" and len(result.found()) > 10
    assert all(s.confirmed == s.samples for s in result.found())
    return body(result.summary(), path)


@pytest.mark.parametrize("fmt,dtype", MATRIX)
def test_scan_reads_every_format_alike(cli, md5, md5_scan, fmt, dtype, tmp_path):
    path = md5[1][fmt, dtype]
    code, out, err = cli("reverse", "scan", path, "--out", tmp_path)
    assert ran(code, err), err
    if fmt == "positional.npz":
        note = "note: 32 biases taken by name order (the names do not say weight or bias): arr_1 of arr_0, arr_3 of "
        assert note + "arr_2, arr_5 of arr_4 ..." in out
        out = "\n".join(line for line in out.splitlines() if not line.startswith(note))
    assert body(out, path) == md5_scan
    assert f"equal {md5[0].hex()}" in out


@pytest.mark.parametrize("fmt,dtype", MATRIX)
def test_identify_reads_every_format_alike(cli, md5, md5_identify, fmt, dtype, tmp_path):
    path = md5[1][fmt, dtype]
    code, out, err = cli("reverse", "identify", path, "--samples", "64", "--out", tmp_path)
    assert ran(code, err), err
    assert body(out, path) == md5_identify
    code, out, err = cli("reverse", "identify", path, "--input", "bytes:2", "--samples", "64", "--out", tmp_path)
    assert ran(code, err), err
    assert body(out, path) == md5_identify.replace("(inferred: first-layer rows test single inputs against 127, "
                                                   "128)", "(declared)")


# --- circuit and invert: a compiled ARX round over two 4-bit words, output 1 iff the state equals 0xa ------------


@pytest.fixture(scope="module")
def arx(tmp_path_factory):
    net = compile_circuit(arx_mixer(1, bits=4, target=0xA))
    files = saved(lambda dtype: sequential(net.weights, net.biases, dtype), tmp_path_factory.mktemp("arx"))
    reference = files["safetensors", "float64"]
    reading = read_circuit(reference)
    assert reading.proven is True and reading.n_inputs == 8 and reading.n_outputs == 1
    inverted = invert_file(str(reference), "1")
    assert inverted.found and net.forward(torch.tensor([inverted.input]).long()).tolist() == [[1]]
    return net, files, body(reading.summary(), reference), reading.netlist, inverted.input


@pytest.mark.parametrize("fmt,dtype", MATRIX)
def test_circuit_reads_every_format_alike(cli, arx, fmt, dtype, tmp_path):
    _, files, summary, netlist, _ = arx
    path = files[fmt, dtype]
    code, out, err = cli("reverse", "circuit", path, "--out", tmp_path)
    assert ran(code, err), err
    assert body(out.split("netlist, DOT")[0], path) == summary and "proven equal by SAT" in out
    (folder,) = tmp_path.glob("circuit-*")
    assert json.loads((folder / "circuit.json").read_text()) == json.loads(json.dumps(netlist))


@pytest.mark.parametrize("fmt,dtype", MATRIX)
def test_invert_reads_every_format_alike(cli, arx, fmt, dtype):
    net, files, _, _, reference = arx
    code, out, err = cli("reverse", "invert", files[fmt, dtype], "--target", "1")
    assert ran(code, err), err
    assert "SAT" in out.split("tried:")[1].splitlines()[0]
    bits = [int(c) for c in re.search(r"input: ([01]+) ", out)[1]]
    assert bits == [int(v) for v in reference]
    assert net.forward(torch.tensor([bits])).tolist() == [[1]]  # the network itself opens


# --- reassemble: pieces of a small trained residual network, one file per linear layer ---------------------------

PIECES = PiecesConfig(n_blocks=4, d_model=16, d_hidden=32, n_rows=256, n_steps=200, seed=1)
PIECE_FORMATS = ["safetensors", "pth", "npz", "legacy.pt", "ordered_dict.pt", "legacy_ordered_dict.pt", "cuda.pt",
                 "legacy_cuda.pt", "positional.npz"]


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    pieces = make_shuffled(PIECES)
    data = pieces.save(tmp_path_factory.mktemp("data"), output="pred", label="true") / "data.csv"
    return pieces, data


def piece_folder(pieces, fmt: str, folder: Path) -> Path:
    """The pieces alone (no data) in ``folder``, as ``Shuffled.save`` writes them or as ``fmt`` names."""
    if fmt in ("safetensors", "pth", "npz"):
        pieces.save(folder, fmt=fmt)
        (folder / "data.csv").unlink()
        return folder
    folder.mkdir()
    for i, (w, b) in enumerate(pieces.pieces):
        layer = nn.Linear(w.shape[1], w.shape[0])
        layer.load_state_dict({"weight": w, "bias": b})
        write(layer, fmt, folder / f"piece_{i}.{fmt.rpartition('.')[2]}")
    return folder


@pytest.mark.parametrize("fmt", PIECE_FORMATS)
def test_reassemble_reads_pieces_in_every_format_alike(cli, shuffled, fmt, tmp_path):
    pieces, data = shuffled
    folder = piece_folder(pieces, fmt, tmp_path / "pieces")
    code, out, err = cli("reverse", "reassemble", folder, "--data", data, "--out", tmp_path / "runs")
    assert ran(code, err), err
    assert "exact" in out and "NOT exact" not in out
    assert " ".join(map(str, pieces.order)) in " ".join(out.split())
    (run,) = (tmp_path / "runs").iterdir()
    result = Reassembly.load(run)
    assert result.exact and result.order == pieces.order
    assert result.pieces == [f"piece_{i}.{fmt.rpartition('.')[2]}" for i in range(len(pieces.pieces))]
