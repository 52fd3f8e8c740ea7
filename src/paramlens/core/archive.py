"""Read every tensor out of a PyTorch checkpoint archive without running any of its pickled code.

``torch.save`` writes a zip: ``<prefix>/data.pkl`` (a pickle that describes the saved objects) and
``<prefix>/data/<key>`` (raw storage bytes). Unpickling ``data.pkl`` normally imports and calls whatever
the file names (a custom class, a closure, ``os.system``). :func:`read_archive` instead interprets the
pickle with an unpickler whose every global is an inert stand-in: calls are recorded, never made. Tensor
rebuild calls are the only ones interpreted, and they only read bytes out of the zip.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from paramlens.errors import ParamLensError

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
}
_MODULE_SLOTS = ("_parameters", "_buffers", "_modules")


@dataclass(frozen=True)
class ArchiveTensor:
    """One tensor found in a checkpoint archive.

    Attributes:
        name: dotted path to the tensor in the pickled object (``"model.0.weight"``); the attribute
            slots of pickled ``nn.Module`` objects (``_parameters``, ``_modules``) are left out.
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


class _Opaque:
    """Stand-in for any class or callable the pickle names: building one only records its arguments.

    :meth:`_SafeUnpickler.find_class` makes a subclass per global name, so pickle's REDUCE (``f(*args)``),
    NEWOBJ (``cls.__new__(cls, *args)``) and BUILD (``__setstate__``) all land here.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Opaque":
        self = object.__new__(cls)
        self.args, self.state, self.items = args, None, {}
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.items[len(self.items)] = value

    def extend(self, values: Any) -> None:
        for v in values:
            self.append(v)


class _Storage:
    def __init__(self, dtype: torch.dtype, data: Tensor):
        self.dtype = dtype
        self.data = data


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, zf: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self.zf, self.prefix, self.path = zf, prefix, path
        self.big_endian = False
        byteorder = f"{prefix}byteorder"
        if byteorder in zf.namelist():
            self.big_endian = zf.read(byteorder).strip() == b"big"
        self.storages: dict[str, _Storage] = {}
        self.stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if qualname in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor"):
            return self._rebuild_tensor
        if qualname == "torch._utils._rebuild_parameter":
            return lambda data, *_: data
        if qualname in ("collections.OrderedDict", "builtins.dict"):
            return dict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if qualname not in self.stand_ins:
            self.stand_ins[qualname] = type(name, (_Opaque,), {"qualname": qualname})
        return self.stand_ins[qualname]

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise ParamLensError(f"{self.path}: unknown persistent record {pid!r}; not a torch checkpoint")
        _, storage_type, key, _location, _numel = pid
        dtype = storage_type if isinstance(storage_type, torch.dtype) else torch.uint8
        if key not in self.storages:
            record = f"{self.prefix}data/{key}"
            try:
                raw = self.zf.read(record)
            except KeyError:
                raise ParamLensError(
                    f"{self.path}: record '{record}' is missing; the archive is truncated or corrupt, "
                    "save the checkpoint again"
                ) from None
            array = np.frombuffer(raw, dtype=np.uint8).copy()
            data = torch.from_numpy(array)
            if dtype != torch.uint8:
                data = data.view(dtype)
                if self.big_endian and data.element_size() > 1:
                    data = torch.from_numpy(data.numpy().byteswap())
            self.storages[key] = _Storage(dtype, data)
        return self.storages[key]

    def _rebuild_tensor(self, storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> Tensor:
        if not isinstance(storage, _Storage):
            raise ParamLensError(f"{self.path}: tensor record without storage; the archive is corrupt")
        return torch.as_strided(storage.data, tuple(size), tuple(stride), offset)


def _walk(obj: Any, prefix: str, out: list[ArchiveTensor], seen: set[int]) -> None:
    if isinstance(obj, Tensor):
        if id(obj) not in seen:
            seen.add(id(obj))
            out.append(ArchiveTensor(prefix, obj))
        return
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif isinstance(obj, _Opaque):
        items = [(None, obj.args), (None, obj.state), (None, obj.items)]
    else:
        return
    for key, value in items:
        if key is None or key in _MODULE_SLOTS:
            name = prefix
        else:
            name = f"{prefix}.{key}" if prefix else str(key)
        _walk(value, name, out, seen)


def read_archive(path: str | Path) -> list[ArchiveTensor]:
    """Every tensor in a ``torch.save`` checkpoint, in the order the file holds them.

    Works on checkpoints that pickle custom classes, closures or whole modules: their code is never
    imported or run, only their tensors are read.

    Raises:
        ParamLensError: missing file, not a zip archive (legacy format), truncated archive.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamLensError(f"{path}: no such file; check the path")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ParamLensError(
            f"{path}: not a torch checkpoint archive (zip); it is truncated, or in the legacy format of "
            "torch < 1.6: load it once with torch and save it again"
        ) from None
    with zf:
        pickles = [n for n in zf.namelist() if n.endswith("data.pkl")]
        if not pickles:
            raise ParamLensError(f"{path}: zip file without data.pkl; not a torch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        try:
            with zf.open(pickles[0]) as f:
                root = _SafeUnpickler(f, zf, prefix, path).load()
        except ParamLensError:
            raise
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, RuntimeError) as e:
            raise ParamLensError(f"{path}: cannot read data.pkl ({e}); the archive is truncated or corrupt") from None
    found: list[ArchiveTensor] = []
    _walk(root, "", found, set())
    return found
