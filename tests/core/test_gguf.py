"""core.gguf.read_gguf_header: a real GGUF parses exactly as the gguf package reads it; every damaged one is one
ParamLensError line that starts with the file's path."""

import os
import shutil
import struct
import threading
import time
import tracemalloc

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter
from gguf.constants import GGMLQuantizationType, GGUFValueType
from hypothesis import given, settings
from hypothesis import strategies as st

from paramlens import ParamLensError
from paramlens.core.gguf import KEPT_ARRAY, GGUFHeader, read_gguf_header
from paramlens.core.resolve import PACKAGED

U8, I32, U32, U64, F32, BOOL, STR, ARR = 0, 5, 4, 10, 6, 7, 8, 9
Q8_0 = int(GGMLQuantizationType.Q8_0)


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def gstr(text):
    """A GGUF string: uint64 length, then the bytes."""
    raw = text.encode() if isinstance(text, str) else text
    return u64(len(raw)) + raw


def kv(key, vtype, payload):
    return gstr(key) + u32(vtype) + payload


def array(etype, items, payload):
    return u32(etype) + u64(items) + payload


def nested(depth):
    """An array of one array of one array ... ``depth`` arrays deep, the innermost empty."""
    inner = array(U8, 0, b"")
    for _ in range(depth - 1):
        inner = array(ARR, 1, inner)
    return inner


def tensor(name, dims, ggml_type, offset):
    return gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ggml_type) + u64(offset)


KVS = [
    kv("general.architecture", STR, gstr("llama")),
    kv("general.name", STR, gstr("tiny")),
    kv("tiny.count", U32, u32(7)),
    kv("tiny.scale", F32, struct.pack("<f", 0.5)),
    kv("tiny.flag", BOOL, b"\x01"),
    kv("tiny.ids", ARR, array(I32, 3, struct.pack("<3i", 1, -2, 3))),
    kv("tiny.words", ARR, array(STR, 2, gstr("a") + gstr("bc"))),
    kv("tiny.nested", ARR, array(ARR, 2, array(U8, 2, b"\x01\x02") + array(U8, 1, b"\x03"))),
    kv("tiny.long", ARR, array(U8, 100, bytes(100))),
]
TENSORS = [tensor("a.weight", (4, 3), 0, 0), tensor("b.weight", (8,), 1, 64), tensor("c.weight", (32, 2), Q8_0, 96)]
DATA_SIZE = 96 + 2 * 34
TINY_METADATA = {"general.architecture": "llama", "general.name": "tiny", "tiny.count": 7, "tiny.scale": 0.5,
                 "tiny.flag": True, "tiny.ids": [1, -2, 3], "tiny.words": ["a", "bc"], "tiny.nested": [[1, 2], [3]],
                 "tiny.long": ("uint8", 100)}
ARCH_VALUE_LENGTH = 24 + len(gstr("general.architecture")) + 4  # where the first value's string length sits


def gguf_bytes(kvs=KVS, tensors=TENSORS, *, magic=b"GGUF", version=3, n_tensors=None, n_kv=None, alignment=32,
               data=None):
    """A GGUF file laid out by hand: header, metadata, tensor infos, padding, then the data section."""
    head = magic + u32(version) + u64(len(tensors) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(tensors)
    head += bytes(-len(head) % alignment)
    return head + (bytes(range(256))[:DATA_SIZE] if data is None else data)


def patched(raw, at, new):
    return raw[:at] + new + raw[at + len(new):]


def write(folder, raw, name="x.gguf"):
    path = folder / name
    path.write_bytes(raw)
    return path


def refused(path, *words):
    """Reading ``path`` raises exactly one ParamLensError line starting with the path and naming ``words``."""
    with pytest.raises(ParamLensError) as e:
        read_gguf_header(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    for word in words:
        assert word in msg, msg
    return msg


@pytest.fixture(scope="module")
def real():
    return PACKAGED["smollm2"].path()


@pytest.fixture(scope="module")
def reference(real):
    """The gguf package's own reading of the real file."""
    return GGUFReader(real)


def test_real_smollm2_matches_the_gguf_package_exactly(real, reference):
    header, reader = read_gguf_header(real), reference
    assert header.version == 3 and header.architecture == "llama" and 250 < len(header.tensors) < 300
    ours = [(t.name, t.dims, t.type_name, t.offset, t.nbytes) for t in header.tensors]
    theirs = [(t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.data_offset), int(t.n_bytes))
              for t in reader.tensors]
    assert ours == theirs
    assert header.data_start == reader.data_offset
    assert all(header.data_start <= t.offset and t.end <= os.path.getsize(real) for t in header.tensors)
    embed = next(t for t in header.tensors if t.name == "token_embd.weight")
    assert embed.shape == (49152, 576) and embed.dims == (576, 49152)


def test_real_smollm2_metadata_matches_the_gguf_package(real, reference):
    header = read_gguf_header(real)
    fields = {k: f for k, f in reference.fields.items() if not k.startswith("GGUF.")}
    assert list(header.metadata) == list(fields)
    for key, field in fields.items():
        if field.types[0] == GGUFValueType.ARRAY and len(field.data) > KEPT_ARRAY:
            assert header.metadata[key] == (field.types[1].name.lower(), len(field.data)), key
        else:
            assert header.metadata[key] == field.contents(), key
    assert header.metadata["tokenizer.ggml.tokens"] == ("string", 49152)


@pytest.mark.parametrize("version", [2, 3])
def test_hand_written_file_parses_with_every_value_type(tmp_path, version):
    path = write(tmp_path, gguf_bytes(version=version))
    header = read_gguf_header(path)
    assert header.version == version and header.metadata == TINY_METADATA and header.architecture == "llama"
    start = header.data_start
    assert start % 32 == 0 and os.path.getsize(path) == start + DATA_SIZE
    assert [(t.name, t.dims, t.shape, t.type_name, t.offset - start, t.nbytes) for t in header.tensors] == [
        ("a.weight", (4, 3), (3, 4), "F32", 0, 48), ("b.weight", (8,), (8,), "F16", 64, 16),
        ("c.weight", (32, 2), (2, 32), "Q8_0", 96, 68)]
    reader = GGUFReader(path)
    assert [int(t.data_offset) for t in reader.tensors] == [t.offset for t in header.tensors]


def test_file_written_by_gguf_writer_with_custom_alignment(tmp_path):
    path = tmp_path / "w.gguf"
    writer = GGUFWriter(path, "llama")
    writer.add_custom_alignment(64)
    writer.add_array("w.big", list(range(KEPT_ARRAY + 1)))
    writer.add_array("w.small", list(range(KEPT_ARRAY)))
    writer.add_tensor("w.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.add_tensor("q.weight", np.zeros((2, 34), dtype=np.uint8), raw_dtype=GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    header = read_gguf_header(path)
    assert header.metadata["general.alignment"] == 64 and header.data_start % 64 == 0
    assert header.metadata["w.big"][1] == KEPT_ARRAY + 1 and header.metadata["w.small"] == list(range(KEPT_ARRAY))
    assert [(t.name, t.shape, t.type_name, t.offset) for t in header.tensors] == [
        (t.name, tuple(int(d) for d in reversed(t.shape)), t.tensor_type.name, int(t.data_offset))
        for t in GGUFReader(path).tensors]


def test_long_string_is_summarised_not_read(tmp_path):
    big = "x" * ((1 << 20) + 1)
    header = read_gguf_header(write(tmp_path, gguf_bytes([*KVS, kv("tiny.template", STR, gstr(big))])))
    assert header.metadata["tiny.template"] == ("string", len(big))


@pytest.mark.parametrize("cut, words", [
    (0, ["0 bytes long", "too short"]), (3, ["3 bytes long", "too short"]),
    (64, ["272 tensors", "only 40 bytes follow", "truncated"]),
    (1 << 20, ["'tokenizer.ggml.", "runs past the end of the file", "truncated"]),
    (None, ["'output_norm.weight'", "runs past the end of the file", "truncated"])])
def test_real_file_cut_short(tmp_path, real, reference, cut, words):
    if cut is None:  # just before the data of the last tensor
        cut = max(int(t.data_offset) for t in reference.tensors)
    path = tmp_path / "cut.gguf"
    with open(real, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
        dst.truncate(cut)
    refused(path, *words)


TINY = gguf_bytes()
BROKEN = {
    "key length 2^60": (patched(TINY, 24, u64(1 << 60)), ["metadata entry 0 key", str(1 << 60), "past the end"]),
    "string value past the end": (patched(TINY, ARCH_VALUE_LENGTH, u64(len(TINY))), ["'general.architecture'",
                                                                                    "past the end"]),
    "n_tensors 2^40": (gguf_bytes(n_tensors=1 << 40), [f"{1 << 40} tensors"]),
    "n_kv 2^40": (gguf_bytes(n_kv=1 << 40), [f"{1 << 40} metadata entries"]),
    "n_kv one too many": (gguf_bytes(tensors=[], n_kv=len(KVS) + 1, alignment=1, data=b""), ["metadata entr"]),
    "unknown value type": (gguf_bytes([*KVS, kv("tiny.odd", 13, b"")]), ["'tiny.odd'", "unknown type 13"]),
    "unknown array element type": (gguf_bytes([kv("odd", ARR, array(77, 0, b""))]), ["unknown element type 77"]),
    "array longer than the file": (gguf_bytes([kv("odd", ARR, array(U64, 1 << 61, b""))]), ["'odd'", "past the end"]),
    "arrays nested too deep": (gguf_bytes([kv("deep", ARR, nested(9))]), ["nests arrays more than 8 deep"]),
    "unknown tensor type": (gguf_bytes(tensors=[tensor("a.weight", (4,), 99, 0)]), ["'a.weight'", "ggml type 99"]),
    "tensor offset past the end": (gguf_bytes(tensors=[*TENSORS[:2], tensor("c.weight", (32, 2), Q8_0, 1 << 20)]),
                                   ["'c.weight'", "past the end of the file"]),
    "overlapping tensors": (gguf_bytes(tensors=[*TENSORS[:2], tensor("c.weight", (32, 2), Q8_0, 32)]),
                            ["'a.weight'", "'c.weight'", "overlap"]),
    "misaligned tensor": (gguf_bytes(tensors=[tensor("a.weight", (4,), 0, 8)]), ["not a multiple of the alignment"]),
    "five dimensions": (gguf_bytes(tensors=[tensor("a.weight", (1, 1, 1, 1, 1), 0, 0)]), ["5 dimensions"]),
    "partial block": (gguf_bytes(tensors=[tensor("c.weight", (31, 2), Q8_0, 0)]), ["not a multiple of the Q8_0"]),
    "duplicate key": (gguf_bytes([*KVS, KVS[2]]), ["'tiny.count'", "appears twice"]),
    "duplicate tensor": (gguf_bytes(tensors=[*TENSORS, TENSORS[0]]), ["'a.weight'", "appears twice"]),
    "key not UTF-8": (gguf_bytes([kv(b"\xff\xfe", U8, b"\x00")]), ["not valid UTF-8"]),
    "alignment not a power of two": (gguf_bytes([kv("general.alignment", U32, u32(24))]), ["power of two"]),
    "alignment of the wrong type": (gguf_bytes([kv("general.alignment", U64, u64(32))]), ["uint64", "uint32"]),
    "wrong magic": (b"PK\x03\x04" + TINY[4:], ["not a GGUF file", "PK"]),
    "version 1": (gguf_bytes(version=1), ["version 1", "obsolete"]),
    "version 99": (gguf_bytes(version=99), ["version 99", "2 and 3"]),
    "big-endian": (patched(TINY, 4, struct.pack(">I", 3)), ["big-endian", "gguf-convert-endian"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_malformed_file_is_one_error_line(tmp_path, case):
    raw, words = BROKEN[case]
    refused(write(tmp_path, raw), *words)


def test_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "x.gguf"
    os.mkfifo(path)
    outcome = []

    def attempt():
        try:
            read_gguf_header(path)
        except ParamLensError as e:
            outcome.append(str(e))

    start = time.monotonic()
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=1.0)
    assert not worker.is_alive() and time.monotonic() - start < 1.0
    assert outcome == [f"{path}: is a FIFO, not a GGUF file"]


def test_folder_device_and_missing_file_are_refused(tmp_path):
    (tmp_path / "d.gguf").mkdir()
    refused(tmp_path / "d.gguf", "is a folder")
    refused(tmp_path / "none.gguf", "no such file")
    if os.path.exists("/dev/null"):
        refused("/dev/null", "character device")


HEADER_END = len(TINY) - DATA_SIZE
BIG = st.sampled_from([u64(1 << 40), u64(1 << 60), u64(2**64 - 1), u32(2**32 - 1), u32(13)])
MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, HEADER_END - 1), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, HEADER_END - 1), st.binary(min_size=1, max_size=8) | BIG),
    st.tuples(st.just("cut"), st.integers(0, len(TINY)), st.none()),
    st.tuples(st.just("insert"), st.integers(0, HEADER_END), st.binary(min_size=1, max_size=16) | BIG),
)


def mutate(raw, kind, at, arg):
    if kind == "flip":
        return patched(raw, at, bytes([raw[at] ^ (1 << arg)])) if at < len(raw) else raw
    if kind == "set":
        return patched(raw, at, arg)[:max(len(raw), at + len(arg))]
    if kind == "cut":
        return raw[:at]
    return raw[:at] + arg + raw[at:]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("mutated") / "m.gguf"


@settings(deadline=1000, max_examples=300)
@given(st.lists(MUTATIONS, min_size=1, max_size=4))
def test_mutated_header_is_a_header_or_one_error_line_in_bounded_memory(scratch, mutations):
    raw = TINY
    for mutation in mutations:
        raw = mutate(raw, *mutation)
    scratch.write_bytes(raw)
    tracemalloc.start()
    try:
        header = read_gguf_header(scratch)
    except ParamLensError as e:
        header = None
        assert str(e).startswith(f"{scratch}: ") and "\n" not in str(e)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 2 << 20
    if header is not None:
        assert isinstance(header, GGUFHeader)
        spans = sorted((t.offset, t.end) for t in header.tensors if t.nbytes)
        assert all(header.data_start <= t.offset and t.end <= len(raw) for t in header.tensors)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
