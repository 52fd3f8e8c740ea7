import math

import pytest
import torch

from paramlens.geometry.rotation import Rotation, map_rotation, rotation
from tests.geometry.toy_lm import Tokenwise, ToyLM, rotation_blocks

D = 16


@pytest.mark.parametrize("degrees", [0.0, 30.0, 75.0])
def test_rotation_angle_of_a_known_map(degrees):
    assert map_rotation(rotation_blocks(D, degrees) * 1.7) == pytest.approx(degrees, abs=1e-4)


def test_layers_rotated_by_known_angles_read_those_angles():
    """Block 1 rotates every token's state by 30 degrees, block 2 by another 45: toward the input the
    layers read 0, 30, 75; toward the output (after block 2) they read 75, 45, 0."""
    eye = torch.eye(D)
    model = ToyLM([Tokenwise(rotation_blocks(D, 30) - eye), Tokenwise(rotation_blocks(D, 45) - eye)], D, vocab=64)
    windows = torch.randint(0, 64, (64, 32), generator=torch.Generator().manual_seed(0))
    r = rotation(model.eval(), windows)
    assert r.to_input == pytest.approx([0, 30, 75], abs=0.5)
    assert r.to_output == pytest.approx([75, 45, 0], abs=0.5)
    assert math.isfinite(sum(r.to_input)) and r.n_tokens == 2048


def test_result_round_trips(tmp_path):
    r = Rotation("m", [0.0, 1.0], [2.0, 0.0], 10)
    r.save(tmp_path)
    assert Rotation.load(tmp_path) == r
    assert (tmp_path / r.figures(tmp_path)[0][0]).is_file()
