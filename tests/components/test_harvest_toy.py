"""Harvest of a toy model: an SPD of TMS 5-2 built exactly from its weights, one subcomponent per feature."""

import pytest
import torch
import torch.nn.functional as F

from paramlens.components import HarvestConfig, Units, harvest_model
from paramlens.core.weights import select
from paramlens.decompose.spd import SPDConfig, SPDMethod
from paramlens.models.toy.tms import TMSConfig, train_tms


@pytest.fixture(scope="module")
def exact():
    """TMS 5-2 and an SPD whose ``linear1:i`` reads feature ``i`` (``V_i = e_i``, ``U_i = W[:, i]``) with a gate
    that opens on it, and whose ``linear2:i`` writes output ``i`` (``V_i = W[:, i]``, ``U_i = e_i``)."""
    model, _ = train_tms(TMSConfig(n_steps=2000, seed=1), progress=False)
    targets = select(model, ["linear1", "linear2"])
    spd = SPDMethod.build_empty(targets, SPDConfig(C=5))
    W = model.linear1.weight.detach()  # (2, 5)
    with torch.no_grad():
        for p in spd.parameters():
            p.zero_()
        spd.components["linear1"].V.copy_(torch.eye(5))
        spd.components["linear1"].U.copy_(W.T)
        spd.components["linear2"].V.copy_(W)
        spd.components["linear2"].U.copy_(torch.eye(5))
        for gates in spd.gates.values():
            gates.w1[:, 0], gates.w2[:, 0] = 1.0, 1.0  # importance gelu(a), below 1 for a <= 1
    return model, targets, spd


def test_each_feature_unit_fires_on_its_feature_and_promotes_its_output(exact):
    model, targets, spd = exact
    x = model.source().sample(4000, torch.Generator().manual_seed(0))
    h = harvest_model(SPDMethod, spd, model, targets, x, HarvestConfig(top_k=8, effect_contexts=4, top_tokens=2),
                      progress=False)
    units = Units.of(SPDMethod, targets, 5)
    assert h.contexts.shape == (10, 8, 5) and h.token_fires.numel() == 0
    for i in model.represented().nonzero().flatten().tolist():
        s = units.index(f"linear1:{i}")
        assert float(h.density[s]) == pytest.approx(float((F.gelu(x[:, i]) > 0.1).float().mean()))
        assert torch.allclose(h.contexts[s][:, i], x[:, i].topk(8).values)  # its top inputs: feature i highest
        assert int(h.promoted[s, 0]) == i
        assert float(h.effect_size[s]) > 0
        assert int(h.promoted[units.index(f"linear2:{i}"), 0]) == i  # writes output i alone
