"""Numpy ``.npy`` and ``.npz`` files read without pickles, every size checked before it is allocated.

An ``.npz`` is a zip of ``.npy`` members. Each member's header (dtype, shape) must describe exactly the bytes the
zip directory declares for it; object arrays (pickles) are refused. Members written uncompressed (``np.savez``)
can hold no more than the file's size; compressed ones (``np.savez_compressed``) may expand up to about 1,000
times, so they are read only when the declared total fits in the available memory.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor

from paramlens.core.memory import check_fits
from paramlens.errors import ParamLensError

KINDS = "biufc"  # bool, signed and unsigned integers, floats, complex


def _header(f: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` stream ``f``."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f, max_header_size=100_000)
    except (ValueError, EOFError, SyntaxError, TypeError, OSError, zipfile.BadZipFile) as e:
        raise ParamLensError(f"{where}: not a valid .npy array header ({e})") from None
    if dtype.hasobject:
        raise ParamLensError(f"{where}: holds pickled Python objects (dtype {dtype}); ParamLens reads only plain "
                             "numeric arrays")
    if dtype.kind not in KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ParamLensError(f"{where}: dtype {dtype} is not a plain number type")
    try:
        torch.from_numpy(np.zeros(0, dtype.newbyteorder("=")))
    except TypeError:
        raise ParamLensError(f"{where}: dtype {dtype} has no torch equivalent (e.g. long double); save it as float64") \
            from None
    return shape, fortran, dtype


def _array(f: IO[bytes], size: int, where: str) -> Tensor:
    """Read one ``.npy`` stream whose array and header together take ``size`` bytes."""
    shape, fortran, dtype = _header(f, where)
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    left = size - f.tell()
    if need != left:
        raise ParamLensError(f"{where}: the header promises {need:,} bytes of data for shape {shape} and the file "
                             f"holds {left:,}; it is truncated or corrupt")
    raw = f.read(need)
    if len(raw) != need:
        raise ParamLensError(f"{where}: truncated ({len(raw):,} of {need:,} bytes)")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), order="C", copy=True))


def read_npy(path: Path) -> Tensor:
    """The array of an ``.npy`` file."""
    with open(path, "rb") as f:
        return _array(f, path.stat().st_size, str(path))


def read_npz(path: Path) -> dict[str, Tensor]:
    """``{name: tensor}`` of every array in an ``.npz`` file, in file order."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            declared = sum(m.file_size for m in members)
            stored = sum(m.file_size for m in members if m.compress_type == zipfile.ZIP_STORED)
            if stored > path.stat().st_size:
                raise ParamLensError(f"{path}: the zip directory declares more stored bytes than the file holds; "
                                     "it is corrupt")
            check_fits(declared, f"{path}: reading {len(members)} arrays ({declared:,} bytes once decompressed)")
            out = {}
            for m in members:
                where = f"{path} (array '{m.filename}')"
                with zf.open(m) as f:
                    out[m.filename.removesuffix(".npy")] = _array(f, m.file_size, where)
            return out
    except ParamLensError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile and zlib raise many kinds for damaged data (zlib.error, ...)
        raise ParamLensError(f"{path}: unreadable .npz ({e}); it is truncated or corrupt") from None
