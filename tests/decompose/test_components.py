"""Subcomponents, gates and sigmoids against naive reference computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paramlens.core.weights import run_with, select
from paramlens.decompose.components import Gates, Subcomponents, lower_leaky_hard_sigmoid, upper_leaky_hard_sigmoid
from paramlens.decompose.forward import faithfulness, run_maps
from paramlens.decompose.spd import SPDModel


def test_batched_gates_equal_one_mlp_per_subcomponent():
    torch.manual_seed(0)
    gates = Gates(C=7, hidden=5)
    inner = torch.randn(11, 7)
    expected = torch.stack([
        F.gelu(inner[:, c : c + 1] * gates.w1[c] + gates.b1[c]) @ gates.w2[c] + gates.b2[c] for c in range(7)
    ], dim=1)
    assert torch.allclose(gates(inner), expected, atol=1e-6)


def test_masked_components_equal_per_example_weights():
    """((x V) * m) U + b is the layer run with its own weight sum_c m_c U_c V_c^T, example by example."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    target = select(model, "0")[0]
    comp = Subcomponents(target, C=9)
    x, mask = torch.randn(5, 6), torch.rand(5, 9)
    per_example = torch.einsum("bc,co,ic->boi", mask, comp.U, comp.V)  # (batch, d_out, d_in)
    expected = run_with(model, {target: per_example}, x, batched=True)
    assert torch.allclose(run_maps(model, {target: comp.masked(mask)}, x), expected, atol=1e-5)
    assert torch.allclose(run_maps(model, {target: comp.masked(None)}, x), run_with(model, {target: comp.weight()}, x),
                          atol=1e-5)
    assert torch.allclose(comp.matrices().sum(0), comp.weight(), atol=1e-6)


def test_embedding_and_conv1d_components():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(2)
    model = nn.Sequential(nn.Embedding(10, 4), Conv1D(3, 4))
    tokens = torch.randint(0, 10, (2, 5))
    for target in select(model, "*"):
        comp = Subcomponents(target, C=6)
        assert torch.allclose(run_maps(model, {target: comp.masked(None)}, tokens),
                              run_with(model, {target: comp.weight()}, tokens), atol=1e-5)


def test_leaky_hard_sigmoids():
    x = torch.tensor([-2.0, 0.0, 0.5, 1.0, 3.0])
    assert torch.allclose(lower_leaky_hard_sigmoid(x), torch.tensor([-0.02, 0.0, 0.5, 1.0, 1.0]))
    assert torch.allclose(upper_leaky_hard_sigmoid(x), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.02]))


def test_tied_targets_share_the_owner_subcomponents_transposed():
    from paramlens import ParamLensError
    from paramlens.decompose.spd import SPDModel
    from paramlens.models.toy.tms import TMS, TMSConfig

    torch.manual_seed(3)
    model = TMS(TMSConfig(n_features=6, n_hidden=3))
    targets = select(model, ["linear1", "linear2"])
    spd = SPDModel(targets, C=8, tied=model.tied_targets)
    spd.init_from(model)
    one, two = (spd.component(t) for t in targets)
    assert torch.equal(two.weight(), one.weight().T)
    assert sorted(spd.state_dict()) == sorted(k for k in spd.state_dict() if "linear2" not in k or "gates" in k)
    assert sum(p.numel() for p in spd.parameters()) == 8 * (6 + 3) + 2 * (3 * 8 * 16 + 8)
    x = torch.rand(4, 6)
    assert torch.allclose(run_maps(model, {targets[1]: two.masked(None)}, x),
                          run_with(model, {targets[1]: one.weight().T}, x), atol=1e-6)
    with torch.no_grad():
        model.linear2.weight.add_(0.1)
    with pytest.raises(ParamLensError, match="'linear2' is not the transpose of 'linear1'"):
        spd.init_from(model)
    with pytest.raises(ParamLensError, match="both must be targets"):
        SPDModel(targets[:1], C=8, tied=model.tied_targets)


def test_faithfulness_warmup_fits_the_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    targets = select(model, ["0", "2"])
    spd = SPDModel(targets, C=8)
    spd.init_from(model)

    def loss() -> float:
        return float(faithfulness(model, spd.owners, lambda t: spd.component(t).weight()).detach())

    before = loss()
    spd.warm_up(model, steps=300, lr=1e-2, weight_decay=0.0)
    assert loss() < 1e-3 * before


def test_apd_tied_targets_use_the_owner_components_transposed():
    from paramlens import ParamLensError
    from paramlens.decompose.apd import APDConfig, APDMethod
    from paramlens.models.toy.tms import TMS, TMSConfig

    torch.manual_seed(3)
    model = TMS(TMSConfig(n_features=6, n_hidden=3))
    targets = select(model, ["linear1", "linear2"])
    dec = APDMethod.build(model, targets, APDConfig(C=4, rank=2, tied=model.tied_targets))
    assert sorted(dec.state_dict()) == ["A.linear1", "B.linear1", "threshold"]  # linear2 owns nothing
    assert torch.allclose(dec.weight(targets[1]), dec.weight(targets[0]).T)
    x = torch.rand(5, 3)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    parts = dec.factors(targets[0])
    kept = sum(parts[0][c] @ parts[1][c] for c in (0, 2))  # (d_in1, d_out1): linear2's kept matrix, transposed
    assert torch.allclose(dec.masked(targets[1], mask)(x), x @ kept.T, atol=1e-6)
    with torch.no_grad():
        model.linear2.weight.add_(0.1)
    with pytest.raises(ParamLensError, match="'linear2' is not the transpose of 'linear1'"):
        APDMethod.build(model, targets, APDConfig(C=4, tied=model.tied_targets))
