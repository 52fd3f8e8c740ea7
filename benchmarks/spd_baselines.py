"""SPD written the direct way, as the speed benchmarks' baselines: the same four losses (faithfulness, stochastic
and layerwise reconstruction, importance minimality) and per-subcomponent gate MLPs (hidden 16, GELU), eager.

- :class:`PlainSPD`: per target in Python; each target's subcomponents rebuilt every step as ``C`` full rank-one
  matrices ``(C, d_out, d_in)`` and its masked map a sum over them (memory ``C x d_out x d_in`` per target and
  ``C x d_in`` per token); its gates one broadcast per target.
- :class:`LoopSPD`: also one gate module per subcomponent and rank-one terms summed one subcomponent at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.core.weights import Target
from paramlens.decompose.components import lower_leaky_hard_sigmoid, upper_leaky_hard_sigmoid
from paramlens.decompose.forward import output_loss, run_maps

HIDDEN = 16


class PlainSPD(nn.Module):
    """``V`` ``(d_in, C)``, ``U`` ``(C, d_out)`` per target; gates ``a V -> (C, HIDDEN) -> C`` per target."""

    def __init__(self, targets: Sequence[Target], C: int):
        super().__init__()
        self.targets, self.C = list(targets), C
        self.V = nn.ParameterList(nn.Parameter(torch.randn(t.shape[1], C) / t.shape[1] ** 0.5) for t in targets)
        self.U = nn.ParameterList(nn.Parameter(torch.randn(C, t.shape[0]) / C**0.5) for t in targets)
        self.build_gates()

    def build_gates(self) -> None:
        """Each target's gate weights ``(C, HIDDEN)`` and biases."""
        n, C = len(self.targets), self.C
        self.w1 = nn.ParameterList(nn.Parameter(torch.randn(C, HIDDEN)) for _ in range(n))
        self.b1 = nn.ParameterList(nn.Parameter(torch.zeros(C, HIDDEN)) for _ in range(n))
        self.w2 = nn.ParameterList(nn.Parameter(torch.randn(C, HIDDEN) / HIDDEN**0.5) for _ in range(n))
        self.b2 = nn.ParameterList(nn.Parameter(torch.zeros(C)) for _ in range(n))

    def pre(self, k: int, a: Tensor) -> Tensor:
        """Gate pre-activations ``(..., C)`` of target ``k`` for its inputs ``a`` ``(..., d_in)``."""
        h = F.gelu((a @ self.V[k]).unsqueeze(-1) * self.w1[k] + self.b1[k])
        return (h * self.w2[k]).sum(-1) + self.b2[k]

    def layer(self, k: int, mask: Tensor) -> Callable[[Tensor], Tensor]:
        """Target ``k``'s map under ``mask`` ``(..., C)``: the sum of its masked rank-one matrices, applied."""
        matrices = torch.einsum("ic,co->coi", self.V[k], self.U[k])  # (C, d_out, d_in)
        return lambda a: torch.einsum("...c,coi,...i->...o", mask, matrices, a)

    def losses(self, model: nn.Module, x: Tensor, target_out: Tensor, inputs: dict[str, Tensor], coeff: float,
               kind: str) -> Tensor:
        """The weighted total of the four losses (``kind``: the output loss, ``"mse"`` or ``"kl"``)."""
        pre = [self.pre(k, inputs[t.name]) for k, t in enumerate(self.targets)]
        faith = sum(((t.matrix(model) - (self.V[k] @ self.U[k]).T) ** 2).sum() for k, t in enumerate(self.targets))
        faith = faith / sum(t.shape[0] * t.shape[1] for t in self.targets)
        masks = []
        for p in pre:
            g = lower_leaky_hard_sigmoid(p)
            masks.append(g + (1 - g) * torch.rand_like(g))
        maps = {t: self.layer(k, masks[k]) for k, t in enumerate(self.targets)}
        stoch = output_loss(run_maps(model, maps, x), target_out, kind)
        layerwise = sum(output_loss(run_maps(model, {t: maps[t]}, x), target_out, kind) for t in self.targets)
        minimality = sum(upper_leaky_hard_sigmoid(p).sum(-1).mean() for p in pre)
        return faith + stoch + layerwise / len(self.targets) + coeff * minimality


class LoopSPD(PlainSPD):
    """:class:`PlainSPD` with one ``nn.Sequential`` gate per subcomponent called in a Python loop, and each masked
    map summed one rank-one subcomponent at a time (inputs ``(batch, d_in)``)."""

    def build_gates(self) -> None:
        self.gates = nn.ModuleList(
            nn.ModuleList(nn.Sequential(nn.Linear(1, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, 1)) for _ in range(self.C))
            for _ in self.targets
        )

    def pre(self, k: int, a: Tensor) -> Tensor:
        return torch.cat([self.gates[k][c]((a @ self.V[k][:, c]).unsqueeze(-1)) for c in range(self.C)], dim=-1)

    def layer(self, k: int, mask: Tensor) -> Callable[[Tensor], Tensor]:
        def fn(a: Tensor) -> Tensor:
            out = 0
            for c in range(self.C):
                out = out + (mask[:, c] * (a @ self.V[k][:, c])).unsqueeze(-1) * self.U[k][c]
            return out

        return fn
