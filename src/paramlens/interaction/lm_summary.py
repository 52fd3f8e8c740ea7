"""The interaction basis of a language model's residual stream next to PCA: spectra, edges between the top
directions of consecutive layers, modules, and ablation curves (see :mod:`paramlens.interaction.residual`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from paramlens.core.runs import Result
from paramlens.core.streams import blocks_of
from paramlens.interaction.modularity import modules
from paramlens.interaction.residual import residual_basis, residual_edges, stream_ablation_curve

BASES = ("lib", "pca")


@dataclass
class LMInteraction(Result):
    """For each basis (``lib``, ``pca``): ``importance[basis][l]`` per residual layer ``0..L`` (LIB: eigenvalues
    of ``M``; PCA: of ``G``), ``edges["basis/l"]`` ``(top, top)`` between layers ``l`` and ``l + 1``; ``rows``:
    modules, Newman's Q and the share of edge weight carried by the strongest 10% of edges; ``curves[basis][i]``:
    loss with the stream before block ``curve_layers[i]`` rebuilt from its top ``counts[n]`` directions;
    ``full_loss``: the intact model's (cross-entropy in nats; for an encoder the fraction of the final stream's
    mean square lost, 0 intact)."""

    kind = "lm_interaction"
    model: str
    n_tokens: int
    top: int
    importance: dict[str, list[list[float]]]
    edges: dict[str, Tensor]
    rows: list[dict]
    curve_layers: list[int]
    counts: list[int]
    curves: dict[str, list[list[float]]]
    full_loss: float

    def summary(self) -> str:
        lines = [f"{self.model}: residual-stream interaction basis vs PCA on {self.n_tokens} tokens "
                 f"(edges among the top {self.top} directions per layer); intact loss {self.full_loss:.4f}"]
        lines += [f"  {r['basis']}: {r['modules']} modules, Q = {r['Q']:.3f}; strongest 10% of edges carry "
                  f"{r['top 10% edge share']:.1%} of the edge weight" for r in self.rows]
        for i, layer in enumerate(self.curve_layers):
            k = min(range(len(self.counts)), key=lambda c: abs(self.counts[c] - self.top))
            lines.append(f"  stream before block {layer}, top {self.counts[k]} directions kept: loss "
                         + ", ".join(f"{b} {self.curves[b][i][k]:.4f}" for b in self.curves))
        return "\n".join(lines)

    def table(self) -> list[dict]:
        return self.rows

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        from paramlens.report import plots

        fig, axes = plots.panels(3, 4.7, 3.6)
        lib = self.importance["lib"]
        for layer in sorted({0, len(lib) // 2, len(lib) - 2}):
            vals = torch.tensor(lib[layer])
            axes[0].semilogy((vals / vals[0].clamp_min(1e-300)).clamp_min(1e-12), label=f"layer {layer}")
        axes[0].set_xlabel("LIB direction")
        axes[0].set_ylabel("importance / largest")
        axes[0].legend(fontsize=7)
        for i, layer in enumerate(self.curve_layers):
            for b, style in zip(self.curves, ("-", "--")):
                axes[1].semilogx(self.counts, self.curves[b][i], style, marker=".", color=f"C{i}",
                                 label=f"{b}, before block {layer}")
        axes[1].axhline(self.full_loss, color="k", lw=0.8)
        axes[1].set_xlabel("top directions kept")
        axes[1].set_ylabel("loss")
        axes[1].legend(fontsize=7)
        mid = len(lib) // 2 - 1
        edges = self.edges[f"lib/{mid}"]
        image = axes[2].imshow(edges.clamp_min(1e-12 * float(edges.max())).log10().numpy(), cmap="viridis",
                               aspect="auto")
        axes[2].set_xlabel(f"LIB direction, layer {mid}")
        axes[2].set_ylabel(f"LIB direction, layer {mid + 1}")
        fig.colorbar(image, ax=axes[2], label="log10 edge")
        return [plots.save(fig, folder / f"{prefix}lm_interaction.png", "Left: LIB importance spectra. Middle: loss when the stream before a block "
                 "is rebuilt from its top directions (solid LIB, dashed PCA; black: intact). Right: edges between "
                 "the top LIB directions of two middle layers.")]


def _top_share(weights: list[Tensor], fraction: float = 0.1) -> float:
    """Share of the total edge weight carried by the strongest ``fraction`` of all edges."""
    flat = torch.cat([w.flatten() for w in weights]).sort(descending=True).values
    return float(flat[: max(1, int(fraction * len(flat)))].sum() / flat.sum().clamp_min(1e-300))


def lm_interaction(model: nn.Module, windows: Tensor, name: str, batch: int = 8, sources: int = 4, top: int = 16,
                   curve_layers: list[int] | None = None, seed: int = 0, progress: bool = True) -> LMInteraction:
    """LIB and PCA of every residual-stream layer of ``model`` on token ``windows`` ``(n, T)``; edges among the ``top``
    directions; ablation curves before ``curve_layers`` (default: blocks at a quarter, half and three
    quarters of the depth)."""
    n_blocks = len(blocks_of(model))
    curve_layers = curve_layers or sorted({n_blocks // 4, n_blocks // 2, (3 * n_blocks) // 4})
    found = {"lib": residual_basis(model, windows, batch, sources, seed=seed, progress=progress),
             "pca": residual_basis(model, windows, batch, kind="pca")}
    d = found["pca"][0].vectors.shape[0]
    counts = sorted({2**i for i in range(d.bit_length())} | {d})
    edges, rows, curves, full = {}, [], {}, 0.0
    for basis, bases in found.items():
        weights = residual_edges(model, windows, bases, batch, sources, seed, top, progress)
        edges.update({f"{basis}/{l}": w for l, w in enumerate(weights)})
        mods = modules(weights, "sqrt", seed)
        rows.append({"basis": basis, "modules": mods.n_communities, "Q": mods.q,
                     "top 10% edge share": _top_share(weights)})
        curves[basis] = []
        for layer in curve_layers:
            full, losses = stream_ablation_curve(model, windows, layer, bases[layer], counts, batch)
            curves[basis].append(losses)
    importance = {b: [x.importance.tolist() for x in bases] for b, bases in found.items()}
    return LMInteraction(name, windows.numel(), top, importance, edges, rows, curve_layers,
                         counts, curves, full)
