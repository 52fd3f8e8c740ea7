"""Bilinear layers: ``y = P [(W x + b_w) * (V x + b_v)]``, and their gated (GLU) relatives.

With ``gate=None`` the layer is bilinear: every output is a quadratic form of the input, so its weights
fully describe what it computes (see :mod:`paramlens.bilinear`). ``gate="relu"|"silu"|"gelu"`` applies the
activation to the left half (ReGLU, SwiGLU, GeGLU), as in most modern transformer MLPs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.errors import ParamLensError

Gate = Literal["relu", "silu", "gelu"] | None
GATES = {"relu": F.relu, "silu": F.silu, "gelu": F.gelu}


class Bilinear(nn.Module):
    """``(..., d_in) -> (..., d_out)``: ``p(gate(w(x)) * v(x))`` with ``d_hidden`` products.

    Attributes:
        w: left ``nn.Linear(d_in, d_hidden)`` (gated when ``gate`` is set).
        v: right ``nn.Linear(d_in, d_hidden)``.
        p: output projection ``nn.Linear(d_hidden, d_out)`` (no bias, except in views of models that have one).
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, bias: bool = False, gate: Gate = None):
        super().__init__()
        if gate is not None and gate not in GATES:
            raise ParamLensError(f"unknown gate '{gate}'; use one of {', '.join(GATES)} or None (bilinear)")
        self.gate = gate
        self.act: Callable[[Tensor], Tensor] | None = GATES[gate] if gate else None
        self.w = nn.Linear(d_in, d_hidden, bias=bias)
        self.v = nn.Linear(d_in, d_hidden, bias=bias)
        self.p = nn.Linear(d_hidden, d_out, bias=False)

    @classmethod
    def view_of(cls, mlp: nn.Module) -> Bilinear:
        """A view (shared modules, no copy) of a gated MLP with ``gate_proj``, ``up_proj``, ``down_proj`` and
        ``act_fn`` (Llama, Mistral, Qwen2, SmolLM2); bilinear when its activation is the identity."""
        if not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            raise ParamLensError(f"{type(mlp).__name__} is not a gated MLP (gate_proj, up_proj, down_proj, act_fn)")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        name = type(mlp.act_fn).__name__.lower()
        layer.gate = None if name in ("linearactivation", "identity") else next(
            (g for g in GATES if g in name), name)
        layer.act = None if layer.gate is None else mlp.act_fn
        layer.w, layer.v, layer.p = mlp.gate_proj, mlp.up_proj, mlp.down_proj
        return layer

    @property
    def is_bilinear(self) -> bool:
        return self.gate is None

    def hidden(self, x: Tensor) -> Tensor:
        """The ``d_hidden`` products before the projection, ``(..., d_hidden)``."""
        left = self.w(x)
        if self.act is not None:
            left = self.act(left)
        return left * self.v(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.p(self.hidden(x))
