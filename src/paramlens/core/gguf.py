"""Read and validate the header of a GGUF file without trusting any count, length or offset in it.

A GGUF file (little-endian, versions 2 and 3) is::

    "GGUF"  uint32 version  uint64 n_tensors  uint64 n_kv
    n_kv x      (string key, uint32 value type, value)
    n_tensors x (string name, uint32 n_dims, uint64 dims[n_dims], uint32 ggml type, uint64 offset)
    padding to the alignment (``general.alignment``, default 32), then the tensor data section

where a string is a uint64 byte length followed by UTF-8 bytes, and ``offset`` is relative to the data
section. :func:`read_gguf_header` parses this with ``struct`` over bounded reads: every count and length
is checked against the bytes left in the file before anything is read or allocated, so a damaged or hostile
file costs at most time and memory in proportion to its real size, and every problem becomes one
:class:`~paramlens.errors.ParamLensError` line that starts with the file's path. Tensor data is never read.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from paramlens.errors import ParamLensError

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4
_MAX_NAME = 65535
_MAX_NESTING = 8
KEPT_ARRAY = 64
KEPT_STRING = 1 << 20
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_STRING, _ARRAY = 8, 9
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_SCALARS = {code: struct.Struct(fmt) for code, fmt in _SCALAR_FORMATS.items()}
_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32", 7: "bool",
               8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}
# Fewest bytes a value of each type takes in the file: bounds how many values the remaining bytes can hold.
_MIN_SIZE = {**{code: s.size for code, s in _SCALARS.items()}, _STRING: 8, _ARRAY: 12}
_MIN_KV = 8 + 4 + 1
_MIN_TENSOR_INFO = 8 + 4 + 4 + 8
_TRUNCATED = "the file is truncated or corrupt; download or convert it again"
_INVALID = "the file is damaged or was written by a faulty tool; convert the model again"


@dataclass(frozen=True)
class GGUFTensorInfo:
    """Where one tensor's data lies in a GGUF file, and how to read it.

    Attributes:
        name: the tensor's GGUF name (``"blk.0.attn_q.weight"``).
        dims: the shape as GGUF stores it, fastest-varying dimension first (``(cols, rows)`` for a matrix).
        type_name: the ggml type (``"F32"``, ``"Q4_1"``, ...).
        offset: absolute byte offset of the tensor's data in the file.
        nbytes: size of the tensor's data in bytes.
    """

    name: str
    dims: tuple[int, ...]
    type_name: str
    offset: int
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape in torch order (``(rows, cols)`` for a matrix)."""
        return tuple(reversed(self.dims))

    @property
    def end(self) -> int:
        """Absolute byte offset just past the tensor's data."""
        return self.offset + self.nbytes


@dataclass
class GGUFHeader:
    """The parsed and validated header of a GGUF file.

    Attributes:
        path: the file.
        version: GGUF version (2 or 3).
        metadata: key -> value, in file order. Integers, floats, bools and strings are Python values; arrays of up
            to ``KEPT_ARRAY`` elements are lists (nested arrays are nested lists). Arrays of more elements and
            strings longer than ``KEPT_STRING`` bytes are kept as ``(type name, length)``, unread
            (``("string", 49152)`` for a vocabulary).
        tensors: the tensors, in file order.
        data_start: absolute offset of the tensor data section.
    """

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[GGUFTensorInfo]
    data_start: int

    @property
    def architecture(self) -> str | None:
        """``general.architecture`` (``"llama"``), or None when missing or not a string."""
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None


def _show(name: str) -> str:
    """A name from the file, quoted, shortened and with control characters escaped, safe for a one-line message."""
    return repr(name if len(name) <= 80 else name[:80] + "...")


class _Cursor:
    """Reads a file front to back, refusing any read that would run past its end."""

    def __init__(self, path: Path, file: BinaryIO, size: int):
        self.path, self.file, self.size, self.pos = path, file, size, 0

    def fail(self, what: str, fix: str = _INVALID) -> ParamLensError:
        """The error for this file: ``"<path>: <what>; <fix>"``."""
        return ParamLensError(f"{self.path}: {what}; {fix}" if fix else f"{self.path}: {what}")

    def need(self, n: int, what: str) -> None:
        """Check that ``n`` more bytes exist in the file before anything that size is read or allocated."""
        if n > self.size - self.pos:
            raise self.fail(f"{what} ({n} bytes at offset {self.pos}) runs past the end of the file ({self.size} "
                            f"bytes)", _TRUNCATED)

    def read(self, n: int, what: str) -> bytes:
        """The next ``n`` bytes."""
        self.need(n, what)
        try:
            data = self.file.read(n)
        except OSError as e:
            raise self.fail(f"cannot read {what} at offset {self.pos}: {e.strerror or e}", "") from e
        if len(data) != n:
            raise self.fail(f"{what}: the file shrank while being read", "")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        """Step over the next ``n`` bytes without reading them."""
        self.need(n, what)
        self.file.seek(n, os.SEEK_CUR)
        self.pos += n

    def unpack(self, fmt: struct.Struct, what: str) -> Any:
        """The next value in format ``fmt``."""
        return fmt.unpack(self.read(fmt.size, what))[0]

    def name(self, what: str) -> str:
        """A metadata key or tensor name: a string of at most ``_MAX_NAME`` bytes of valid UTF-8."""
        n = self.unpack(_U64, f"{what} length")
        if n > _MAX_NAME:
            self.need(n, what)
            raise self.fail(f"{what} is {n} bytes long (at most {_MAX_NAME} allowed)")
        try:
            return self.read(n, what).decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"{what} is not valid UTF-8") from e

    def string(self, what: str, keep: bool) -> str | tuple[str, int] | None:
        """A string value; longer than ``KEPT_STRING`` bytes it is skipped and summarised as ``("string", length)``."""
        n = self.unpack(_U64, f"{what} length")
        if keep and n <= KEPT_STRING:
            return self.read(n, what).decode("utf-8", errors="replace")
        self.skip(n, what)
        return ("string", n) if keep else None


def _value(cur: _Cursor, vtype: int, what: str, depth: int, keep: bool) -> Any:
    """One metadata value of type ``vtype``; None when ``keep`` is false (the value is only stepped over)."""
    scalar = _SCALARS.get(vtype)
    if scalar is not None:
        if keep:
            return cur.unpack(scalar, what)
        cur.skip(scalar.size, what)
        return None
    if vtype == _STRING:
        return cur.string(what, keep)
    if vtype == _ARRAY:
        return _array(cur, what, depth + 1, keep)
    raise cur.fail(f"{what} has unknown type {vtype}")


def _array(cur: _Cursor, what: str, depth: int, keep: bool) -> Any:
    """An array value: a list when short, else skipped and summarised as ``(element type name, length)``."""
    if depth > _MAX_NESTING:
        raise cur.fail(f"{what} nests arrays more than {_MAX_NESTING} deep")
    etype = cur.unpack(_U32, f"{what} element type")
    count = cur.unpack(_U64, f"{what} length")
    if etype not in _MIN_SIZE:
        raise cur.fail(f"{what} has unknown element type {etype}")
    cur.need(count * _MIN_SIZE[etype], f"{what}: {count} elements of type {_TYPE_NAMES[etype]}")
    if keep and count <= KEPT_ARRAY:
        return [_value(cur, etype, f"{what}[{i}]", depth, True) for i in range(count)]
    if etype in _SCALARS:
        cur.skip(count * _SCALARS[etype].size, what)
    else:
        for i in range(count):
            _value(cur, etype, f"{what}[{i}]", depth, False)
    return (_TYPE_NAMES[etype], count) if keep else None


def _preamble(cur: _Cursor) -> tuple[int, int, int]:
    """Magic, version and the two counts: ``(version, n_tensors, n_kv)``."""
    if cur.size < 4:
        raise cur.fail(f"only {cur.size} bytes long, too short for a GGUF header", _TRUNCATED)
    magic = cur.read(4, "magic")
    if magic != _MAGIC:
        raise cur.fail(f"not a GGUF file (starts with {magic!r}, not {_MAGIC!r})", "")
    raw = cur.read(4, "version")
    version, swapped = struct.unpack("<I", raw)[0], struct.unpack(">I", raw)[0]
    if version & 0xFFFF == 0 and swapped in _VERSIONS:
        raise cur.fail("the file is big-endian; ParamLens reads little-endian GGUF only",
                       "convert it with gguf-convert-endian (from the gguf package) to little-endian")
    if version not in _VERSIONS:
        old = " (GGUF v1 is obsolete)" if version == 1 else ""
        raise cur.fail(f"unsupported GGUF version {version}{old}; ParamLens reads versions 2 and 3",
                       "convert the model again with a current llama.cpp")
    n_tensors = cur.unpack(_U64, "tensor count")
    n_kv = cur.unpack(_U64, "metadata count")
    least = n_tensors * _MIN_TENSOR_INFO + n_kv * _MIN_KV
    if least > cur.size - cur.pos:
        raise cur.fail(f"the header claims {n_tensors} tensors and {n_kv} metadata entries, which take at least "
                       f"{least} bytes, but only {cur.size - cur.pos} bytes follow", _TRUNCATED)
    return version, n_tensors, n_kv


def _metadata(cur: _Cursor, n_kv: int) -> dict[str, Any]:
    """The ``n_kv`` metadata entries as key -> value; keys are unique."""
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.name(f"metadata entry {i} key")
        what = f"metadata entry {i} ({_show(key)})"
        if key in metadata:
            raise cur.fail(f"{what}: the key appears twice")
        vtype = cur.unpack(_U32, f"{what} value type")
        metadata[key] = _value(cur, vtype, f"{what} value", 0, True)
        if key == "general.alignment":
            _check_alignment(cur, vtype, metadata[key])
    return metadata


def _check_alignment(cur: _Cursor, vtype: int, value: Any) -> None:
    """``general.alignment`` must be a uint32 power of two."""
    if vtype != 4:
        raise cur.fail(f"general.alignment has type {_TYPE_NAMES[vtype]}; it must be a uint32 power of two")
    if value == 0 or value & (value - 1):
        raise cur.fail(f"general.alignment is {value}; it must be a power of two")


def _ggml_sizes(cur: _Cursor) -> dict[int, tuple[str, int, int]]:
    """ggml type code -> (name, elements per block, bytes per block), from the gguf package."""
    try:
        from gguf.constants import GGML_QUANT_SIZES
    except ImportError as e:
        raise cur.fail("reading GGUF tensor types needs the 'gguf' package", "pip install gguf") from e
    return {int(t): (t.name, block, size) for t, (block, size) in GGML_QUANT_SIZES.items()}


def _tensor_info(cur: _Cursor, i: int, sizes: dict[int, tuple[str, int, int]]) -> GGUFTensorInfo:
    """Tensor info ``i``, with its offset still relative to the data section."""
    name = cur.name(f"tensor {i} name")
    what = f"tensor {i} ({_show(name)})"
    n_dims = cur.unpack(_U32, f"{what} dimension count")
    if n_dims > _MAX_DIMS:
        raise cur.fail(f"{what} has {n_dims} dimensions (at most {_MAX_DIMS} allowed)")
    dims = struct.unpack(f"<{n_dims}Q", cur.read(8 * n_dims, f"{what} shape"))
    code = cur.unpack(_U32, f"{what} type")
    offset = cur.unpack(_U64, f"{what} offset")
    if code not in sizes:
        raise cur.fail(f"{what} has unknown ggml type {code}", "a newer gguf package may know it: pip install -U gguf")
    type_name, block, size = sizes[code]
    row = dims[0] if dims else 1
    if row % block:
        raise cur.fail(f"{what}: its first dimension {row} is not a multiple of the {type_name} block size {block}")
    n = 1
    for d in dims:
        n *= d
    return GGUFTensorInfo(name, dims, type_name, offset, n // block * size)


def _tensor_infos(cur: _Cursor, n_tensors: int) -> list[GGUFTensorInfo]:
    """The ``n_tensors`` tensor infos; names are unique."""
    sizes = _ggml_sizes(cur)
    infos, names = [], set()
    for i in range(n_tensors):
        info = _tensor_info(cur, i, sizes)
        if info.name in names:
            raise cur.fail(f"tensor {i} ({_show(info.name)}): the name appears twice")
        names.add(info.name)
        infos.append(info)
    return infos


def _place(cur: _Cursor, infos: list[GGUFTensorInfo], alignment: int) -> tuple[int, list[GGUFTensorInfo]]:
    """The data section's start, and the tensors with absolute offsets, each inside the file, none overlapping."""
    data_start = -(-cur.pos // alignment) * alignment
    placed = []
    for info in infos:
        if info.offset % alignment:
            raise cur.fail(f"tensor {_show(info.name)}: data offset {info.offset} is not a multiple of the "
                           f"alignment {alignment}")
        tensor = GGUFTensorInfo(info.name, info.dims, info.type_name, data_start + info.offset, info.nbytes)
        if tensor.end > cur.size:
            raise cur.fail(f"tensor {_show(info.name)}: its data (bytes {tensor.offset}..{tensor.end}) runs past the "
                           f"end of the file ({cur.size} bytes)", _TRUNCATED)
        placed.append(tensor)
    ordered = sorted((t for t in placed if t.nbytes), key=lambda t: t.offset)
    for a, b in zip(ordered, ordered[1:]):
        if b.offset < a.end:
            raise cur.fail(f"tensors {_show(a.name)} (bytes {a.offset}..{a.end}) and {_show(b.name)} (bytes "
                           f"{b.offset}..{b.end}) overlap")
    return data_start, placed


_KINDS = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
          stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}


def _refuse_unless_regular(path: Path, mode: int) -> None:
    """Refuse a folder, FIFO, device or socket: reading one could block or never end."""
    if not stat.S_ISREG(mode):
        kind = next((kind for is_kind, kind in _KINDS.items() if is_kind(mode)), "not a regular file")
        raise ParamLensError(f"{path}: is {kind}, not a GGUF file")


def _open_regular(path: Path) -> tuple[int, int]:
    """An open descriptor on ``path`` and its size. The type is checked before opening, then again on the open
    descriptor (the path may have been swapped in between), and the open itself never blocks."""
    try:
        _refuse_unless_regular(path, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as e:
        raise ParamLensError(f"{path}: no such file") from e
    except OSError as e:
        raise ParamLensError(f"{path}: cannot open: {e.strerror or e}") from e
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        _refuse_unless_regular(path, info.st_mode)
    return fd, info.st_size


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse and validate the header of a GGUF file without reading its tensor data.

    Validated: the magic; the version (2 or 3; big-endian files are refused); every count and length against the
    bytes left in the file; value and ggml types are known; keys and tensor names are UTF-8 and unique; arrays nest
    at most 8 deep; ``general.alignment`` is a uint32 power of two; tensors have at most 4 dimensions, a first
    dimension that is a whole number of blocks, and aligned data offsets; every tensor's data lies inside the file
    and no two overlap. Folders, FIFOs, devices and sockets are refused before being opened.

    Raises:
        ParamLensError: ``"<path>: <what is wrong>; <fix>"`` for anything that is not a valid GGUF file.
    """
    path = Path(path)
    fd, size = _open_regular(path)
    with open(fd, "rb", buffering=1 << 16) as file:
        cur = _Cursor(path, file, size)
        version, n_tensors, n_kv = _preamble(cur)
        metadata = _metadata(cur, n_kv)
        infos = _tensor_infos(cur, n_tensors)
        data_start, tensors = _place(cur, infos, metadata.get("general.alignment", _DEFAULT_ALIGNMENT))
    return GGUFHeader(path, version, metadata, tensors, data_start)
