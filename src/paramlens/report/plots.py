"""Matplotlib figures for reports, drawn off-screen (Agg) and saved as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def heatmap(path: Path, matrix: Tensor, title: str, xlabel: str = "", ylabel: str = "",
            value_range: tuple[float, float] | None = None) -> str:
    """A heatmap of a 2-D tensor; returns the file name.

    Without ``value_range`` the colours diverge around 0 (symmetric scale); with it, a sequential scale
    over that range (importances in ``(0, 1)``).
    """
    m = matrix.detach().float().cpu().numpy()
    if value_range is None:
        lim = float(np.abs(m).max()) if m.size else 1.0
        cmap, (vmin, vmax) = "RdBu_r", (-(lim or 1.0), lim or 1.0)
    else:
        cmap, (vmin, vmax) = "magma_r", value_range
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return _save(fig, path)


def columns_2d(path: Path, W: Tensor, title: str) -> str:
    """Arrows for the columns of a ``(2, n)`` matrix (the feature directions of TMS 5-2)."""
    w = W.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    lim = float(np.abs(w).max()) * 1.25 or 1.0
    for i in range(w.shape[1]):
        ax.annotate("", xy=(w[0, i], w[1, i]), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": f"C{i}"})
        ax.text(w[0, i] * 1.08, w[1, i] * 1.08, str(i), color=f"C{i}", ha="center", va="center")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)
    ax.axhline(0, color="#ccc", lw=0.5)
    ax.axvline(0, color="#ccc", lw=0.5)
    return _save(fig, path)


def bars(path: Path, values: Tensor, title: str, xlabel: str, ylabel: str, reference: float | None = None) -> str:
    """One bar per entry of a 1-D tensor, with an optional dashed reference line."""
    v = values.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(np.arange(len(v)), v, color="C0", width=0.8)
    if reference is not None:
        ax.axhline(reference, color="C3", ls="--", lw=1)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return _save(fig, path)


def curves(path: Path, history: dict[str, list[tuple[float, float]]], title: str, ylabel: str, log: bool = True) -> str:
    """Lines ``{label: [(x, y), ...]}`` on one axis (loss curves)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, points in history.items():
        xs, ys = zip(*points) if points else ((), ())
        ax.plot(xs, ys, label=label)
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    ax.legend(fontsize=8)
    return _save(fig, path)


def stacked_shares(path: Path, shares: Tensor, title: str, labels: list[str]) -> str:
    """Stacked bars of an ``(n, k)`` tensor whose rows sum to 1 (per-feature share of each layer)."""
    s = shares.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bottom = np.zeros(len(s))
    for j in range(s.shape[1]):
        ax.bar(np.arange(len(s)), s[:, j], bottom=bottom, width=1.0, label=labels[j], color=f"C{j}")
        bottom += s[:, j]
    ax.set(title=title, xlabel="feature", ylabel="share", ylim=(0, 1))
    ax.legend(fontsize=8)
    return _save(fig, path)
