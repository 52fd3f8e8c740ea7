"""Matplotlib figures for reports, drawn off-screen (Agg) and saved as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Titles and labels hold model, tensor and folder names from the user's files: a '$' in them is text, not math.
plt.rcParams["text.parse_math"] = False
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def panels(n: int = 1, width: float = 5.0, height: float = 3.2) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of ``n`` side-by-side panels, ``width`` x ``height`` inches each, in the report's style; draw on the
    axes, then :func:`save` it."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def save(fig: plt.Figure, path: Path, caption: str) -> tuple[str, str]:
    """Write ``fig`` to ``path`` (PNG, the report's resolution) and close it; returns ``(file name, caption)``, an
    entry of a result's ``figures()``."""
    return _save(fig, path), caption


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


def curves(path: Path, history: dict[str, list[tuple[float, float]]], title: str, ylabel: str, log: bool = True,
           xlabel: str = "step", reference: float | None = None) -> str:
    """Lines ``{label: [(x, y), ...]}`` on one axis (loss curves), with an optional dashed reference line."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, points in history.items():
        xs, ys = zip(*points) if points else ((), ())
        ax.plot(xs, ys, label=label)
    if reference is not None:
        ax.axhline(reference, color="#888", ls="--", lw=1)
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    return _save(fig, path)


def image_grid(path: Path, images: Tensor, title: str, row_labels: list[str], col_labels: list[str],
               diverging: bool = True) -> str:
    """Images ``(rows, cols, height, width)`` in a grid; ``diverging``: red/blue around 0, one scale per
    image (eigenvectors), else grey over ``[0, 1]`` (pictures)."""
    imgs = images.detach().float().cpu().numpy()
    rows, cols = imgs.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols + 0.8, 1.25 * rows + 0.5), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax, im = axes[r, c], imgs[r, c]
            if diverging:
                lim = float(np.abs(im).max()) or 1.0
                ax.imshow(im, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            else:
                ax.imshow(im, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
            if r == 0:
                ax.set_title(col_labels[c], fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def spectra(path: Path, values: list[Tensor], labels: list[str], title: str, top: int = 30) -> str:
    """One small stem plot per spectrum: the ``top`` eigenvalues by ``|lambda|``, in that order."""
    n = len(values)
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 1.9 * rows), squeeze=False, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        v = values[i][:top].detach().double().cpu().numpy()
        ax.bar(np.arange(len(v)), v, color=np.where(v >= 0, "C3", "C0"), width=0.8)
        ax.axhline(0, color="#999", lw=0.5)
        ax.set_title(labels[i], fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
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
