"""A trained residual ReLU network cut into shuffled pieces, with the true order kept as ground truth.

The network: ``x_{k+1} = x_k + C_k ReLU(E_k x_k + e_k) + c_k`` for ``n_blocks`` blocks (``E_k``: expand
``(d_hidden, d_model)``, ``C_k``: contract ``(d_model, d_hidden)``), then ``y = F x + f``. It is trained on a
smooth random regression target; the released data are its own predictions on ``n_rows`` inputs, so the
right order reproduces them exactly, beside the target it was trained on (a label, which it does not).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors.torch import save_file
from torch import Tensor, nn

from paramlens.models.train import TrainConfig, seeded, train


class PiecesConfig(TrainConfig):
    n_blocks: int = Field(48, ge=1)
    d_model: int = Field(48, ge=1)
    d_hidden: int = Field(96, ge=1)
    n_rows: int = Field(10_000, ge=1)
    n_steps: int = 1500
    batch_size: int = 512
    lr: float = 2e-3


class ResidualNet(nn.Module):
    def __init__(self, cfg: PiecesConfig):
        super().__init__()
        self.expand = nn.ModuleList(nn.Linear(cfg.d_model, cfg.d_hidden) for _ in range(cfg.n_blocks))
        self.contract = nn.ModuleList(nn.Linear(cfg.d_hidden, cfg.d_model) for _ in range(cfg.n_blocks))
        self.final = nn.Linear(cfg.d_model, 1)

    def forward(self, x: Tensor) -> Tensor:
        for e, c in zip(self.expand, self.contract):
            x = x + c(F.relu(e(x)))
        return self.final(x)


PIECE_FORMATS = ("safetensors", "pth", "npz")


@dataclass
class Shuffled:
    """``pieces[i]`` = ``(weight, bias)``; ``order``: piece ids of the true network, ``[E_0, C_0, E_1, C_1, ...,
    final]``; ``x`` ``(n_rows, d_model)`` inputs, ``y`` ``(n_rows, 1)`` the network's outputs and ``label``
    ``(n_rows, 1)`` the regression target it was trained on."""

    pieces: list[tuple[Tensor, Tensor]]
    order: list[int]
    x: Tensor
    y: Tensor
    label: Tensor

    def save(self, folder: str | Path, fmt: str = "safetensors", output: str = "y", label: str | None = None) -> Path:
        """``piece_<i>.<fmt>`` files (``fmt`` in :data:`PIECE_FORMATS`; ``pth``: ``torch.save`` of a ``Linear``
        layer's state dict) and ``data.csv``: inputs ``x0..``, the network's output in column ``output``, and with
        ``label`` the regression target in a column of that name."""
        if fmt not in PIECE_FORMATS:
            raise ValueError(f"piece format {fmt!r}; one of {PIECE_FORMATS}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for i, (w, b) in enumerate(self.pieces):
            _write_piece(folder / f"piece_{i}.{fmt}", w, b)
        header = ",".join([f"x{j}" for j in range(self.x.shape[1])] + [output] + ([label] if label else []))
        rows = torch.cat([self.x, self.y] + ([self.label] if label else []), dim=1).tolist()
        (folder / "data.csv").write_text(header + "\n" + "\n".join(",".join(f"{v:.9g}" for v in r) for r in rows) + "\n")
        return folder


def _write_piece(path: Path, weight: Tensor, bias: Tensor) -> None:
    """One piece in the format its suffix names: safetensors, ``.npz``, or (``.pth``) a ``Linear`` state dict."""
    if path.suffix == ".safetensors":
        save_file({"weight": weight.contiguous(), "bias": bias.contiguous()}, str(path))
    elif path.suffix == ".npz":
        np.savez(path, weight=weight.numpy(), bias=bias.numpy())
    else:
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        layer.load_state_dict({"weight": weight, "bias": bias})
        torch.save(layer.state_dict(), path)


def make_shuffled(cfg: PiecesConfig, progress: bool = False) -> Shuffled:
    """Train the network, then cut and shuffle it (seeded)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.n_rows, cfg.d_model, generator=gen)
    teacher = torch.randn(cfg.d_model, 8, generator=gen) / cfg.d_model**0.5
    target = torch.sin(x @ teacher).sum(-1, keepdim=True)
    model = seeded(lambda: ResidualNet(cfg), cfg.seed)
    with torch.no_grad():  # start close to the identity so the deep residual stack trains
        for c in model.contract:
            c.weight.mul_(0.1)

    class Rows:
        def sample(self, n: int, g: torch.Generator) -> Tensor:
            return torch.randint(0, cfg.n_rows, (n,), generator=g)

    train(model, Rows(), lambda m, idx: F.mse_loss(m(x[idx]), target[idx]), cfg, progress=progress)
    with torch.no_grad():
        y = model(x)
    pieces = [(m.weight.detach().clone(), m.bias.detach().clone())
              for pair in zip(model.expand, model.contract) for m in pair] + \
             [(model.final.weight.detach().clone(), model.final.bias.detach().clone())]
    perm = torch.randperm(len(pieces), generator=gen).tolist()  # new position of every piece
    shuffled = [None] * len(pieces)
    for old, new in enumerate(perm):
        shuffled[new] = pieces[old]
    return Shuffled(shuffled, perm, x, y, target)
