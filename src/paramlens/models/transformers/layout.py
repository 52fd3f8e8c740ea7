"""The residual stream of a compiled program: named subspaces, one dimension per value of each variable.

Dimension order: ``one`` (1 at every position), ``bos`` (1 at the BOS position only), then every SOp of the
program in topological order (categorical: one dimension per value, labelled ``"name:value"``; numerical: one
dimension, labelled ``"name"``), then the hidden numerical variable of each selector width
(``"name.inverse"``: ``1 / (width + 1)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from paramlens.errors import ParamLensError

#: more residual dimensions than this is not a small compiled model
MAX_DIMS = 4096


@dataclass(frozen=True)
class Space:
    """One variable's dimensions: ``values`` (categorical) or one numerical dimension, from ``start``."""

    name: str
    values: tuple[Any, ...]
    start: int
    numerical: bool = False

    @property
    def size(self) -> int:
        return 1 if self.numerical else len(self.values)

    @property
    def span(self) -> slice:
        return slice(self.start, self.start + self.size)

    def dim(self, value: Any) -> int:
        """The dimension of one value (numerical: the single dimension)."""
        if self.numerical:
            return self.start
        try:
            return self.start + self.values.index(value)
        except ValueError:
            raise ParamLensError(f"{value!r} is not a value of {self.name!r} ({list(self.values)})") from None


class Layout:
    """Named subspaces of the residual stream, ``d_model`` dimensions in all."""

    def __init__(self) -> None:
        self.spaces: dict[str, Space] = {}
        self.d_model = 0
        self.add("one", (1,))
        self.add("bos", (1,))

    def add(self, name: str, values: Sequence[Any], numerical: bool = False) -> Space:
        """Append a subspace for ``name``; categorical with no value still gets none (reads as ``None``)."""
        if name in self.spaces:
            raise ParamLensError(f"residual subspace {name!r} is defined twice; SOp names must be unique")
        space = Space(name, tuple(values), self.d_model, numerical)
        self.d_model += space.size
        if self.d_model > MAX_DIMS:
            raise ParamLensError(f"the residual stream needs more than {MAX_DIMS} dimensions at {name!r}; use a "
                                 "smaller vocabulary, max_len or fewer map values")
        self.spaces[name] = space
        return space

    def __getitem__(self, name: str) -> Space:
        if name not in self.spaces:
            raise ParamLensError(f"no residual subspace {name!r}; known: {', '.join(self.spaces)}")
        return self.spaces[name]

    def labels(self) -> list[str]:
        """``(d_model,)`` dimension labels: ``"one"``, ``"bos"``, ``"tokens:a"``, ``"length.inverse"``, ..."""
        out = []
        for s in self.spaces.values():
            out += [s.name] if s.numerical or s.name in ("one", "bos") else [f"{s.name}:{v}" for v in s.values]
        return out

    def read(self, resid: Tensor, name: str) -> list[list[Any]]:
        """Decode variable ``name`` from ``(batch, pos, d_model)`` residuals, as :func:`decode`."""
        space = self[name]
        return decode(resid[..., space.span], space)



def decode(part: Tensor, space: Space) -> list[list[Any]]:
    """``(batch, pos, space.size)`` coordinates of one variable -> per position its value (largest coordinate,
    ``None`` when all are below 0.5), or the number for a numerical variable."""
    part = part.detach().float()
    if space.numerical:
        return part[..., 0].tolist()
    if space.size == 0:
        return [[None] * part.shape[-2] for _ in range(part.shape[0])]
    top, idx = part.max(-1)
    return [[space.values[i] if t > 0.5 else None for t, i in zip(trow, irow)]
            for trow, irow in zip(top.tolist(), idx.tolist())]
