"""Three kinds of degenerate parameters, each a number per layer (Bushnaq et al. 2024).

1. Linearly dependent activations: the dimension of the numerical null space of ``G = E[f f^T]`` (bias folded
   in as a constant 1): weights reading those directions can change without changing anything.
2. Linearly dependent gradients: among the directions the activations do span, those the next layers do not
   respond to: the null space of ``M = E[J^T J]`` (the LIB importances that are zero).
3. ReLUs that fire on the same inputs: dead units (never fire), always-on units (act linearly), and groups of
   units with identical firing patterns (their outgoing weights can be traded against each other); near-
   identical patterns (Jaccard similarity at least ``near``) are counted separately.

For a transformer (:func:`residual_degeneracy`) kinds 1 and 2 are read on the residual stream before every
block and after the last (with :func:`paramlens.interaction.residual.residual_basis`; directions that move only
the constant unit, which no block reads, are not counted as null gradient directions), kind 3 on the hidden
units of every block's MLP, where a unit "fires" when the input of its activation is positive (for GELU or
SiLU this is the ReLU-like reading: below zero the unit passes almost nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from paramlens.core.runs import Result
from paramlens.core.streams import batches_of, blocks_of, capture
from paramlens.interaction.basis import LayerBasis, Segment, augmented_activations, interaction_basis
from paramlens.interaction.residual import residual_basis


@dataclass
class Degeneracy(Result):
    """Per layer ``l`` (``0``: inputs): ``activation_null[l]`` (kind 1), ``gradient_null[l]`` (kind 2, for the
    layers before the output); per layer of units (``unit_layers``, named by ``units``: "ReLU layer" or
    "MLP of block"): ``dead``, ``always_on``, ``duplicate_groups`` (groups of 2+ units with identical firing),
    ``duplicate_units`` (units in those groups beyond one per group), ``near_duplicate_units`` (the same with
    Jaccard >= ``near``); ``llc`` / ``llc_error``: the local learning coefficient and its standard error over
    SGLD chains (:mod:`paramlens.interaction.llc`), when estimated."""

    kind = "degeneracy"
    widths: list[int]
    activation_null: list[int]
    gradient_null: list[int]
    unit_layers: list[int]
    dead: list[int]
    always_on: list[int]
    duplicate_groups: list[int]
    duplicate_units: list[int]
    near_duplicate_units: list[int]
    near: float
    units: str = "ReLU layer"
    llc: float | None = None
    llc_error: float | None = None
    n_weights: int = 0

    def summary(self) -> str:
        lines = ["degeneracy per layer (0 = inputs; widths without the constant unit):"]
        for l, w in enumerate(self.widths):
            grad = self.gradient_null[l] if l < len(self.gradient_null) else "-"
            lines.append(f"  layer {l} (width {w}): null activation directions {self.activation_null[l]}, "
                         f"null gradient directions {grad}")
        for i, l in enumerate(self.unit_layers):
            lines.append(f"  {self.units} {l}: dead {self.dead[i]}, always on {self.always_on[i]}, "
                         f"{self.duplicate_groups[i]} groups firing identically ({self.duplicate_units[i]} redundant "
                         f"units), {self.near_duplicate_units[i]} more redundant at Jaccard >= {self.near}")
        if self.llc is not None:
            lines.append(f"  local learning coefficient {self.llc:.1f} +- {self.llc_error:.1f} (a regular model: "
                         f"half its {self.n_weights} weights, {self.n_weights / 2:.0f})")
        return "\n".join(lines)

    def table(self) -> list[dict]:
        return [{"layer": l, "width": w, "null activation directions": self.activation_null[l],
                 "null gradient directions": self.gradient_null[l] if l < len(self.gradient_null) else ""}
                for l, w in enumerate(self.widths)]

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        from paramlens.report import plots

        fig, (ax,) = plots.panels(1, 5, 3)
        layers = range(len(self.widths))
        ax.plot(layers, self.activation_null, marker="o", label="null activation directions")
        ax.plot(range(len(self.gradient_null)), self.gradient_null, marker="s", label="null gradient directions")
        for i, l in enumerate(self.unit_layers):
            ax.bar(l, self.dead[i] + self.always_on[i] + self.duplicate_units[i], alpha=0.3, color="C2",
                   label="dead + always-on + duplicate units" if i == 0 else None)
        ax.set_xlabel("layer")
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
        return [plots.save(fig, folder / f"{prefix}degeneracy.png", "The three kinds of degeneracy per layer.")]


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


def _unit_counts(fires: Tensor, near: float) -> tuple[int, int, int, int, int]:
    """``fires`` ``(N, units)`` bool -> (dead, always on, identical groups, redundant units, extra redundant
    units at Jaccard >= near)."""
    on = fires.sum(0)
    middle = fires[:, (on > 0) & (on < len(fires))]
    return (int((on == 0).sum()), int((on == len(fires)).sum()), *_firing_groups(middle, near))


def _per_count(counts: list[tuple[int, ...]]) -> list[list[int]]:
    """Per-layer tuples of :func:`_unit_counts` -> one list per count (five empty lists for no layers)."""
    return [list(c) for c in zip(*counts)] if counts else [[] for _ in range(5)]


def _null_counts(bases: list[LayerBasis], tol: float) -> tuple[list[int], list[int]]:
    """(null activation directions per layer, null gradient directions per layer but the last)."""
    act_null = [int((b.gram_eigenvalues <= tol * b.gram_eigenvalues[0]).sum()) for b in bases]
    grad_null = [int((b.importance <= tol * b.importance[0].clamp_min(1e-300)).sum()) for b in bases[:-1]]
    return act_null, grad_null


def degeneracy(segments: list[Segment], x: Tensor, tol: float = 1e-12, near: float = 0.95) -> Degeneracy:
    """All three measures for the segment chain on inputs ``x`` ``(N, d_0)``."""
    acts = augmented_activations(segments, x)
    act_null, grad_null = _null_counts(interaction_basis(segments, x, "lib", tol=tol), tol)
    relu = [l + 1 for l, s in enumerate(segments) if s.act is torch.relu]
    counts = [_unit_counts(acts[l][:, :-1] > 0, near) for l in relu]
    return Degeneracy([a.shape[1] - 1 for a in acts], act_null, grad_null, relu, *_per_count(counts), near)


@torch.no_grad()
def mlp_firing(model: nn.Module, windows: Tensor, batch: int = 8) -> list[Tensor]:
    """Per block: ``(N, units)`` bool, where the input of the MLP's activation (``blocks.{l}.mlp.hook_pre``) is
    positive, over all tokens."""
    sites = [f"blocks.{l}.mlp.hook_pre" for l in range(len(blocks_of(model)))]
    fires: list[list[Tensor]] = [[] for _ in sites]
    model.eval()
    for ids in batches_of(windows, batch):
        acts = capture(model, sites, input_ids=ids)
        for f, site in zip(fires, sites):
            f.append((acts[site] > 0).flatten(0, -2))
    return [torch.cat(f) for f in fires]


def residual_degeneracy(model: nn.Module, windows: Tensor, batch: int = 8, sources: int = 4, tol: float = 1e-12,
                        near: float = 0.95, seed: int = 0, progress: bool = False) -> Degeneracy:
    """All three measures for a transformer on token ``windows`` ``(n, T)``: residual-stream layers ``0..L``, and
    the MLP units of every block."""
    bases = residual_basis(model, windows, batch, sources, tol, seed, progress=progress)
    act_null, grad_null = _null_counts(bases, tol)
    # no block reads the constant unit: directions that move only it are null by construction, not counted
    grad_null = [g - (b.size - int(torch.linalg.matrix_rank(b.vectors[:-1]))) for g, b in zip(grad_null, bases)]
    counts = [_unit_counts(f, near) for f in mlp_firing(model, windows, batch)]
    return Degeneracy([b.vectors.shape[0] - 1 for b in bases], act_null, grad_null, list(range(len(counts))),
                      *_per_count(counts), near, units="MLP of block")
