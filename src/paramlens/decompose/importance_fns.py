"""Causal-importance functions of SPD: what turns component activations into importances.

Every function maps the component activations of the targets, ``{target: (..., C)}`` (``...``: ``B`` for feature
vectors, ``B, T`` for token windows), to pre-sigmoid importances of the same shapes. They differ in what one
subcomponent's importance may read:

- ``mlp_per_subcomponent``: its own activation only (one tiny MLP per subcomponent, :class:`Gates`; the paper's);
- ``mlp_per_target``: every activation of its target (one MLP ``C -> hidden -> C`` per target);
- ``mlp_shared``: every activation of every target at the same position (one MLP over their concatenation);
- ``transformer_shared``: the same, and every earlier position of the sequence too (one pre-norm causal
  transformer block over the concatenation; a feature vector is a sequence of length 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.errors import ParamLensError

CIFunction = Literal["mlp_per_subcomponent", "mlp_per_target", "mlp_shared", "transformer_shared"]


class MLP(nn.Module):
    """``d_in -> hidden -> d_out`` with GELU; ``(..., d_in) -> (..., d_out)``."""

    def __init__(self, d_in: int, hidden: int, d_out: int):
        super().__init__()
        self.inp, self.out = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.gelu(self.inp(x)))


class PerTarget(nn.Module):
    """One :class:`MLP` ``C -> hidden -> C`` per target, applied to that target's activations."""

    def __init__(self, keys: Sequence[str], C: int, hidden: int):
        super().__init__()
        self.fns = nn.ModuleDict({k: MLP(C, hidden, C) for k in keys})

    def forward(self, acts: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: self.fns[k](a) for k, a in acts.items()}


def _concat(acts: dict[str, Tensor]) -> Tensor:
    """The activations side by side, ``(..., n_targets * C)``; the targets must share their batch dimensions."""
    shapes = {tuple(a.shape[:-1]) for a in acts.values()}
    if len(shapes) > 1:
        raise ParamLensError(f"a shared importance function needs every target's input to have the same batch "
                             f"dimensions; got {sorted(shapes)}: use ci_fn='mlp_per_target'")
    return torch.cat(list(acts.values()), dim=-1)


def _split(flat: Tensor, keys: Sequence[str]) -> dict[str, Tensor]:
    return dict(zip(keys, flat.chunk(len(keys), dim=-1)))


class SharedMLP(nn.Module):
    """One :class:`MLP` over the concatenated activations of all targets at a position."""

    def __init__(self, keys: Sequence[str], C: int, hidden: int):
        super().__init__()
        self.keys = list(keys)
        self.mlp = MLP(len(self.keys) * C, hidden, len(self.keys) * C)

    def forward(self, acts: dict[str, Tensor]) -> dict[str, Tensor]:
        return _split(self.mlp(_concat({k: acts[k] for k in self.keys})), self.keys)


class SharedTransformer(nn.Module):
    """Embed the concatenated activations (``n_targets * C -> hidden``), one pre-norm block (causal attention
    over the sequence with ``heads`` heads, then an MLP of width ``4 hidden``), and read out ``n_targets * C``."""

    def __init__(self, keys: Sequence[str], C: int, hidden: int, heads: int = 4):
        super().__init__()
        self.keys, self.heads = list(keys), heads
        width = len(self.keys) * C
        self.embed, self.unembed = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.o = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.mlp = MLP(hidden, 4 * hidden, hidden)

    def forward(self, acts: dict[str, Tensor]) -> dict[str, Tensor]:
        x = _concat({k: acts[k] for k in self.keys})
        seq = x if x.dim() == 3 else x.unsqueeze(-2)  # (B, T, width); a feature vector is one position
        h = self.embed(seq)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in self.qkv(self.norm1(h)).chunk(3, -1))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(-2)
        h = h + self.o(att)
        h = h + self.mlp(self.norm2(h))
        out = self.unembed(h)
        return _split(out if x.dim() == 3 else out.squeeze(-2), self.keys)


def importance_function(kind: CIFunction, keys: Sequence[str], C: int, hidden: int) -> nn.Module:
    """The importance function ``kind`` (any but the per-subcomponent gates, which :class:`Gates` are) for the
    targets ``keys`` (module keys), ``C`` subcomponents each, ``hidden`` units wide; ``{key: (..., C)}`` in and out."""
    if kind == "mlp_per_target":
        return PerTarget(keys, C, hidden)
    if kind == "mlp_shared":
        return SharedMLP(keys, C, hidden)
    if kind == "transformer_shared":
        return SharedTransformer(keys, C, hidden, heads=4 if hidden % 4 == 0 else 1)
    raise ParamLensError(f"unknown importance function {kind!r}")
