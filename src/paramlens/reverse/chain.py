"""Find the layer chain of a checkpoint from its tensor names and shapes, and read layers one at a time.

Tensors are paired as ``<prefix>.weight`` (2-d, ``(out, in)``) and ``<prefix>.bias`` (1-d, ``out``), ordered
by their names with numbers compared as numbers (``layers.10`` after ``layers.9``), then checked for
connecting sizes. A weight named by another convention takes the bias named alike (``W0``/``b0``, ``fc1_w``/``fc1_b``,
``kernel``/``bias``). Where the names say neither (``numpy.savez(path, *arrays)`` writes ``arr_0``, ``arr_1``, ...),
a 2-d tensor takes the 1-d tensor of size ``out`` that follows it in that order as its bias (said in a note).
Safetensors files are read lazily (memory-mapped, one tensor at a time); every other source goes through
:func:`paramlens.core.resolve.resolve` (no pickled code runs).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from paramlens.core.loading import regular_file, sniff, widen
from paramlens.core.resolve import resolve
from paramlens.errors import ParamLensError


@dataclass(frozen=True)
class LayerRef:
    """One linear layer: the names of its weight ``(out, in)`` and bias (or None)."""

    index: int
    weight: str
    bias: str | None
    shape: tuple[int, int]


class TensorStore:
    """Names and shapes up front, values on demand: a safetensors file is memory-mapped and read one tensor at a
    time; any other source :func:`~paramlens.core.resolve.resolve` reads (torch files of any kind without running
    their code, ``.npz``, Hugging Face folders, GGUF, run folders) is read whole, non-finite values kept."""

    def __init__(self, spec: str | Path):
        path = Path(spec)
        self.path = path
        self._file, self._tensors = None, None
        if path.is_file() and sniff(regular_file(path)) == "safetensors":
            from safetensors import SafetensorError, safe_open

            try:
                self._file = safe_open(str(path), framework="pt")
                names = self._file.keys()
                self.shapes = {k: tuple(self._file.get_slice(k).get_shape()) for k in names}
            except (SafetensorError, OSError, ValueError) as e:
                raise ParamLensError(f"{path}: unreadable safetensors file ({e}); truncated or corrupt") from None
        else:
            loaded = resolve(spec, check_finite=False, progress=False)
            self.path = loaded.path or path
            self._tensors = loaded.tensors
            self.shapes = {k: tuple(v.shape) for k, v in self._tensors.items()}

    def get(self, name: str) -> Tensor:
        """The tensor ``name``; integer tensors as int64 (narrow integer types wrap in the range checks)."""
        if self._tensors is not None:
            return _int64(self._tensors[name])
        from safetensors import SafetensorError

        try:
            return _int64(widen(self._file.get_tensor(name), name, self.path))
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:  # a header promising more than the file holds
            raise ParamLensError(f"{self.path}: tensor '{name}' cannot be read ({e}); the file is truncated") from None


def _int64(t: Tensor) -> Tensor:
    return t if t.is_floating_point() or t.is_complex() or t.dtype in (torch.int64, torch.bool) else t.to(torch.int64)


def natural_key(name: str) -> list:
    """Sort key that compares the runs of digits in ``name`` as numbers: ``layers.9`` before ``layers.10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def find_chain(store: TensorStore) -> tuple[list[LayerRef], list[str]]:
    """The linear layers in order, and notes on what did not fit (unpaired tensors, size breaks)."""
    notes = []
    weights = sorted((n for n, s in store.shapes.items() if len(s) == 2), key=natural_key)
    if not weights:
        raise ParamLensError(f"{store.path}: no 2-d weight matrices; nothing to scan")
    layers = []
    used = set()
    following = dict(itertools.pairwise(sorted(store.shapes, key=natural_key)))
    by_order = []
    for i, w in enumerate(weights):
        prefix = w[: -len("weight")] if w.endswith("weight") else w + "."
        bias = prefix + "bias" if prefix.endswith(".") else None
        out = store.shapes[w][0]
        if bias is not None and store.shapes.get(bias) != (out,):
            bias = None
        if bias is None and not w.endswith("weight"):
            bias = _sibling_bias(w, out, store.shapes)
        if bias is None and not w.endswith("weight"):
            bias = _unnamed_bias(w, following.get(w), out, store.shapes)
            by_order += [f"{bias} of {w}"] if bias else []
        if bias:
            used.add(bias)
        layers.append(LayerRef(i, w, bias, store.shapes[w]))
        used.add(w)
    if by_order:
        notes.append(f"{len(by_order)} biases taken by name order (the names do not say weight or bias): "
                     f"{', '.join(by_order[:3])}{' ...' if len(by_order) > 3 else ''}")
    left = sorted(set(store.shapes) - used, key=natural_key)
    if left:
        notes.append(f"{len(left)} tensors outside the chain: {', '.join(left[:5])}{' ...' if len(left) > 5 else ''}")
    for a, b in itertools.pairwise(layers):
        if a.shape[0] != b.shape[1]:
            notes.append(f"size break: {a.weight} writes {a.shape[0]} but {b.weight} reads {b.shape[1]}")
    return layers, notes


SIBLINGS = (("W", "b"), ("w", "b"), ("weights", "biases"), ("kernel", "bias"))  # weight token -> bias token


def _sibling_bias(weight: str, out: int, shapes: dict[str, tuple]) -> str | None:
    """The ``(out,)`` tensor named like ``weight`` with its weight token swapped for a bias token (``W0`` ->
    ``b0``, ``fc1_w`` -> ``fc1_b``, ``layer.kernel`` -> ``layer.bias``), else None."""
    for w, b in SIBLINGS:
        for m in re.finditer(rf"(?<![A-Za-z]){w}(?![A-Za-z])", weight):
            name = weight[:m.start()] + b + weight[m.end():]
            if shapes.get(name) == (out,):
                return name
    return None


def _unnamed_bias(weight: str, after: str | None, out: int, shapes: dict[str, tuple]) -> str | None:
    """The tensor named right after ``weight`` when it is ``(out,)`` and its name does not say what it is either
    (``arr_1`` after ``arr_0``), else None."""
    if after is None or shapes[after] != (out,) or after.endswith(("weight", "bias")):
        return None
    return after


def iter_layers(store: TensorStore, layers: list[LayerRef]) -> Iterator[tuple[LayerRef, Tensor, Tensor | None]]:
    """``(layer, weight, bias)`` one layer at a time."""
    for ref in layers:
        yield ref, store.get(ref.weight), store.get(ref.bias) if ref.bias else None


def chain_weights(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[list[Tensor], list[Tensor]]:
    """Every layer's weight ``(out, in)`` and bias ``(out,)`` (zeros where none is stored) in ``dtype``;
    raises when the layers do not connect into one chain."""
    store = TensorStore(path)
    layers, notes = find_chain(store)
    breaks = [n for n in notes if n.startswith("size break")]
    if breaks:
        raise ParamLensError(f"{path}: the layers do not form one chain ({breaks[0]})")
    weights, biases = [], []
    for _, W, b in iter_layers(store, layers):
        weights.append(W.to(dtype))
        biases.append(b.to(dtype) if b is not None else torch.zeros(W.shape[0], dtype=dtype))
    return weights, biases
