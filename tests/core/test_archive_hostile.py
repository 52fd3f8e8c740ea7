"""core.archive on hostile files: exploit-shaped pickles, memory and time bombs, planted payloads.

Pickles are written opcode by opcode and wrapped in torch-like zip archives (``archive/data.pkl``,
``archive/data/0``, ``archive/version``, ``archive/byteorder``), which ``torch.load`` itself reads. Every failure
must be one ParamLensError line naming the file; no pickled code may ever run; memory and time must stay bounded
(the bomb files are read in a subprocess under an address-space limit, measuring its peak memory and time).
"""

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path
from pickle import (
    ADDITEMS,
    APPEND,
    APPENDS,
    BINBYTES8,
    BINGET,
    BINPERSID,
    BINPUT,
    BUILD,
    BYTEARRAY8,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_SET,
    EMPTY_TUPLE,
    GLOBAL,
    LONG_BINPUT,
    MARK,
    NEWFALSE,
    NEWOBJ,
    NEWOBJ_EX,
    NONE,
    POP,
    PROTO,
    REDUCE,
    SETITEM,
    SETITEMS,
    STACK_GLOBAL,
    STOP,
    TUPLE,
    TUPLE1,
)

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from paramlens import ParamLensError
from paramlens.core.archive import is_torch_file, open_archive, plain, read_archive

# ---- pickles by hand -------------------------------------------------------------------------------------------


def glob(module: str, name: str) -> bytes:
    return GLOBAL + f"{module}\n{name}\n".encode()


def text(s: str) -> bytes:
    raw = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def num(n: int) -> bytes:
    raw = pickle.encode_long(n)
    return pickle.LONG1 + bytes([len(raw)]) + raw


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def call(func: bytes, *args: bytes) -> bytes:
    return func + tup(*args) + REDUCE


def storage(key: str = "0", numel: int = 4, kind: str = "FloatStorage", location: str = "cpu") -> bytes:
    """A persistent id as torch writes it: ``("storage", torch.<kind>, key, location, numel)``."""
    return tup(text("storage"), glob("torch", kind), text(key), text(location), num(numel)) + BINPERSID


def tensor(offset: int = 0, size=(4,), stride=(1,), pid: bytes | None = None) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    return call(glob("torch._utils", "_rebuild_tensor_v2"), pid or storage(), num(offset), tup(*map(num, size)),
                tup(*map(num, stride)), NEWFALSE, call(glob("collections", "OrderedDict")))


def dict_of(**entries: bytes) -> bytes:
    return EMPTY_DICT + MARK + b"".join(text(k) + v for k, v in entries.items()) + SETITEMS


def pkl(body: bytes) -> bytes:
    return PROTO + b"\x02" + body + STOP


FOUR = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)


def torch_zip(path: Path, data_pkl: bytes, storages: dict | None = None, byteorder: bytes = b"little") -> Path:
    """A zip laid out as torch writes one; ``storages`` maps keys to raw bytes (default: "0" -> 4 floats)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", byteorder)
        for key, raw in ({"0": FOUR} if storages is None else storages).items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")
    return path


def raw_zip(path: Path, records: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip written field by field: ``(name, payload, method, crc, declared uncompressed size)`` per record, so
    the directory can say anything."""
    out, central = io.BytesIO(), []
    for name, payload, method, crc, size in records:
        offset, encoded = out.tell(), name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(payload), size,
                              len(encoded), 0) + encoded + payload)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(payload), size,
                                   len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
    directory, start = b"".join(central), out.tell()
    out.write(directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(records), len(records), len(directory),
                                      start, 0))
    path.write_bytes(out.getvalue())
    return path


def zeros_deflated(mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mib`` MiB of zeros (about 1 kB per MiB) and its CRC-32."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc, zeros = 0, bytes(1 << 20)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return block * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush(), crc


def legacy_file(path: Path, main: bytes, keys: list[str], storages: list[bytes], little_endian: bool = True,
                counts: list[bytes] | None = None) -> Path:
    """A legacy torch file: magic, protocol, sys_info, ``main`` pickle, key list, then count + bytes per storage."""
    sys_info = {"protocol_version": 1001, "little_endian": little_endian, "type_sizes": {"short": 2, "int": 4,
                                                                                           "long": 4}}
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, 2), pickle.dumps(1001, 2), pickle.dumps(sys_info, 2), main,
             pickle.dumps(keys, 2)]
    for i, raw in enumerate(storages):
        parts += [counts[i] if counts else struct.pack("<q", len(raw) // 4), raw]
    path.write_bytes(b"".join(parts))
    return path


def legacy_storage(key: str = "0", numel: int = 4, view: bytes = NONE) -> bytes:
    return tup(text("storage"), glob("torch", "FloatStorage"), text(key), text("cpu"), num(numel), view) + BINPERSID


def one_line_error(path: Path) -> str:
    with pytest.raises(ParamLensError) as caught:
        open_archive(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    return message


def test_hand_written_archives_are_what_torch_reads(tmp_path):
    """The builders above write real torch files: torch.load and open_archive agree on them."""
    path = torch_zip(tmp_path / "ok.pt", pkl(dict_of(w=tensor(), v=tensor(offset=1, size=(2,), stride=(2,)))))
    expected = torch.load(path)
    got = {t.name: t.value for t in read_archive(path)}
    assert list(got) == ["w", "v"] and all(torch.equal(got[k], expected[k]) for k in expected)


# ---- exploit shapes: one ParamLensError line each --------------------------------------------------------------

V2 = glob("torch._utils", "_rebuild_tensor_v2")
P61 = sys.hash_info.modulus  # ints k * P61 + 5 all hash to 5
MALFORMED = {
    "reduce with list arguments": glob("collections", "OrderedDict") + EMPTY_LIST + REDUCE,
    "build on a list": EMPTY_LIST + EMPTY_DICT + BUILD,
    "build on an int": num(3) + EMPTY_DICT + BUILD,
    "build on a tensor": tensor() + EMPTY_DICT + BUILD,
    "reduce on an empty stack": REDUCE,
    "tuple without mark": TUPLE,
    "stop on an empty stack": b"",
    "setitems with odd items": EMPTY_DICT + MARK + text("a") + SETITEMS,
    "calling a string": text("x") + EMPTY_TUPLE + REDUCE,
    "newobj of a dict factory": glob("collections", "OrderedDict") + EMPTY_TUPLE + NEWOBJ,
    "newobj_ex with number keywords": glob("x", "Y") + EMPTY_TUPLE + EMPTY_DICT + num(1) + NONE + SETITEM + NEWOBJ_EX,
    "persistent id a string": text("0") + BINPERSID,
    "persistent id too short": tup(text("storage")) + BINPERSID,
    "persistent id without storage type": tup(text("storage"), text("FloatStorage"), text("0"), text("cpu"),
                                              num(4)) + BINPERSID,
    "persistent id with an int key": tup(text("storage"), glob("torch", "FloatStorage"), num(0), text("cpu"),
                                         num(4)) + BINPERSID,
    "negative element count": storage(numel=-1),
    "missing storage record": storage(key="7"),
    "storage size unlike its record": storage(numel=5),
    "rebuild without arguments": call(V2),
    "rebuild on a string": call(V2, text("x"), num(0), tup(num(4)), tup(num(1)), NEWFALSE, NONE),
    "negative size": tensor(size=(-1,)),
    "negative stride": tensor(size=(2,), stride=(-1,)),
    "tensor past its storage": tensor(size=(5,)),
    "empty tensor offset past its storage": tensor(offset=5, size=(0,)),
    "sizes and strides of different lengths": tensor(size=(2, 2), stride=(1,)),
    "65 dimensions": tensor(size=(1,) * 65, stride=(1,) * 65),
    "size given as text": call(V2, storage(), num(0), tup(text("4")), tup(num(1)), NEWFALSE, NONE),
    "stride past 64 bits": tensor(size=(1, 2), stride=(2**70, 1)),
    "tensor metadata other than flags": call(V2, storage(), num(0), tup(num(4)), tup(num(1)), NEWFALSE, NONE,
                                             dict_of(x=NONE)),
    "v3 rebuild with a text dtype": call(glob("torch._utils", "_rebuild_tensor_v3"),
                                         storage(kind="UntypedStorage", numel=16), num(0), tup(num(4)), tup(num(1)),
                                         NEWFALSE, NONE, text("float32")),
    "setitem on a tensor": tensor() + num(0) + num(1) + SETITEM,
    "additems on a tensor": tensor() + MARK + num(1) + ADDITEMS,
    "append on a dict": EMPTY_DICT + NONE + APPEND,
    "set() iterating a tensor": call(glob("builtins", "set"), tensor()),
    "OrderedDict() iterating a tensor": call(glob("collections", "OrderedDict"), tensor()),
    "dict from a list of tensors": call(glob("collections", "OrderedDict"), EMPTY_LIST + tensor() + APPEND),
    "unknown opcode": b"\xff",
    "memo value never stored": BINGET + b"\x05",
    "stack_global of numbers": num(1) + num(2) + STACK_GLOBAL,
    "unknown protocol": PROTO + b"\x09",
    "bytearray8 claiming a terabyte": BYTEARRAY8 + struct.pack("<Q", 1 << 40),
    "binbytes8 claiming a terabyte": BINBYTES8 + struct.pack("<Q", 1 << 40),
    "ten thousand and one globals": b"".join(glob("m", f"n{i}") + POP for i in range(10_001)),
    "memo index past 32 bits": NONE + b"p" + str(2**61 + 5).encode() + b"\n",
    "dict keys sharing a hash": EMPTY_DICT + MARK + b"".join(num(k * P61 + 5) + NONE for k in range(1, 66)) + SETITEMS,
    "set items sharing a hash": EMPTY_SET + MARK + b"".join(num(k * P61 + 5) for k in range(1, 66)) + ADDITEMS,
    "set() of items sharing a hash": call(glob("builtins", "set"), EMPTY_LIST + MARK +
                                          b"".join(num(k * P61 + 5) for k in range(1, 66)) + APPENDS),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_exploit_shapes_end_as_one_error_line(tmp_path, body):
    path = torch_zip(tmp_path / "x.pt", pkl(body))
    one_line_error(path)


def test_a_pickle_without_its_end_is_truncated(tmp_path):
    path = torch_zip(tmp_path / "x.pt", (PROTO + b"\x02" + dict_of(w=tensor()))[:-3])
    assert "data.pkl is not a valid pickle" in one_line_error(path)


def test_getattr_chains_and_odd_calls_read_as_recorded_stand_ins(tmp_path):
    """``getattr(__import__("os"), "system")("...")`` -- REDUCE on the result of a REDUCE -- is recorded, not run."""
    marker = tmp_path / "pwned"
    module = call(glob("builtins", "__import__"), text("os"))
    system = call(glob("builtins", "getattr"), module, text("system"))
    payload = system + tup(text(f"touch {marker}")) + REDUCE
    kwargs = glob("pkg", "Obj") + EMPTY_TUPLE + dict_of(k=tensor(size=(2,))) + NEWOBJ_EX
    path = torch_zip(tmp_path / "x.pt", pkl(dict_of(p=payload, w=tensor(), obj=kwargs)))
    archive = open_archive(path)
    assert [t.name for t in archive.tensors] == ["w", "obj.k"]
    assert archive.globals == ["builtins.getattr", "builtins.__import__", "pkg.Obj"] and archive.pickles_code
    assert plain(archive.root) == {} and not marker.exists()
    with pytest.raises(ModuleNotFoundError):  # the real unpickler runs the payload, then misses pkg.Obj
        torch.load(path, weights_only=False)
    assert marker.exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_pickles_read_or_fail_as_one_error_line(tmp_path, data):
    """Random byte edits of a real state dict's data.pkl: either read, or one ParamLensError line."""
    real = tmp_path / "real.pt"
    if not real.exists():
        torch.save(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)).state_dict(), real)
    with zipfile.ZipFile(real) as z:
        records = {n.split("/", 1)[1]: z.read(n) for n in z.namelist()}
    edited = bytearray(records["data.pkl"])
    for _ in range(data.draw(st.integers(1, 4))):
        edited[data.draw(st.integers(0, len(edited) - 1))] = data.draw(st.integers(0, 255))
    path = torch_zip(tmp_path / "x.pt", bytes(edited), {k[5:]: v for k, v in records.items() if k.startswith("data/")})
    try:
        open_archive(path)
    except ParamLensError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)


# ---- planted payloads never run -------------------------------------------------------------------------------


class Planted:
    """Unpickling this writes a file: the proof that a reader ran pickled code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip_state_dict(path, marker):
    torch.save({"w": torch.ones(2), "payload": Planted(marker)}, path)


def _legacy_state_dict(path, marker):
    torch.save({"w": torch.ones(2), "payload": Planted(marker)}, path, _use_new_zipfile_serialization=False)


def _ordered_dict_with_metadata(path, marker):
    sd = nn.Linear(2, 2).state_dict()
    sd["payload"] = Planted(marker)
    torch.save(sd, path)


def _whole_module(path, marker):
    model = nn.Sequential(nn.Linear(2, 2))
    model.payload = Planted(marker)
    torch.save(model, path, _use_new_zipfile_serialization=False)


def _exec_by_hand(path, marker):
    source = f"open({str(marker)!r}, 'w').close()"
    torch_zip(path, pkl(dict_of(w=tensor(), p=call(glob("builtins", "exec"), text(source)))))


PAYLOADS = {"zip": _zip_state_dict, "legacy": _legacy_state_dict, "state dict with _metadata":
            _ordered_dict_with_metadata, "whole module, legacy": _whole_module, "builtins.exec": _exec_by_hand}


@pytest.mark.parametrize("write", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_planted_payloads_never_run(tmp_path, write):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    write(path, marker)
    archive = open_archive(path)
    assert is_torch_file(path) and archive.pickles_code and archive.tensors
    assert set(archive.globals) & {"posix.system", "nt.system", "builtins.exec"}
    plain(archive.root)
    assert not marker.exists(), "pickled code was executed"
    torch.load(path, weights_only=False)  # the real unpickler does run it: the test can fail
    assert marker.exists()


# ---- memory and time bombs, read in a subprocess ----------------------------------------------------------------

READER = textwrap.dedent("""
    import json, resource, sys, time
    from paramlens.core.archive import open_archive
    from paramlens.errors import ParamLensError

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize")) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), vm + (2 << 30)))  # a safety net, not the check
    base = peak_mb()
    results = {}
    for path in sys.argv[1:]:
        start = time.perf_counter()
        try:
            result = {"tensors": [t.name for t in open_archive(path).tensors]}
        except ParamLensError as e:
            result = {"error": str(e)}
        results[path] = dict(result, seconds=time.perf_counter() - start)
    print(json.dumps({"results": results, "growth_mb": peak_mb() - base}))
""")


def _deep_lists(levels: int) -> bytes:
    return EMPTY_LIST * levels + APPEND * (levels - 1)


def _bombs(folder: Path) -> dict[str, Path]:
    """Small files that a naive reader turns into hangs, crashes or gigabytes."""
    files = {}
    dag = [torch.ones(2)]
    for _ in range(40):
        dag = [dag, dag]  # 2**40 paths through 41 lists
    torch.save({"dag": dag, "w": torch.ones(3)}, files.setdefault("dag", folder / "dag.pt"))
    loop: list = []
    loop.append(loop)
    torch.save({"loop": loop, "w": torch.ones(3)}, files.setdefault("loop", folder / "loop.pt"))
    torch_zip(files.setdefault("deep lists", folder / "deep.pt"), pkl(dict_of(w=tensor(), d=_deep_lists(100_000))))
    deep_key = EMPTY_DICT + EMPTY_TUPLE + TUPLE1 * 100_000 + NONE + SETITEM  # hashing it overflows the C stack
    torch_zip(files.setdefault("deep tuple key", folder / "tuple.pt"), pkl(deep_key))
    torch.save({"x": torch.as_strided(torch.zeros(1), (10**9,), (0,))}, files.setdefault("stride 0", folder / "s.pt"))
    memo = dict_of(w=tensor()) + LONG_BINPUT + struct.pack("<I", 0x7FFFFFFF)  # the C unpickler's memo: 16 GiB
    torch_zip(files.setdefault("memo index", folder / "memo.pt"), pkl(memo))
    inflated, crc = zeros_deflated(1024)
    pickled = pkl(dict_of(w=tensor(size=(1 << 30,), pid=storage(numel=1 << 30, kind="ByteStorage"))))
    raw_zip(files.setdefault("zip bomb", folder / "bomb.pt"), [("archive/data.pkl", pickled, 0, zlib.crc32(pickled),
                                                                len(pickled)),
                                                               ("archive/data/0", inflated, 8, crc, 1 << 30)])
    raw_zip(files.setdefault("data.pkl bomb", folder / "pbomb.pt"), [("archive/data.pkl", inflated, 8, crc, 1 << 30)])
    raw_zip(files.setdefault("lying directory", folder / "lie.pt"), [("archive/data.pkl", inflated, 8, 0, 1024)])
    flood = EMPTY_DICT + MARK + b"".join(num(k * P61 + 5) + NONE for k in range(1, 40_000)) + SETITEMS
    torch_zip(files.setdefault("hash flood", folder / "flood.pt"), pkl(flood))  # 13 s of dict inserts unguarded
    legacy_file(files.setdefault("legacy terabyte", folder / "legacy.pt"),
                pkl(call(V2, legacy_storage(numel=1 << 40), num(0), tup(num(4)), tup(num(1)), NEWFALSE, NONE)),
                ["0"], [FOUR])
    return files


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """Each bomb file read once in a subprocess: ``(files, results by name, peak memory growth in MB)``."""
    files = _bombs(tmp_path_factory.mktemp("bombs"))
    done = subprocess.run([sys.executable, "-c", READER, *map(str, files.values())], check=False, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    return files, {name: report["results"][str(path)] for name, path in files.items()}, report["growth_mb"]


def test_bomb_files_are_small(bombs):
    files, _, _ = bombs
    sizes = {name: path.stat().st_size for name, path in files.items()}
    assert max(sizes.values()) < 2 << 20, sizes


def test_bombs_stay_within_memory_and_time(bombs):
    _, results, growth_mb = bombs
    assert growth_mb < 300, f"reading the bombs grew the peak memory by {growth_mb:.0f} MB"
    slow = {name: r["seconds"] for name, r in results.items() if r["seconds"] > 10}
    assert not slow, slow


def test_shared_and_cyclic_containers_are_walked_once(bombs):
    """A container reached twice is walked once and its tensors take the first name."""
    _, results, _ = bombs
    assert results["dag"].get("tensors") == ["dag" + ".0" * 41, "w"], results["dag"]
    assert results["loop"].get("tensors") == ["w"], results["loop"]


EXPECTED_REFUSALS = {
    "deep lists": "nested deeper than 256 levels",
    "deep tuple key": "tuples nested deeper than 256",
    "stride 0": "repeats its storage",
    "zip bomb": "refusing a zip bomb",
    "data.pkl bomb": "refusing a zip bomb",
    "lying directory": "is unreadable",
    "legacy terabyte": "declare more bytes than",
    "hash flood": "more than 64 keys of one dict or set share a hash",
}


@pytest.mark.parametrize("name", EXPECTED_REFUSALS)
def test_bombs_are_refused_before_they_go_off(bombs, name):
    files, results, _ = bombs
    message = results[name].get("error", "")
    assert message.startswith(str(files[name])) and EXPECTED_REFUSALS[name] in message and "\n" not in message, \
        results[name]


def test_a_huge_memo_index_costs_nothing(bombs):
    _, results, _ = bombs
    assert results["memo index"].get("tensors") == ["w"], results["memo index"]


# ---- crafted legacy files ---------------------------------------------------------------------------------------


def test_legacy_views_and_big_endian_counts_read(tmp_path):
    """A storage view ``(view key, offset, numel)``, and counts written big-endian by a big-endian writer."""
    view = tup(text("v"), num(1), num(2))
    main = pkl(dict_of(w=call(V2, legacy_storage(), num(0), tup(num(4)), tup(num(1)), NEWFALSE, NONE),
                       v=call(V2, legacy_storage(view=view), num(0), tup(num(2)), tup(num(1)), NEWFALSE, NONE)))
    path = legacy_file(tmp_path / "be.pt", main, ["0"], [FOUR], little_endian=False, counts=[struct.pack(">q", 4)])
    got = {t.name: t.value.tolist() for t in read_archive(path)}
    assert got == {"w": [1.0, 2.0, 3.0, 4.0], "v": [2.0, 3.0]}
    path = legacy_file(tmp_path / "le.pt", main, ["0"], [FOUR], little_endian=True, counts=[struct.pack(">q", 4)])
    assert "holds 288230376151711744 elements, its pickle says 4" in one_line_error(path)


LEGACY_DAMAGE = {
    "storage cut short": (["0"], [FOUR[:10]], "is cut short"),
    "storage missing": (["0"], [], "cut short"),
    "key list unlike the pickle": (["1"], [FOUR], "storage list does not match"),
}


@pytest.mark.parametrize("damage", LEGACY_DAMAGE.values(), ids=LEGACY_DAMAGE.keys())
def test_damaged_legacy_files_end_as_one_error_line(tmp_path, damage):
    keys, storages, expected = damage
    main = pkl(call(V2, legacy_storage(), num(0), tup(num(4)), tup(num(1)), NEWFALSE, NONE))
    path = legacy_file(tmp_path / "x.pt", main, keys, storages, counts=[struct.pack("<q", 4)] * len(storages))
    assert expected in one_line_error(path)


def test_legacy_header_of_another_protocol_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(999, 2) + pickle.dumps({}, 2))
    assert "protocol 999" in one_line_error(path)


def test_memo_puts_of_hand_written_pickles_are_plain_data(tmp_path):
    """BINPUT/BINGET sharing (how torch writes repeated storages) reads as the same storage."""
    body = dict_of(a=tensor(pid=storage() + BINPUT + b"\x09"), b=tensor(size=(2,), pid=BINGET + b"\x09"))
    got = read_archive(torch_zip(tmp_path / "x.pt", pkl(body)))
    assert got[0].value.untyped_storage().data_ptr() == got[1].value.untyped_storage().data_ptr()
