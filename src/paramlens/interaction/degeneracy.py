"""Three kinds of degenerate parameters, each a number per layer (Bushnaq et al. 2024).

1. Linearly dependent activations: the dimension of the numerical null space of ``G = E[f f^T]`` (bias folded
   in as a constant 1): weights reading those directions can change without changing anything.
2. Linearly dependent gradients: among the directions the activations do span, those the next layers do not
   respond to: the null space of ``M = E[J^T J]`` (the LIB importances that are zero).
3. ReLUs that fire on the same inputs: dead units (never fire), always-on units (act linearly), and groups of
   units with identical firing patterns (their outgoing weights can be traded against each other); near-
   identical patterns (Jaccard similarity at least ``near``) are counted separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.core.runs import Result
from paramlens.interaction.basis import Segment, augmented_activations, interaction_basis


@dataclass
class Degeneracy(Result):
    """Per layer ``l`` (``0``: inputs): ``activation_null[l]`` (kind 1), ``gradient_null[l]`` (kind 2, for the
    layers before the output); per ReLU layer: ``dead``, ``always_on``, ``duplicate_groups`` (groups of 2+
    units with identical firing), ``duplicate_units`` (units in those groups beyond one per group),
    ``near_duplicate_units`` (the same with Jaccard >= ``near``)."""

    kind = "degeneracy"
    widths: list[int]
    activation_null: list[int]
    gradient_null: list[int]
    relu_layers: list[int]
    dead: list[int]
    always_on: list[int]
    duplicate_groups: list[int]
    duplicate_units: list[int]
    near_duplicate_units: list[int]
    near: float

    def summary(self) -> str:
        lines = ["degeneracy per layer (0 = inputs; widths without the constant unit):"]
        for l, w in enumerate(self.widths):
            grad = self.gradient_null[l] if l < len(self.gradient_null) else "-"
            lines.append(f"  layer {l} (width {w}): null activation directions {self.activation_null[l]}, "
                         f"null gradient directions {grad}")
        for i, l in enumerate(self.relu_layers):
            lines.append(f"  ReLU layer {l}: dead {self.dead[i]}, always on {self.always_on[i]}, "
                         f"{self.duplicate_groups[i]} groups firing identically ({self.duplicate_units[i]} redundant "
                         f"units), {self.near_duplicate_units[i]} more redundant at Jaccard >= {self.near}")
        return "\n".join(lines)

    def figures(self, folder) -> list[tuple[str, str]]:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        layers = range(len(self.widths))
        ax.plot(layers, self.activation_null, marker="o", label="null activation directions")
        ax.plot(range(len(self.gradient_null)), self.gradient_null, marker="s", label="null gradient directions")
        for i, l in enumerate(self.relu_layers):
            ax.bar(l, self.dead[i] + self.always_on[i] + self.duplicate_units[i], alpha=0.3, color="C2",
                   label="dead + always-on + duplicate ReLUs" if i == 0 else None)
        ax.set_xlabel("layer")
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "degeneracy.png", dpi=120)
        plt.close(fig)
        return [("degeneracy.png", "The three kinds of degeneracy per layer.")]


def _firing_groups(fires: Tensor, near: float) -> tuple[int, int, int]:
    """Among units that are neither dead nor always on: (identical groups, redundant units, extra redundant
    units at Jaccard >= near)."""
    keys: dict[bytes, int] = {}
    for col in fires.T:
        k = col.numpy().tobytes()
        keys[k] = keys.get(k, 0) + 1
    groups = sum(1 for c in keys.values() if c > 1)
    redundant = sum(c - 1 for c in keys.values() if c > 1)
    unique = torch.stack([torch.frombuffer(bytearray(k), dtype=torch.bool) for k in keys]) if keys else fires.T[:0]
    u = unique.double()
    inter = u @ u.T
    size = u.sum(1)
    jac = inter / (size[:, None] + size[None, :] - inter).clamp_min(1)
    jac.fill_diagonal_(0)
    linked = jac >= near
    # extra units merged by near-identity: connected components of the Jaccard graph, minus one per component
    seen, extra = set(), 0
    for i in range(len(u)):
        if i in seen:
            continue
        stack, comp = [i], 0
        seen.add(i)
        while stack:
            j = stack.pop()
            comp += 1
            for k in torch.nonzero(linked[j]).flatten().tolist():
                if k not in seen:
                    seen.add(k)
                    stack.append(k)
        extra += comp - 1
    return groups, redundant, extra


def degeneracy(segments: list[Segment], x: Tensor, tol: float = 1e-12, near: float = 0.95) -> Degeneracy:
    """All three measures for the segment chain on inputs ``x`` ``(N, d_0)``."""
    acts = augmented_activations(segments, x)
    bases = interaction_basis(segments, x, "lib", tol=tol)
    act_null = [int((b.gram_eigenvalues <= tol * b.gram_eigenvalues[0]).sum()) for b in bases]
    grad_null = [int((b.importance <= tol * b.importance[0].clamp_min(1e-300)).sum()) for b in bases[:-1]]
    relu = [l + 1 for l, s in enumerate(segments) if s.act is torch.relu]
    dead, always, groups, dup, near_dup = [], [], [], [], []
    for l in relu:
        fires = acts[l][:, :-1] > 0
        on = fires.sum(0)
        dead.append(int((on == 0).sum()))
        always.append(int((on == len(x)).sum()))
        middle = fires[:, (on > 0) & (on < len(x))]
        g, r, e = _firing_groups(middle, near)
        groups.append(g)
        dup.append(r)
        near_dup.append(e)
    return Degeneracy([a.shape[1] - 1 for a in acts], act_null, grad_null, relu, dead, always, groups, dup,
                      near_dup, near)
