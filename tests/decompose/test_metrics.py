"""Metrics on decompositions whose score is known by construction."""

import torch

from paramlens.core.weights import select
from paramlens.decompose import metrics
from paramlens.decompose.spd import SPDMethod, SPDModel
from paramlens.models.toy.tms import TMS, TMSConfig


def exact_decomposition(model, C, scale=1.0):
    """An SPD whose first n_features subcomponents are exactly the TMS features (times ``scale``)."""
    targets = select(model, ["linear1", "linear2"])
    spd = SPDModel(targets, C)
    W = model.linear1.weight.detach()
    n = W.shape[1]
    with torch.no_grad():
        for t in targets:
            comp = spd.component(t)
            comp.U.zero_()
            comp.V.zero_()
            for i in range(n):
                if t.name == "linear1":
                    comp.V[i, i], comp.U[i] = 1.0, scale * W[:, i]
                else:
                    comp.V[:, i], comp.U[i, i] = scale * W[:, i], 1.0
    return spd, targets


def test_mmcs_and_ml2r_of_the_true_mechanisms():
    torch.manual_seed(0)
    model = TMS(TMSConfig(n_features=6, n_hidden=3))
    gt = model.ground_truth()
    for scale, expected_ratio in [(1.0, 1.0), (0.5, 0.5)]:
        spd, targets = exact_decomposition(model, C=10, scale=scale)
        for t in targets:
            truth = metrics.mechanism_outputs(gt.matrices[t.name], gt.input_directions[t.name])
            mmcs, ml2r, cos = metrics.mmcs_ml2r(SPDMethod.outputs_along(spd, t, gt.input_directions[t.name]), truth)
            assert abs(mmcs - 1) < 1e-6 and abs(ml2r - expected_ratio) < 1e-6
            assert torch.equal(cos.argmax(1), torch.arange(6))


def test_random_components_score_high_mmcs_in_two_dimensions():
    """The chance level the issue warns about: random U, V on TMS 5-2 already give MMCS near 0.98."""
    torch.manual_seed(0)
    model = TMS(TMSConfig())
    gt = model.ground_truth()
    spd = SPDModel(select(model, "linear1"), 20)
    truth = metrics.mechanism_outputs(gt.matrices["linear1"], gt.input_directions["linear1"])
    mmcs, _, _ = metrics.mmcs_ml2r(SPDMethod.outputs_along(spd, spd.targets[0], gt.input_directions["linear1"]), truth)
    assert 0.9 < mmcs < 1.0


def test_ci_patterns():
    eye = torch.eye(4)
    assert metrics.identity_ci_error(torch.cat([eye, torch.zeros(4, 3)], 1)) == 0
    shared = eye.clone()
    shared[1] = shared[0]  # two features on the same subcomponent, plus feature 1's own column is empty
    assert metrics.identity_ci_error(shared) == 1
    noisy = eye.clone()
    noisy[2, 3] = 0.5
    assert metrics.identity_ci_error(noisy) == 1
    dense = torch.cat([torch.ones(5, 2), torch.zeros(5, 4)], 1)
    assert metrics.dense_ci_error(dense, k=2) == 0 and metrics.dense_ci_error(dense, k=3) == 5
    g = torch.tensor([[0.0, 0.9, 0.05], [0.0, 0.2, 0.0]])
    assert metrics.ci_l0(g) == 1.0 and metrics.alive(g).tolist() == [False, True, False]


def test_direction_recovery_needs_one_subcomponent_per_direction():
    directions = torch.eye(3)
    V = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.1, 0.0], [0.0, 0.0, 0.0, 5.0]])
    alive = torch.tensor([True, True, True, True])
    assert metrics.direction_recovery(V, directions, alive) == {"direction_cos": 1.0, "directions_recovered": 3.0}
    alive[3] = False  # direction 2 has only a dead subcomponent
    assert metrics.direction_recovery(V, directions, alive)["directions_recovered"] == 2.0
    shared = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    everyone = torch.ones(4, dtype=torch.bool)  # directions 0 and 1 share subcomponent 0: neither has its own
    assert metrics.direction_recovery(shared, directions, everyone, threshold=0.5)["directions_recovered"] == 1.0


def test_direction_recovery_ignores_what_lies_outside_the_inputs_span():
    directions = torch.eye(4)[:2]  # inputs live in the first two coordinates of a 4-d space
    V = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, -3.0]])  # large parts no input can reach
    alive = torch.ones(2, dtype=torch.bool)
    assert metrics.direction_recovery(V, directions, alive) == {"direction_cos": 1.0, "directions_recovered": 2.0}
    V[1, 0] = 1.0  # now subcomponent 0 reads both directions equally: cos 0.707
    assert metrics.direction_recovery(V, directions, alive)["directions_recovered"] == 1.0
