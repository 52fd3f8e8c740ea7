"""How far each layer's hidden states are rotated from the current-token space and from the output space.

For every layer ``l``, two ridge maps (``alpha = 1``, intercept not penalised) are fitted from the hidden
state ``h_l`` ``(d,)`` of each token: one to the input embedding of the same token, one to the final hidden
state (the raw residual stream after the last block). The rotation of a map is the median ``|arg lambda|``
over its eigenvalues, in degrees: 0 when the map only stretches, up to 180. A layer that still holds the
current token reads close to 0 toward the input; a layer already in next-token (output) space reads close to
0 toward the output. Sums are streamed, so the corpus length does not bound memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from paramlens.core.runs import Result
from paramlens.core.streams import require_tokens, stream_batches, token_embeddings
from paramlens.geometry.ridge import RidgeSums


def map_rotation(w: Tensor) -> float:
    """Median ``|arg lambda|`` in degrees over the eigenvalues of the square map ``w`` ``(d, d)``."""
    eig = np.linalg.eigvals(w.double().numpy())
    return float(np.degrees(np.median(np.abs(np.angle(eig)))))


@dataclass
class Rotation(Result):
    """``to_input[l]`` / ``to_output[l]``: rotation (degrees) of the ridge map from layer ``l``'s hidden states
    (``l = 0``: the block input after embedding) to the input token embeddings / the final hidden states."""

    kind = "rotation"
    model: str
    to_input: list[float]
    to_output: list[float]
    n_tokens: int

    def summary(self) -> str:
        rows = [f"{self.model}: rotation (median |arg eigenvalue|, degrees) on {self.n_tokens} tokens",
                "  layer  to input  to output"]
        rows += [f"  {i:5d}  {a:8.1f}  {b:9.1f}" for i, (a, b) in enumerate(zip(self.to_input, self.to_output))]
        return "\n".join(rows)

    def table(self) -> list[dict]:
        return [{"layer": i, "to input (deg)": a, "to output (deg)": b}
                for i, (a, b) in enumerate(zip(self.to_input, self.to_output))]

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        from paramlens.report import plots

        fig, (ax,) = plots.panels(1)
        ax.plot(self.to_input, marker=".", label="toward input embeddings")
        ax.plot(self.to_output, marker=".", label="toward final hidden states")
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("rotation (degrees)")
        ax.set_title(self.model, fontsize=9)
        ax.legend()
        return [plots.save(fig, folder / f"{prefix}rotation.png", "Median rotation angle of the ridge maps from each layer's hidden states to the "
                 "input token embeddings and to the final hidden states.")]


@torch.no_grad()
def rotation(model: nn.Module, windows: Tensor, batch: int = 8, alpha: float = 1.0, name: str = "model",
             weights: Mapping | None = None) -> Rotation:
    """Rotation toward input and toward output of every layer, from token ``windows`` ``(n, T)``; ``weights``:
    matrices to substitute (e.g. a subnetwork's masked weights), as in :func:`paramlens.core.weights.run_with`."""
    require_tokens(model, windows.numel(), "rotation maps")
    embed = token_embeddings(model).float()
    to_in: list[RidgeSums] = []
    to_out: list[RidgeSums] = []
    n = 0
    for ids, h in stream_batches(model, windows, batch, weights):
        flat = h.flatten(1, 2)  # (L + 1, N, d)
        e, final = embed[ids.flatten()], flat[-1]
        if not to_in:
            d = flat.shape[-1]
            to_in = [RidgeSums(d, e.shape[1]) for _ in range(len(flat))]
            to_out = [RidgeSums(d, d) for _ in range(len(flat))]
        for layer in range(len(flat)):
            to_in[layer].add(flat[layer], e)
            to_out[layer].add(flat[layer], final)
        n += flat.shape[1]

    def angles(sums: list[RidgeSums]) -> list[float]:
        return [map_rotation(s.solve(alpha)[:-1]) for s in sums]

    return Rotation(name, angles(to_in), angles(to_out), n)
