"""Integer ReLU networks kept sparse: run exactly, save as a dense checkpoint one layer at a time.

Every layer is ``Linear`` + ``ReLU`` (the last one too). Checkpoints use the state-dict names of
``nn.Sequential(Linear, ReLU, Linear, ReLU, ...)``: ``0.weight``, ``0.bias``, ``2.weight``, ... . Formats, by suffix:
``.safetensors`` and ``.npz`` are written one dense layer at a time; ``.pt`` / ``.pth`` / ``.bin`` are
``torch.save(module.state_dict())`` of that ``nn.Sequential`` (built whole in memory).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from paramlens.errors import ParamLensError

SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8"}
TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@dataclass
class SparseLayer:
    """One layer: ``weight[rows[k], cols[k]] = values[k]`` of shape ``(n_out, n_in)`` and ``bias`` ``(n_out,)``;
    int64 tensors, at most one entry per position."""

    n_in: int
    rows: Tensor
    cols: Tensor
    values: Tensor
    bias: Tensor

    @classmethod
    def from_rows(cls, n_in: int, rows: list[tuple[dict[int, int], int]]) -> SparseLayer:
        """From ``[(weights {column: value}, bias)]``, one entry per row."""
        r = [i for i, (w, _) in enumerate(rows) for _ in w]
        c = [col for w, _ in rows for col in w]
        v = [val for w, _ in rows for val in w.values()]
        return cls(n_in, torch.tensor(r, dtype=torch.long), torch.tensor(c, dtype=torch.long),
                   torch.tensor(v, dtype=torch.long), torch.tensor([b for _, b in rows], dtype=torch.long))

    @classmethod
    def from_dense(cls, weight: Tensor, bias: Tensor) -> SparseLayer:
        """From an integer-valued weight ``(n_out, n_in)`` and bias ``(n_out,)``."""
        rows, cols = weight.nonzero(as_tuple=True)
        return cls(weight.shape[1], rows, cols, weight[rows, cols].long(), bias.long().clone())

    @property
    def n_out(self) -> int:
        return self.bias.shape[0]

    def apply(self, h: Tensor) -> Tensor:
        """``(batch, n_in)`` int64 -> ``(batch, n_out)`` int64, exact."""
        pre = self.bias.expand(h.shape[0], -1).clone()
        return pre.index_add_(1, self.rows, h[:, self.cols] * self.values).clamp_min_(0)

    def dense(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The weight ``(n_out, n_in)`` and bias ``(n_out,)`` in ``dtype``."""
        W = torch.zeros(self.n_out, self.n_in, dtype=dtype)
        W[self.rows, self.cols] = self.values.to(dtype)
        return W, self.bias.to(dtype)


@dataclass
class SparseNetwork:
    """A chain of :class:`SparseLayer` s."""

    layers: list[SparseLayer]

    @classmethod
    def from_dense(cls, weights: list[Tensor], biases: list[Tensor]) -> SparseNetwork:
        """From integer-valued dense layers (e.g. a ``CompiledNetwork``'s)."""
        return cls([SparseLayer.from_dense(W, b) for W, b in zip(weights, biases)])

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].n_in] + [layer.n_out for layer in self.layers]

    @property
    def n_parameters(self) -> int:
        """Entries of the dense weights and biases."""
        return sum(layer.n_out * (layer.n_in + 1) for layer in self.layers)

    @property
    def zero_fraction(self) -> float:
        """Fraction of the dense parameters that are 0."""
        nonzero = sum(layer.values.numel() + int((layer.bias != 0).sum()) for layer in self.layers)
        return 1 - nonzero / self.n_parameters

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, n_inputs)`` integers -> ``(batch, n_outputs)`` int64, exact."""
        h = x.long()
        for layer in self.layers:
            h = layer.apply(h)
        return h

    def tensors(self, dtype: torch.dtype = torch.float64) -> Iterator[tuple[str, Tensor]]:
        """``(name, dense tensor)`` in layer order, one layer in memory at a time."""
        for i, layer in enumerate(self.layers):
            W, b = layer.dense(dtype)
            yield f"{2 * i}.weight", W
            yield f"{2 * i}.bias", b

    def to_module(self, dtype: torch.dtype = torch.float64) -> nn.Sequential:
        """``nn.Sequential`` of ``Linear`` + ``ReLU`` computing the same function (exact in float64; in float32
        while every pre-activation stays below 2^24)."""
        modules: list[nn.Module] = []
        for layer in self.layers:
            lin = nn.utils.skip_init(nn.Linear, layer.n_in, layer.n_out, dtype=dtype)
            W, b = layer.dense(dtype)
            with torch.no_grad():
                lin.weight.copy_(W)
                lin.bias.copy_(b)
            modules += [lin, nn.ReLU()]
        return nn.Sequential(*modules)

    def save(self, path: str | Path, dtype: torch.dtype = torch.float64) -> Path:
        """Write a checkpoint; the format follows the suffix (see the module docstring)."""
        path = Path(path)
        if path.suffix == ".safetensors":
            _write_safetensors(self, path, dtype)
        elif path.suffix == ".npz":
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, t in self.tensors(dtype):
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, t.numpy())
        elif path.suffix in TORCH_SUFFIXES:
            if not dtype.is_floating_point:
                raise ParamLensError(f"a torch state dict of nn.Linear layers holds floats; got {dtype}")
            torch.save(self.to_module(dtype).state_dict(), path)
        else:
            raise ParamLensError(f"{path}: unknown suffix; use .safetensors, .npz or {', '.join(TORCH_SUFFIXES)}")
        return path


def _write_safetensors(net: SparseNetwork, path: Path, dtype: torch.dtype) -> None:
    """The safetensors layout (8-byte header length, JSON header, raw little-endian data), streamed per layer."""
    if dtype not in SAFETENSORS_DTYPES:
        raise ParamLensError(f"safetensors dtypes here: {', '.join(map(str, SAFETENSORS_DTYPES))}; got {dtype}")
    size = torch.empty(0, dtype=dtype).element_size()
    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for i, layer in enumerate(net.layers):
        for name, shape in ((f"{2 * i}.weight", [layer.n_out, layer.n_in]), (f"{2 * i}.bias", [layer.n_out])):
            n = size * int(np.prod(shape))
            header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": shape, "data_offsets": [offset, offset + n]}
            offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        f.writelines(t.contiguous().view(torch.uint8).numpy().tobytes() for _, t in net.tensors(dtype))
