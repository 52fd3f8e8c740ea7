import gzip
import struct

import numpy as np
import pytest

from paramlens.core.images import load_images
from paramlens.errors import ParamLensError


def write_idx(path, array):
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_files_are_read_as_images_in_unit_range(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 3)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    data = load_images("fashion-mnist", folder=tmp_path)
    assert data.x_train.shape == (6, 784) and data.x_test.shape == (3, 784)
    assert 0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1
    assert data.y_train.tolist() == [0, 1, 2, 3, 4, 5] and data.classes[9] == "Ankle boot"


def test_missing_data_names_the_package_to_install(tmp_path):
    with pytest.raises(ParamLensError, match="dataset-fashion-mnist"):
        load_images("fashion-mnist", folder=tmp_path)
    with pytest.raises(ParamLensError, match="unknown image dataset"):
        load_images("cifar")


def test_bundled_digit_sets_are_shuffled_and_split():
    data = load_images("digits")
    assert data.x_train.shape == (1500, 64) and data.image_shape == (8, 8)
    mnist = load_images("mnist")
    assert mnist.x_train.shape == (4000, 784) and mnist.x_test.shape == (1000, 784)
    assert len(set(mnist.y_train[:30].tolist())) > 5  # the bundled file is sorted by class; the split must mix
