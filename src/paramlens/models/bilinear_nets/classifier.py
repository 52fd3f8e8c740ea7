"""Bilinear image classifiers: optional linear embedding -> bilinear block(s) -> logits.

Two shapes:
- plain (``residual=False``): blocks are chained and the last one's projection ``P`` writes the logits
  directly; with one block and no embedding this is the paper's ``784 -> d_hidden -> 10`` model, whose
  class logits are exactly quadratic forms of the pixels.
- residual (``residual=True``): an embedding ``E`` (``d_model``) is required, each block adds to the
  residual stream, and a linear ``head`` reads the logits.

Trained with Gaussian input noise (a regulariser that makes eigenvectors cleaner) and weight decay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from paramlens.core.images import ImageSet
from paramlens.errors import ParamLensError
from paramlens.models.bilinear_nets.layers import Bilinear, Gate
from paramlens.models.train import TrainConfig, read_saved, seeded, train, validated


class ClassifierConfig(TrainConfig):
    kind: Literal["bilinear_classifier"] = "bilinear_classifier"
    dataset: str | None = Field(None, description="image dataset it is trained on (paramlens.core.images)")
    d_input: int = Field(784, ge=1)
    n_classes: int = Field(10, ge=2)
    d_model: int | None = Field(None, ge=1, description="width of the linear embedding; None: blocks read the input")
    d_hidden: int = Field(512, ge=1)
    n_blocks: int = Field(1, ge=1)
    residual: bool = False
    bias: bool = False
    gate: Gate = None
    input_noise: float = Field(0.0, ge=0, description="std of Gaussian noise added to training inputs")
    n_steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3

    @model_validator(mode="after")
    def _residual_needs_embedding(self) -> "ClassifierConfig":
        if self.residual and self.d_model is None:
            raise ValueError("a residual classifier needs d_model (the width of its embedding)")
        return self


class BilinearClassifier(nn.Module):
    """``(batch, d_input) -> (batch, n_classes)`` logits."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.d_model or cfg.d_input
        self.embed = nn.Linear(cfg.d_input, cfg.d_model, bias=False) if cfg.d_model else None
        if cfg.residual:
            self.blocks = nn.ModuleList(Bilinear(width, cfg.d_hidden, width, cfg.bias, cfg.gate)
                                        for _ in range(cfg.n_blocks))
            self.head = nn.Linear(width, cfg.n_classes, bias=False)
        else:
            sizes = [width] * cfg.n_blocks + [cfg.n_classes]
            self.blocks = nn.ModuleList(Bilinear(sizes[i], cfg.d_hidden, sizes[i + 1], cfg.bias, cfg.gate)
                                        for i in range(cfg.n_blocks))
            self.head = None

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x) if self.embed is not None else x
        for block in self.blocks:
            h = h + block(h) if self.cfg.residual else block(h)
        return self.head(h) if self.head is not None else h


class _Indices:
    """Data source of random training-row indices (the images stay in one tensor)."""

    def __init__(self, n: int):
        self.n = n

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randint(0, self.n, (n,), generator=generator)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 4096) -> float:
    """Top-1 accuracy in ``[0, 1]``."""
    with torch.no_grad():
        hits = sum(int((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return hits / len(x)


def train_classifier(cfg: ClassifierConfig, data: ImageSet, **kwargs) -> tuple[BilinearClassifier, list[dict]]:
    """Train from scratch on ``data``'s training split; ``kwargs`` go to :func:`paramlens.models.train.train`."""
    if data.n_pixels != cfg.d_input or int(data.y_train.max()) >= cfg.n_classes:
        raise ParamLensError(f"{data.name} has {data.n_pixels} pixels and {len(data.classes)} classes; the config "
                             f"expects d_input={cfg.d_input}, n_classes={cfg.n_classes}")
    model = seeded(lambda: BilinearClassifier(cfg), cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 7)

    def loss_fn(m: nn.Module, idx: Tensor) -> Tensor:
        x = data.x_train[idx]
        if cfg.input_noise:
            x = x + cfg.input_noise * torch.randn(x.shape, generator=noise_gen)
        return F.cross_entropy(m(x), data.y_train[idx])

    return model, train(model, _Indices(len(data.x_train)), loss_fn, cfg, **kwargs)


def load_classifier(folder: str | Path) -> BilinearClassifier:
    """Rebuild a classifier saved with :func:`paramlens.models.train.save_model`."""
    def build(config: dict) -> BilinearClassifier:
        if config.get("kind") != "bilinear_classifier":
            raise ParamLensError(f"{folder}: holds a '{config.get('kind')}' model, not a bilinear classifier")
        return BilinearClassifier(validated(ClassifierConfig, config, Path(folder)))

    return read_saved(folder, build)[1]
