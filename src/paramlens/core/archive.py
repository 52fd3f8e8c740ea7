"""Read a ``torch.save`` checkpoint without running any of its pickled code, in bounded time and memory.

Two formats are read:

- the zip archive of torch >= 1.6: ``<prefix>/data.pkl`` (a pickle describing the saved objects),
  ``<prefix>/data/<key>`` (the raw bytes of each storage) and ``<prefix>/byteorder`` (their byte order);
- the legacy stream of torch < 1.6 (``_use_new_zipfile_serialization=False``): pickles of a magic number, a
  protocol version and system information, the object pickle, the list of storage keys, then per key an int64
  element count and the raw little-endian bytes.

Anything else (the tar format of torch < 0.4, text, a bare pickle, other binary data) is refused with one line
saying what the file is not. Non-regular files (folders, FIFOs, devices) are refused before they are opened.

No code from the file runs. Pickles are interpreted by Python's pure-Python unpickler, whose memo is a dict (the
C unpickler grows an array to the largest memo index, so a 9-byte pickle can make it touch gigabytes). Every
global the pickle names becomes an inert stand-in that records its arguments and calls, except tensor rebuild
functions, storage types, dtypes and plain containers, which are interpreted by functions of this module that
only check their arguments and slice bytes already read. Pickle opcodes that mutate objects (BUILD, APPEND,
SETITEM, ADDITEMS) act only on containers and stand-ins; calls take only tuple arguments, and constructors
iterate only plain containers, never tensors. Any failure while interpreting a pickle is reported as one
:class:`ParamLensError` line.

Bounds, for a file of ``S`` bytes:

- zip records: the uncompressed sizes the zip directory declares for the records read (``data.pkl``, the byte
  order, each storage once) must total at most ``S + 64 MiB``, checked before a record is opened; torch stores
  records uncompressed, so a genuine archive stays under ``S`` and a zip bomb is refused before it inflates.
  Each record is read in 16 MiB chunks and never past its declared size (a directory that understates a size
  fails its CRC check instead of inflating);
- legacy storages: allocated only while the bytes they declare fit in ``S``; each count is checked against
  the pickle and each storage must be present in full;
- tensors: sizes, strides and offsets are non-negative 64-bit integers, at most 64 dimensions, and every element
  lies inside the storage (``offset + sum((size - 1) * stride) < storage elements``). The logical bytes of
  all tensors (elements x element size) are summed in file order; a tensor with more elements than its storage
  (stride 0 or overlapping) is refused once that sum passes ``4 x S + 64 MiB``: a tensor is larger than its
  storage only while all tensors together stay within that budget;
- the object graph: tuples nest at most 256 deep (hashing them recurses in C); at most 64 distinct keys of one
  dict or set share a hash (a file can write thousands of big ints or tuples with one hash, which makes
  building the dict quadratic); memo indices stay below 2**32; the walk that collects tensors is iterative,
  visits every container once (first name wins) and refuses nesting deeper than 256 levels and tensor names
  longer than 4096 characters; a pickle names at most 10,000 distinct globals. Memory for the graph is linear
  in the pickle's size, and so is time.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import functools
import io
import json
import math
import os
import pickle
import re
import reprlib
import stat
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import torch
from torch import Tensor

from paramlens.core.loading import file_mode
from paramlens.errors import ParamLensError

_MIB = 1 << 20
_SLACK = 64 * _MIB  # bytes any file may use beyond its own size: records read, logical tensor bytes
_EXPANSION = 4  # logical tensor bytes allowed per file byte
_MAX_DEPTH = 256  # nesting of containers (walk, plain) and of tuples
_MAX_DIMS = 64
_MAX_NAME = 4096  # characters in one tensor name
_MAX_GLOBALS = 10_000  # distinct globals one pickle may name
_MAX_PLAIN = 1_000_000  # values plain() may produce
_MAX_SAME_HASH = 64  # distinct keys of one dict or set that may share a hash
_CHUNK = 16 * _MIB
_HEAD = 512  # bytes read to tell formats apart
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MODULE_SLOTS = ("_parameters", "_buffers", "_modules")

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
    "QInt8Storage": torch.int8,
    "QUInt8Storage": torch.uint8,
    "QInt32Storage": torch.int32,
    "QUInt4x2Storage": torch.uint8,
    "QUInt2x4Storage": torch.uint8,
}
_STORAGE_MODULES = ("torch", "torch.cuda", "torch.storage")
_TORCH_DTYPES = {name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)}
_TORCH_CONSTANTS = {
    name for name, value in vars(torch).items()
    if isinstance(value, (torch.dtype, torch.layout, torch.qscheme, torch.memory_format))
}
_PLAIN_GLOBALS = {
    "collections.OrderedDict", "collections.Counter", "builtins.dict", "builtins.set", "builtins.frozenset",
    "builtins.slice", "builtins.complex", "builtins.bytes", "builtins.bytearray", "_codecs.encode",
    "torch.Size", "torch.device", "torch.Tensor", "torch.nn.parameter.Parameter", "torch.serialization._get_layout",
    "torch._tensor._rebuild_from_type", "torch._tensor._rebuild_from_type_v2",
    "numpy.dtype", "numpy.ndarray", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
}
_NUMPY_CODE = re.compile(r"[biufc]\d{1,2}")
_ENCODINGS = {"latin1": "latin-1", "latin-1": "latin-1", "utf-8": "utf-8", "utf8": "utf-8"}
_REPR = reprlib.Repr()
_DROP = object()  # what plain() leaves out
_LEAVES = (str, bytes, bytearray, int, float, complex, type(None), slice, torch.dtype, type)


@dataclass(frozen=True)
class ArchiveTensor:
    """One tensor found in a checkpoint.

    Attributes:
        name: dotted path to the tensor in the pickled object (``"model.0.weight"``); the attribute
            slots of pickled ``nn.Module`` objects (``_parameters``, ``_buffers``, ``_modules``) are left out.
        value: the tensor, on CPU, with its saved shape, strides and dtype.
    """

    name: str
    value: Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.value.dtype


@dataclass
class Archive:
    """A checkpoint read by :func:`open_archive`.

    Attributes:
        path: the file.
        format: ``"torch zip"`` or ``"torch legacy"``.
        root: the saved object graph: dict/list/tuple/set/str/bytes/int/float/bool/None/Tensor/torch.dtype;
            ``torch.Size`` reads as a tuple, ``torch.device`` as its string, numpy scalars as Python numbers,
            and any other class or function the file names as an inert stand-in.
        tensors: every tensor reachable from ``root``, in file order, each once.
        globals: qualified names of every global the pickle names that is not plain tensor data (tensor
            rebuild functions, storages, dtypes, dicts, sets, sizes, devices, numpy scalars and arrays), in
            order of first use. Empty for a state dict; a whole pickled model lists its classes.
    """

    path: Path
    format: str
    root: Any = field(repr=False)
    tensors: list[ArchiveTensor] = field(repr=False)
    globals: list[str]
    _module_names: list[str] = field(default_factory=list, repr=False)

    @property
    def modules(self) -> list[str]:
        """Dotted paths of pickled objects that look like whole ``nn.Module`` instances, root first (``""``)."""
        return list(self._module_names)

    @property
    def pickles_code(self) -> bool:
        """Whether the pickle names anything but plain tensor data (unpickling it normally would run code)."""
        return bool(self.globals)


class _Opaque:
    """Stand-in for a class or function the pickle names: building, calling or filling one only records.

    ``_Unpickler.find_class`` makes a subclass per global name, so REDUCE (``f(*args)``), NEWOBJ
    (``cls.__new__(cls, *args)``), BUILD (state), SETITEM and APPEND all land here; calling an instance (a
    ``getattr(...)(...)`` chain) returns a :class:`_Call` record.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Opaque:  # noqa: PYI034 - subclasses are made at run time
        self = object.__new__(cls)
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, {}
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Call:
        return _Call(self, *args, **kwargs)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.items[len(self.items)] = value

    def extend(self, values: list) -> None:
        for value in values:
            self.append(value)

    def __repr__(self) -> str:
        return f"<stand-in {self.qualname}>"


class _Call(_Opaque):
    """A recorded call of a stand-in instance: ``args`` is ``(callee, *arguments)``."""

    qualname = "call"


class _NumpyDtype(_Opaque):
    """A pickled ``numpy.dtype``: ``args[0]`` is its code (``"f8"``), BUILD state ``[1]`` its byte order."""

    qualname = "numpy.dtype"

    def numpy(self) -> np.dtype | None:
        """The numeric dtype this record describes, or None for anything else (objects, records, strings)."""
        code = self.args[0] if self.args else None
        order = self.state[1] if isinstance(self.state, tuple) and len(self.state) > 1 else "="
        if not (isinstance(code, str) and _NUMPY_CODE.fullmatch(code) and order in ("<", ">", "|", "=")):
            return None
        try:
            return np.dtype(code).newbyteorder("=" if order == "|" else order)
        except TypeError:
            return None


class _NumpyScalar(_Opaque):
    """A pickled numpy scalar whose dtype or bytes could not be decoded."""

    qualname = "numpy.core.multiarray.scalar"


class _Dict(dict):
    """A pickled ``OrderedDict`` (or dict, Counter): a dict, plus the attributes BUILD gave it in ``state``
    (a state dict's ``{"_metadata": ...}``)."""

    state: Any = None


class _Storage:
    """Bytes of one saved storage: ``raw`` (1-D uint8, shared by every tensor on it) and its saved dtype."""

    def __init__(self, dtype: torch.dtype, raw: Tensor):
        self.dtype, self.raw = dtype, raw

    def typed(self, dtype: torch.dtype) -> Tensor:
        """The bytes as a 1-D tensor of ``dtype`` (no copy)."""
        if self.raw.numel() % dtype.itemsize:
            raise pickle.UnpicklingError(f"a storage of {self.raw.numel()} bytes read as {dtype}")
        return self.raw.view(dtype)


def _args(args: Any) -> tuple:
    if type(args) is not tuple:
        raise pickle.UnpicklingError(f"call arguments are a {type(args).__name__}, not a tuple")
    return args


def _index(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 1 << 63:
        raise pickle.UnpicklingError(f"{_REPR.repr(value)} is not a non-negative 64-bit integer")
    return value


def _dims(value: Any) -> tuple[int, ...]:
    if type(value) not in (tuple, list) or len(value) > _MAX_DIMS:
        raise pickle.UnpicklingError(f"tensor size or stride {_REPR.repr(value)} is not a tuple of <= 64 integers")
    return tuple(_index(v) for v in value)


def _iterable(value: Any) -> Any:
    """``value`` if a constructor may iterate it: a plain container, never a tensor or stand-in."""
    if type(value) not in (list, tuple, set, frozenset, dict, _Dict):
        raise pickle.UnpicklingError(f"a container built from a {type(value).__name__}")
    return value


def _hash_is_fixed(key: Any) -> bool:
    """Whether a file cannot write many distinct keys like ``key`` with one hash: strings and bytes (hashed with a
    random seed), ints below the hash modulus (their own hash), objects hashed by identity."""
    kind = type(key)
    return kind in (str, bytes, bool, type(None)) or (kind is int and abs(key) < sys.hash_info.modulus) or \
        isinstance(key, (Tensor, _Opaque, _Storage, type))


class _HashGuard:
    """Refuses more than 64 distinct keys sharing one hash in one dict or set.

    A file can write thousands of distinct tuples or big ints (``k * (2**61 - 1) + 5``) with one hash, and each
    insertion then compares the new key with all the others: quadratic time from a linear file.
    """

    def __init__(self) -> None:
        self.counts: dict[int, tuple[Any, dict[int, int]]] = {}  # id(container) -> (container, hash -> keys)

    def check(self, container: Any, keys: Any) -> None:
        """Count ``keys`` about to go into ``container`` (each written once by a pickler)."""
        for key in keys:
            if _hash_is_fixed(key):
                continue
            counts = self.counts.setdefault(id(container), (container, {}))[1]
            digest = hash(key)
            counts[digest] = counts.get(digest, 0) + 1
            if counts[digest] > _MAX_SAME_HASH:
                raise pickle.UnpicklingError(f"more than {_MAX_SAME_HASH} keys of one dict or set share a hash")


def _new_dict(guard: _HashGuard, *args: Any) -> _Dict:
    """``OrderedDict()``, ``dict(mapping)``, ``Counter({...})``: from nothing, a dict or a list of pairs."""
    if len(args) > 1:
        raise pickle.UnpicklingError("a dict built from more than one argument")
    out = _Dict()
    source = _iterable(args[0]) if args else {}
    if isinstance(source, dict):
        out.update(source)
        return out
    if any(type(pair) not in (tuple, list) or len(pair) != 2 for pair in source):
        raise pickle.UnpicklingError("a dict built from something other than pairs")
    guard.check(source, (pair[0] for pair in source))
    out.update(source)
    return out


def _new_set(guard: _HashGuard, items: Any = ()) -> set:
    guard.check(_iterable(items), items)
    return set(items)


def _new_frozenset(guard: _HashGuard, items: Any = ()) -> frozenset:
    guard.check(_iterable(items), items)
    return frozenset(items)


def _new_complex(*args: Any) -> complex:
    if len(args) > 2 or any(type(a) not in (int, float) and not (type(a) is str and len(a) < 100) for a in args):
        raise pickle.UnpicklingError("complex() of something other than numbers")
    return complex(*args)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode(text, "latin1")``: how protocol 2 pickles bytes."""
    if type(text) is not str or encoding not in _ENCODINGS:
        raise pickle.UnpicklingError("_codecs.encode of something other than text in latin-1 or utf-8")
    return text.encode(_ENCODINGS[encoding])


def _new_slice(*args: Any) -> slice:
    """``slice(start, stop, step)`` of ints or None (hashing a slice hashes its parts: they must be flat)."""
    if not 1 <= len(args) <= 3 or any(a is not None and type(a) is not int for a in args):
        raise pickle.UnpicklingError("slice() of something other than integers")
    return slice(*args)


def _new_bytes(*args: Any) -> bytes:
    if len(args) == 2:
        return _encode(*args)
    if not args:
        return b""
    if len(args) == 1 and type(args[0]) in (bytes, bytearray, list, tuple):
        return bytes(args[0])
    raise pickle.UnpicklingError("bytes() of something other than bytes or a list of integers")


def _new_bytearray(*args: Any) -> bytearray:
    return bytearray(_new_bytes(*args))


def _new_size(values: Any = ()) -> tuple[int, ...]:
    """``torch.Size(values)``, read as a plain tuple."""
    if type(values) not in (tuple, list) or any(type(v) is not int for v in values):
        raise pickle.UnpicklingError("torch.Size of something other than integers")
    return tuple(values)


def _new_device(*args: Any) -> str:
    """``torch.device("cuda", 0)``, read as its string (``"cuda:0"``); no device is touched."""
    if not 1 <= len(args) <= 2 or any(type(a) not in (str, int) for a in args):
        raise pickle.UnpicklingError("torch.device of something other than a name and an index")
    return str(torch.device(*args))


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: a Python number for numeric dtypes, else a stand-in."""
    np_dtype = dtype.numpy() if isinstance(dtype, _NumpyDtype) else None
    if np_dtype is None or type(data) is not bytes or len(data) != np_dtype.itemsize:
        return _NumpyScalar(dtype, data)
    return np.frombuffer(data, np_dtype, count=1)[0].item()


_CONTAINERS: dict[str, Callable] = {  # plain containers: called with the unpickler's hash guard first
    "collections.OrderedDict": _new_dict,
    "collections.Counter": _new_dict,
    "builtins.dict": _new_dict,
    "builtins.set": _new_set,
    "builtins.frozenset": _new_frozenset,
}
_PLAIN_OBJECTS: dict[str, Any] = {
    "builtins.slice": _new_slice,
    "builtins.complex": _new_complex,
    "builtins.bytes": _new_bytes,
    "builtins.bytearray": _new_bytearray,
    "_codecs.encode": _encode,
    "torch.Size": _new_size,
    "torch.device": _new_device,
    "numpy.dtype": _NumpyDtype,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
}


def _size_text(n: int) -> str:
    """``n`` bytes for a message: ``"800 B"``, ``"68.1 MB"``."""
    if n >= 10**18:
        return "over 1 EB"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000:
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} EB"


def _short(error: BaseException) -> str:
    """One line naming an exception, at most about 200 characters."""
    try:
        text = _REPR.repr(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    except Exception:  # noqa: BLE001 - str() of a malformed object may fail in any way
        text = ""
    text = " ".join(text.split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _TensorBuilder:
    """Interprets tensor rebuild calls: checks each tensor against its storage and the logical budget.

    ``limit`` is ``4 x file size + 64 MiB`` bytes; ``logical`` sums elements x element size of every tensor built.
    """

    def __init__(self, path: Path, file_size: int):
        self.path, self.limit, self.logical = path, _EXPANSION * file_size + _SLACK, 0

    def v1(self, storage: Any, offset: Any, size: Any, stride: Any) -> Tensor:
        return self.build(storage, None, offset, size, stride)

    def v2(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False, hooks: Any = None,
           metadata: Any = None) -> Tensor:
        return self.build(storage, None, offset, size, stride, metadata)

    def v3(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: Any,
           metadata: Any = None) -> Tensor:
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError("a tensor record whose dtype is not a torch dtype")
        return self.build(storage, dtype, offset, size, stride, metadata)

    @staticmethod
    def parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> Tensor:
        """``_rebuild_parameter(data, ...)``: the parameter's tensor itself."""
        if not isinstance(data, Tensor):
            raise pickle.UnpicklingError("a parameter record without tensor data")
        return data

    @staticmethod
    def from_type(func: Any, new_type: Any, args: Any, state: Any = None) -> Any:
        """``_rebuild_from_type_v2(func, type, args, state)``: ``func(*args)``; the subclass is not made."""
        return func(*_args(args))

    def build(self, storage: Any, dtype: torch.dtype | None, offset: Any, size: Any, stride: Any,
              metadata: Any = None) -> Tensor:
        """A strided view of ``storage`` after checking every element lies inside it."""
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor record without a storage")
        data = storage.typed(storage.dtype if dtype is None else dtype)
        shape, strides, offset = _dims(size), _dims(stride), _index(offset)
        if len(shape) != len(strides):
            raise pickle.UnpicklingError(f"a tensor of {len(shape)} sizes and {len(strides)} strides")
        numel = math.prod(shape)
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides)) if numel else offset - 1
        if last >= data.numel():
            raise ParamLensError(
                f"{self.path}: a tensor of shape {list(shape)} at offset {offset} reaches element {last} of a "
                f"storage of {data.numel()}; the file is corrupt or crafted"
            )
        self._charge(shape, numel * data.element_size(), numel > data.numel())
        view = torch.as_strided(data, shape, strides, data.storage_offset() + offset)  # as_strided: absolute offset
        return _with_metadata(view, metadata)

    def _charge(self, shape: tuple[int, ...], nbytes: int, expanded: bool) -> None:
        self.logical += nbytes
        if expanded and self.logical > self.limit:
            raise ParamLensError(
                f"{self.path}: a tensor of shape {list(shape)} repeats its storage (stride 0 or overlapping) to "
                f"{_size_text(nbytes)}, past the {_size_text(self.limit)} of tensor data allowed for this file "
                "(4 x its size + 64 MiB); refusing it"
            )


def _with_metadata(tensor: Tensor, metadata: Any) -> Tensor:
    """Apply saved ``{"conj": bool, "neg": bool}`` bits, as torch's rebuild does."""
    if not metadata:
        return tensor
    if type(metadata) not in (dict, _Dict) or not set(metadata) <= {"conj", "neg"} or \
            any(type(v) is not bool for v in metadata.values()):
        raise pickle.UnpicklingError("tensor metadata other than conj/neg flags")
    torch._utils.set_tensor_metadata(tensor, dict(metadata))
    return tensor


def _swap_in_place(raw: Tensor, dtype: torch.dtype) -> None:
    """Reverse the byte order of every element (each half of a complex number) of ``raw`` read as ``dtype``."""
    unit = dtype.itemsize // 2 if dtype.is_complex else dtype.itemsize
    if unit > 1 and raw.numel() % unit == 0:
        raw.numpy().view(f"u{unit}").byteswap(inplace=True)


def _modern_name(module: str, name: str, proto: int) -> tuple[str, str]:
    """Python 2 names (``__builtin__.set``) that protocol < 3 pickles use, as Python 3 names."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def _is_plain(module: str, name: str) -> bool:
    """Whether a global is plain tensor data rather than code."""
    return (f"{module}.{name}" in _PLAIN_GLOBALS or (module == "torch._utils" and name.startswith("_rebuild_"))
            or (module in _STORAGE_MODULES and name in _STORAGE_DTYPES)
            or (module == "torch" and name in _TORCH_CONSTANTS))


class _Unpickler(pickle._Unpickler):
    """Interprets a pickle with stand-ins for globals; only this module's functions are ever called.

    Args:
        file: the pickle stream (read exactly to its STOP opcode).
        storages: called with each persistent id, returns what it stands for; None refuses persistent ids.
        tensors: interprets tensor rebuild calls; None makes them stand-ins.
    """

    dispatch: ClassVar[dict[int, Callable]] = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, storages: Callable[[Any], Any] | None = None,
                 tensors: _TensorBuilder | None = None):
        super().__init__(file, encoding="utf-8")
        self.storages = storages
        self.globals: list[str] = []
        self.stand_ins: dict[str, type] = {}
        self.tuple_depths: dict[int, tuple[tuple, int]] = {}
        self.guard = _HashGuard()
        self.handlers = dict(_PLAIN_OBJECTS)
        self.handlers.update({name: functools.partial(make, self.guard) for name, make in _CONTAINERS.items()})
        if tensors is not None:
            self.handlers.update({
                "torch._utils._rebuild_tensor": tensors.v1,
                "torch._utils._rebuild_tensor_v2": tensors.v2,
                "torch._utils._rebuild_tensor_v3": tensors.v3,
                "torch._utils._rebuild_parameter": tensors.parameter,
                "torch._utils._rebuild_parameter_with_state": tensors.parameter,
                "torch._tensor._rebuild_from_type": tensors.from_type,
                "torch._tensor._rebuild_from_type_v2": tensors.from_type,
            })

    def find_class(self, module: str, name: str) -> Any:
        module, name = _modern_name(module, name, self.proto)
        qualname = f"{module}.{name}"
        if qualname in self.handlers:
            return self.handlers[qualname]
        if module in _STORAGE_MODULES and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch" and name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
        if qualname not in self.stand_ins:
            if len(self.stand_ins) >= _MAX_GLOBALS:
                raise pickle.UnpicklingError(f"more than {_MAX_GLOBALS} distinct globals")
            self.stand_ins[qualname] = type("StandIn", (_Opaque,), {"qualname": qualname})
            if not _is_plain(module, name):
                self.globals.append(qualname)
        return self.stand_ins[qualname]

    def persistent_load(self, pid: Any) -> Any:
        if self.storages is None:
            raise pickle.UnpicklingError("a persistent id where none belongs")
        return self.storages(pid)

    def _tuple(self, items: list) -> tuple:
        """A tuple, refused if tuples nest deeper than 256 (hashing one recurses on the C stack)."""
        made = tuple(items)
        depth = 1 + max((self.tuple_depths.get(id(x), ((), 1))[1] for x in made if type(x) is tuple), default=0)
        if depth > _MAX_DEPTH:
            raise pickle.UnpicklingError(f"tuples nested deeper than {_MAX_DEPTH}")
        if depth > 1:
            self.tuple_depths[id(made)] = (made, depth)
        return made

    def _pack(self, n: int) -> None:
        if len(self.stack) < n:
            raise pickle.UnpicklingError("stack underflow")
        items = self.stack[-n:]
        del self.stack[-n:]
        self.stack.append(self._tuple(items))

    def load_tuple(self) -> None:
        items = self.pop_mark()
        self.append(self._tuple(items))

    def load_tuple1(self) -> None:
        self._pack(1)

    def load_tuple2(self) -> None:
        self._pack(2)

    def load_tuple3(self) -> None:
        self._pack(3)

    def load_reduce(self) -> None:
        args = _args(self.stack.pop())
        self.stack[-1] = self.stack[-1](*args)

    def load_newobj(self) -> None:
        args = _args(self.stack.pop())
        cls = self.stack.pop()
        self.append(_new_object(cls, args, {}))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = _args(self.stack.pop())
        cls = self.stack.pop()
        if type(kwargs) not in (dict, _Dict) or any(type(k) is not str for k in kwargs):
            raise pickle.UnpicklingError("NEWOBJ_EX keywords are not a dict of names")
        self.append(_new_object(cls, args, kwargs))

    def load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if not isinstance(target, (_Opaque, _Dict)):
            raise pickle.UnpicklingError(f"BUILD on a {type(target).__name__}")
        target.state = state

    def load_append(self) -> None:
        value = self.stack.pop()
        _container(self.stack[-1], (list, _Opaque), "APPEND").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        _container(self.stack[-1], (list, _Opaque), "APPENDS").extend(items)

    def _set_items(self, items: list, opcode: str) -> None:
        """``target[k] = v`` for the pairs ``items`` on the dict or stand-in on top of the stack."""
        target = _container(self.stack[-1], (dict, _Opaque), opcode)
        if len(items) % 2:
            raise pickle.UnpicklingError(f"{opcode} with an odd number of items")
        self.guard.check(target.items if isinstance(target, _Opaque) else target, items[::2])
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items([key, value], "SETITEM")

    def load_setitems(self) -> None:
        self._set_items(self.pop_mark(), "SETITEMS")

    def load_dict(self) -> None:
        items = self.pop_mark()
        self.append({})
        self._set_items(items, "DICT")

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = _container(self.stack[-1], (set,), "ADDITEMS")
        self.guard.check(target, items)
        target.update(items)

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        self.guard.check(items, items)
        self.append(frozenset(items))

    def load_put(self) -> None:
        index = int(self.readline()[:-1])
        if not 0 <= index < 1 << 32:  # as LONG_BINPUT: a memo index cannot be a hash-colliding big int
            raise pickle.UnpicklingError(f"memo index {index} out of range")
        self.memo[index] = self.stack[-1]

    def load_bytearray8(self) -> None:
        (n,) = pickle.struct.unpack("<Q", self.read(8))
        data = self.read(n)
        if len(data) < n:
            raise pickle.UnpicklingError("pickle data was truncated")
        self.append(bytearray(data))


_Unpickler.dispatch.update({
    opcode[0]: method for opcode, method in [
        (pickle.TUPLE, _Unpickler.load_tuple), (pickle.TUPLE1, _Unpickler.load_tuple1),
        (pickle.TUPLE2, _Unpickler.load_tuple2), (pickle.TUPLE3, _Unpickler.load_tuple3),
        (pickle.REDUCE, _Unpickler.load_reduce), (pickle.NEWOBJ, _Unpickler.load_newobj),
        (pickle.NEWOBJ_EX, _Unpickler.load_newobj_ex), (pickle.BUILD, _Unpickler.load_build),
        (pickle.APPEND, _Unpickler.load_append), (pickle.APPENDS, _Unpickler.load_appends),
        (pickle.SETITEM, _Unpickler.load_setitem), (pickle.SETITEMS, _Unpickler.load_setitems),
        (pickle.DICT, _Unpickler.load_dict), (pickle.ADDITEMS, _Unpickler.load_additems),
        (pickle.FROZENSET, _Unpickler.load_frozenset), (pickle.PUT, _Unpickler.load_put),
        (pickle.BYTEARRAY8, _Unpickler.load_bytearray8),
    ]
})


def _new_object(cls: Any, args: tuple, kwargs: dict) -> _Opaque:
    """NEWOBJ: only stand-in classes are instantiated this way."""
    if not (isinstance(cls, type) and issubclass(cls, _Opaque)):
        raise pickle.UnpicklingError(f"NEWOBJ of a {type(cls).__name__}")
    return cls.__new__(cls, *args, **kwargs)


def _container(target: Any, kinds: tuple[type, ...], opcode: str) -> Any:
    """``target`` if the opcode may fill it: a plain list, dict or set, or a stand-in, of ``kinds``; never a
    tensor (whose ``__setitem__`` or ``add`` would compute)."""
    fillable = type(target) in (list, dict, set, _Dict) or isinstance(target, _Opaque)
    if not (fillable and isinstance(target, kinds)):
        raise pickle.UnpicklingError(f"{opcode} on a {type(target).__name__}")
    return target


def _run(unpickler: _Unpickler, path: Path, what: str) -> Any:
    """``unpickler.load()``, any failure of it reported as one line."""
    try:
        return unpickler.load()
    except ParamLensError:
        raise
    except Exception as e:  # noqa: BLE001 - only this module's code runs in there: any failure means a bad file
        raise ParamLensError(f"{path}: {what} is not a valid pickle ({_short(e)}); the file is corrupt or crafted") \
            from None


class _ZipReader:
    """Records of one zip archive, read against a budget of declared uncompressed bytes (file size + 64 MiB)."""

    def __init__(self, zf: zipfile.ZipFile, path: Path, file_size: int):
        self.zf, self.path, self.file_size = zf, path, file_size
        self.limit, self.spent = file_size + _SLACK, 0

    def info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self.zf.getinfo(name)
        except KeyError:
            raise ParamLensError(
                f"{self.path}: record '{name}' is missing; the archive is truncated or corrupt, download or save "
                "the checkpoint again"
            ) from None

    def read(self, info: zipfile.ZipInfo) -> bytearray:
        """The record's bytes, its declared size charged to the budget before anything is inflated."""
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise ParamLensError(
                f"{self.path}: record '{info.filename}' has inconsistent sizes; the archive is corrupt"
            )
        if self.spent + info.file_size > self.limit:
            raise ParamLensError(
                f"{self.path}: record '{info.filename}' inflates to {_size_text(info.file_size)}, past the "
                f"{_size_text(self.limit)} this {_size_text(self.file_size)} file may hold (torch stores records "
                "uncompressed: file size + 64 MiB); refusing a zip bomb"
            )
        self.spent += info.file_size
        buf = bytearray(info.file_size)
        try:
            filled = self._fill(info, buf)
        except Exception as e:  # noqa: BLE001 - zipfile and zlib raise many kinds for damaged data
            raise ParamLensError(
                f"{self.path}: record '{info.filename}' is unreadable ({_short(e)}); the archive is corrupt"
            ) from None
        if filled != len(buf):
            raise ParamLensError(f"{self.path}: record '{info.filename}' is truncated; the archive is corrupt")
        return buf

    def _fill(self, info: zipfile.ZipInfo, buf: bytearray) -> int:
        """Inflate into ``buf`` in chunks, never past its length; zipfile checks the CRC at the end."""
        pos = 0
        with self.zf.open(info) as record, memoryview(buf) as view:
            while pos < len(buf):
                chunk = record.read(min(_CHUNK, len(buf) - pos))
                if not chunk:
                    break
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
        return pos

    def storage(self, name: str, nbytes: int) -> Tensor:
        """A storage record as 1-D uint8, after checking it holds the ``nbytes`` the pickle declares."""
        info = self.info(name)
        if info.file_size != nbytes:
            raise ParamLensError(
                f"{self.path}: record '{name}' holds {info.file_size} bytes, its tensor record says {nbytes}; "
                "the archive is corrupt"
            )
        buf = self.read(info)
        return torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)


class _ZipStorages:
    """Persistent ids ``("storage", storage type, key, location, numel)`` of a zip archive -> :class:`_Storage`.

    Each key's record is read once; the location (``"cpu"``, ``"cuda:0"``, ``"mps"``) is ignored.
    """

    def __init__(self, reader: _ZipReader, prefix: str, swap: bool):
        self.reader, self.prefix, self.swap = reader, prefix, swap
        self.loaded: dict[str, _Storage] = {}

    def __call__(self, pid: Any) -> _Storage:
        if not (type(pid) is tuple and len(pid) == 5 and type(pid[0]) is str and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"persistent id {_REPR.repr(pid)} is not a torch storage record")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or type(key) is not str:
            raise pickle.UnpicklingError(f"storage record {_REPR.repr(pid)} has no storage type or key")
        numel = _index(numel)
        if key not in self.loaded:
            raw = self.reader.storage(f"{self.prefix}data/{key}", numel * dtype.itemsize)
            if self.swap:
                _swap_in_place(raw, dtype)
            self.loaded[key] = _Storage(dtype, raw)
        return self.loaded[key]


class _LegacyStorages:
    """Persistent ids of a legacy file -> storages allocated now (while their bytes fit in the file), filled by
    :meth:`fill` once the pickle is read.

    ``("storage", storage type, root key, location, numel, view)`` gives a storage (a slice of its root when
    ``view`` is ``(view key, offset, numel)``); ``("module", class, source file, source)`` gives the class.
    """

    def __init__(self, path: Path, file_size: int):
        self.path, self.file_size, self.left = path, file_size, file_size
        self.roots: dict[str, tuple[_Storage, int]] = {}

    def __call__(self, pid: Any) -> Any:
        if type(pid) is tuple and len(pid) == 4 and type(pid[0]) is str and pid[0] == "module":
            return pid[1]
        if not (type(pid) is tuple and len(pid) == 6 and type(pid[0]) is str and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"persistent id {_REPR.repr(pid)} is not a torch storage record")
        _, dtype, key, _location, numel, view = pid
        if not isinstance(dtype, torch.dtype) or type(key) is not str:
            raise pickle.UnpicklingError(f"storage record {_REPR.repr(pid)} has no storage type or key")
        root = self._root(dtype, key, _index(numel))
        return root if view is None else self._view(root, view)

    def _root(self, dtype: torch.dtype, key: str, numel: int) -> _Storage:
        if key not in self.roots:
            nbytes = numel * dtype.itemsize
            self.left -= nbytes + 8
            if self.left < 0:
                raise ParamLensError(
                    f"{self.path}: its storages declare more bytes than the {_size_text(self.file_size)} file "
                    "holds; the file is truncated or corrupt"
                )
            self.roots[key] = (_Storage(dtype, torch.empty(nbytes, dtype=torch.uint8)), numel)
        return self.roots[key][0]

    @staticmethod
    def _view(root: _Storage, view: Any) -> _Storage:
        if type(view) is not tuple or len(view) != 3:
            raise pickle.UnpicklingError(f"storage view {_REPR.repr(view)} is not (key, offset, size)")
        offset, numel, size = _index(view[1]), _index(view[2]), root.dtype.itemsize
        if (offset + numel) * size > root.raw.numel():
            raise pickle.UnpicklingError("a storage view past the end of its storage")
        return _Storage(root.dtype, root.raw[offset * size : (offset + numel) * size])

    def fill(self, f: BinaryIO, keys: Any, little_endian: bool) -> None:
        """Read each storage: an int64 element count (checked against the pickle), then its bytes in full.

        The count is little-endian, or big-endian when the writer says it was (torch < 1.0 wrote it natively);
        the bytes are always little-endian.
        """
        if type(keys) is not list or any(type(k) is not str for k in keys) or sorted(keys) != sorted(self.roots):
            raise ParamLensError(f"{self.path}: its storage list does not match its pickle; the file is corrupt")
        for key in keys:
            storage, numel = self.roots[key]
            head = f.read(8)
            count = int.from_bytes(head, "little")
            if len(head) == 8 and count != numel and not little_endian and int.from_bytes(head, "big") == numel:
                count = numel
            if len(head) == 8 and count != numel:
                raise ParamLensError(
                    f"{self.path}: storage '{key}' holds {count} elements, its pickle says {numel}; the file is corrupt"
                )
            with memoryview(storage.raw.numpy()) as view:
                if len(head) < 8 or f.readinto(view) != len(view):
                    raise ParamLensError(f"{self.path}: storage '{key}' is cut short; the file is truncated")
            if sys.byteorder != "little":
                _swap_in_place(storage.raw, storage.dtype)


def _pickle_name(zf: zipfile.ZipFile, path: Path) -> str:
    """The archive's ``data.pkl`` record (the top-most one)."""
    names = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if not names:
        raise ParamLensError(f"{path}: zip file without data.pkl; not a torch checkpoint")
    return min(names, key=lambda n: n.count("/"))


def _zip_byteorder(reader: _ZipReader, prefix: str) -> str:
    """``"little"`` or ``"big"``: the order of the storage bytes (little when the record is absent)."""
    name = f"{prefix}byteorder"
    if name not in reader.zf.NameToInfo:
        return "little"
    order = bytes(reader.read(reader.info(name))).strip()
    if order not in (b"little", b"big"):
        raise ParamLensError(f"{reader.path}: record '{name}' says {_REPR.repr(order)}, not little or big")
    return order.decode()


def _load_zip(f: BinaryIO, path: Path, file_size: int) -> tuple[Any, list[str]]:
    """The object graph of a zip archive and the globals its pickle names."""
    try:
        zf = zipfile.ZipFile(f)
    except Exception as e:  # noqa: BLE001 - zipfile raises many kinds for a damaged directory
        raise ParamLensError(f"{path}: unreadable zip archive ({_short(e)}); it is truncated or corrupt") from None
    with zf:
        name = _pickle_name(zf, path)
        prefix = name[: -len("data.pkl")]
        reader = _ZipReader(zf, path, file_size)
        storages = _ZipStorages(reader, prefix, _zip_byteorder(reader, prefix) != sys.byteorder)
        stream = io.BytesIO(reader.read(reader.info(name)))
        unpickler = _Unpickler(stream, storages, _TensorBuilder(path, file_size))
        return _run(unpickler, path, "data.pkl"), unpickler.globals


def _load_legacy(f: BinaryIO, path: Path, file_size: int) -> tuple[Any, list[str]]:
    """The object graph of a legacy file and the globals its pickle names."""
    _magic, version, sys_info = (_run(_Unpickler(f), path, "the legacy header") for _ in range(3))
    if type(version) is not int or version != _LEGACY_PROTOCOL:
        raise ParamLensError(
            f"{path}: legacy torch file of protocol {_REPR.repr(version)}, not {_LEGACY_PROTOCOL}; not readable"
        )
    little_endian = not (type(sys_info) is dict and sys_info.get("little_endian") is False)
    storages = _LegacyStorages(path, file_size)
    unpickler = _Unpickler(f, storages, _TensorBuilder(path, file_size))
    root = _run(unpickler, path, "the legacy pickle")
    keys = _run(_Unpickler(f), path, "the legacy storage list")
    storages.fill(f, keys, little_endian)
    return root, unpickler.globals


def _open_regular(path: Path) -> BinaryIO:
    """The file opened for reading; folders, FIFOs and devices are refused without blocking on them."""
    mode = file_mode(path, missing="no such file; check the path", unreadable="cannot access it")
    refusal = f"{path}: not a regular file (a folder, FIFO or device); pass a checkpoint file"
    if not stat.S_ISREG(mode):
        raise ParamLensError(refusal)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise ParamLensError(f"{path}: cannot open it ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the check
        os.close(fd)
        raise ParamLensError(refusal)
    return os.fdopen(fd, "rb")


def _is_legacy_head(head: bytes) -> bool:
    try:
        value = _Unpickler(io.BytesIO(head)).load()
    except Exception:  # noqa: BLE001 - anything that is not this pickle
        return False
    return type(value) is int and value == _LEGACY_MAGIC


def _sniff(f: BinaryIO) -> tuple[str | None, bytes]:
    """``("zip" | "legacy" | None, first bytes)``, the file left at its start."""
    head = f.read(_HEAD)
    f.seek(0)
    if _is_legacy_head(head[:64]):
        return "legacy", head
    kind = "zip" if zipfile.is_zipfile(f) else None
    f.seek(0)
    return kind, head


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _not_torch(head: bytes, file_size: int) -> str:
    """What a file that is neither a torch zip archive nor a legacy torch file is."""
    neither = "not a torch checkpoint (a zip archive or legacy torch file)"
    if file_size == 0:
        return f"an empty file, {neither}"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a zip archive without its central directory: it is truncated or corrupt; download or save it again"
    if head[257:262] == b"ustar":
        return f"a tar archive (how torch < 0.4 saved), {neither}; ParamLens does not read it"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the checkpoint itself; fetch the file with `git lfs pull`"
    if head.startswith(b"\x80"):
        return f"a pickle without torch's magic number, {neither}"
    if _is_text(head):
        return f"a text file, {neither}"
    return f"unknown binary data (starting {head[:8].hex(' ')}), {neither}"


def open_archive(path: str | Path) -> Archive:
    """Read a ``torch.save`` file (zip or legacy) without running its code; see the module docstring for bounds.

    Works on state dicts (``OrderedDict`` with ``_metadata``), checkpoints of custom classes, closures and whole
    pickled modules, and storages saved on any device (``cuda:0``, ``mps``): everything is read onto the CPU.

    Raises:
        ParamLensError: one line naming the file and what is wrong with it: missing, not a regular file, not a
            torch checkpoint, truncated or corrupt, a pickle the reader cannot interpret, or a bound exceeded.
    """
    path = Path(path)
    with _open_regular(path) as f:
        try:
            file_size = os.fstat(f.fileno()).st_size
            kind, head = _sniff(f)
            if kind is None:
                raise ParamLensError(f"{path}: {_not_torch(head, file_size)}")
            root, names = (_load_zip if kind == "zip" else _load_legacy)(f, path, file_size)
        except OSError as e:
            raise ParamLensError(f"{path}: cannot read it ({e.strerror or e})") from None
    tensors, modules = _walk(root, str(path))
    return Archive(path, f"torch {kind}", root, tensors, names, modules)


def read_archive(path: str | Path) -> list[ArchiveTensor]:
    """Every tensor in a ``torch.save`` file, in file order: ``open_archive(path).tensors``.

    Raises:
        ParamLensError: as :func:`open_archive`.
    """
    return open_archive(path).tensors


def tensors_in(obj: Any) -> list[ArchiveTensor]:
    """Every tensor reachable from an object graph (dicts, lists, tuples, sets, stand-ins and the attributes of
    other objects, such as a trusted unpickled ``nn.Module``), in order, each once, named as in an archive.

    Raises:
        ParamLensError: nesting deeper than 256 levels, or a name longer than 4096 characters.
    """
    return _walk(obj, "object")[0]


def is_torch_file(path: str | Path) -> bool:
    """Whether ``path`` looks like a torch checkpoint: a zip with a ``data.pkl``, or a legacy file (its magic
    number). Reads the first bytes and the zip directory only; never raises."""
    try:
        with _open_regular(Path(path)) as f:
            kind, _ = _sniff(f)
            if kind != "zip":
                return kind == "legacy"
            with zipfile.ZipFile(f) as zf:
                return any(n == "data.pkl" or n.endswith("/data.pkl") for n in zf.namelist())
    except Exception:  # noqa: BLE001 - unreadable in any way: not a checkpoint this module reads
        return False


def _children(obj: Any) -> list[tuple[Any, Any]] | None:
    """``(key, child)`` pairs of a container (key None: the child takes the container's name), None for leaves."""
    if isinstance(obj, dict):
        items = list(obj.items())
        return items + [(None, obj.state)] if isinstance(obj, _Dict) else items
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(enumerate(obj))
    if isinstance(obj, _Opaque):
        return [(None, obj.args), (None, obj.kwargs), (None, obj.state), (None, obj.items)]
    attributes = getattr(obj, "__dict__", None)
    if type(attributes) is dict and not isinstance(obj, _Storage):
        return [(None, attributes)]
    return None


def _key_text(key: Any) -> str:
    """A dict key or index as a name part: strings as they are, numbers and short tuples of them as written."""
    if isinstance(key, str):
        return key
    scalars = (int, float, bool, type(None), str)
    if isinstance(key, scalars) or (type(key) is tuple and all(isinstance(k, scalars) for k in key)):
        try:
            return _REPR.repr(key)
        except ValueError:  # an int too long to print
            pass
    return f"<{type(key).__name__}>"


def _name(node: tuple | None, where: str) -> str:
    """The dotted name of a walk node ``(parent node, key)``; None is the root (``""``)."""
    parts, length = [], 0
    while node is not None:
        node, key = node
        parts.append(_key_text(key))
        length += len(parts[-1]) + 1
        if length > _MAX_NAME + 1:
            raise ParamLensError(f"{where}: a tensor's name passes {_MAX_NAME} characters")
    return ".".join(reversed(parts))


def _looks_like_module(obj: Any) -> bool:
    return isinstance(obj, _Opaque) and type(obj.state) in (dict, _Dict) and \
        ("_parameters" in obj.state or "_modules" in obj.state)


def _walk(root: Any, where: str) -> tuple[list[ArchiveTensor], list[str]]:
    """Tensors reachable from ``root`` in order, and the names of whole-module stand-ins.

    Iterative depth-first walk; a container reached again is skipped, so shared and cyclic graphs cost their size,
    not their number of paths. A tensor stored under two names (tied weights: ``{"embed": t, "lm_head": t}``) is
    listed under both, sharing its memory. Names are built only for tensors and modules. ``where`` starts error
    messages.
    """
    tensors: list[ArchiveTensor] = []
    modules: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[Any, tuple | None, int]] = [(root, None, 0)]
    while stack:
        obj, node, depth = stack.pop()
        if isinstance(obj, Tensor):
            tensors.append(ArchiveTensor(_name(node, where), obj))
            continue
        if id(obj) in seen:
            continue
        children = _children(obj)
        if children is None:
            continue
        if depth >= _MAX_DEPTH:
            raise ParamLensError(f"{where}: objects nested deeper than {_MAX_DEPTH} levels")
        seen.add(id(obj))
        if _looks_like_module(obj):
            modules.append(_name(node, where))
        for key, child in reversed(children):
            if not isinstance(child, _LEAVES):
                slot = key is None or (type(key) is str and key in _MODULE_SLOTS)
                stack.append((child, node if slot else (node, key), depth + 1))
    return tensors, modules


class _Plain:
    """State of one :func:`plain` conversion: values produced so far and the containers being converted."""

    def __init__(self) -> None:
        self.count = 0
        self.active: set[int] = set()

    def convert(self, obj: Any, depth: int) -> Any:
        """``obj`` as plain data, or ``_DROP``."""
        self.count += 1
        if self.count > _MAX_PLAIN:
            raise ParamLensError(f"plain(): the object expands to more than {_MAX_PLAIN} values (shared containers)")
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, torch.dtype):
            return str(obj).removeprefix("torch.")
        if not isinstance(obj, (dict, list, tuple, set, frozenset)) or id(obj) in self.active:
            return _DROP
        if depth >= _MAX_DEPTH:
            raise ParamLensError(f"plain(): objects nested deeper than {_MAX_DEPTH} levels")
        self.active.add(id(obj))
        try:
            if isinstance(obj, dict):
                pairs = ((_plain_key(k), self.convert(v, depth + 1)) for k, v in obj.items())
                return {k: v for k, v in pairs if k is not _DROP and v is not _DROP}
            values = [v for v in (self.convert(x, depth + 1) for x in obj) if v is not _DROP]
            return sorted(values, key=repr) if isinstance(obj, (set, frozenset)) else values
        finally:
            self.active.discard(id(obj))


def _plain_key(key: Any) -> Any:
    """A dict key as JSON writes it (``1 -> "1"``, ``True -> "true"``), ``_DROP`` for other keys."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        try:
            return json.dumps(key)
        except ValueError:  # an int too long to print
            return _DROP
    return _DROP


def plain(obj: Any) -> Any:
    """A part of :attr:`Archive.root` as plain JSON-like Python, e.g. ``plain(archive.root["config"])``.

    Dicts, lists, tuples (as lists) and sets (as sorted lists) are kept; str/int/float/bool/None as they are;
    a ``torch.dtype`` becomes its name (``"float32"``); dict keys become strings as JSON writes them. Tensors,
    stand-ins, bytes and containers that contain themselves are dropped (``None`` if ``obj`` itself is).

    Raises:
        ParamLensError: nesting deeper than 256 levels, or more than 1,000,000 values (a container shared
            many times expands once per reference).
    """
    value = _Plain().convert(obj, 0)
    return None if value is _DROP else value
