"""Harvest of a toy model: an SPD of TMS 5-2 built exactly from its weights, one subcomponent per feature
(the ``exact`` fixture)."""

import pytest
import torch
import torch.nn.functional as F

from paramlens.components import HarvestConfig, Units, harvest_model
from paramlens.components.known import known_mechanisms
from paramlens.decompose.spd import SPDMethod


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


def test_each_feature_unit_is_named_after_its_true_feature(exact):
    model, targets, spd = exact
    units = Units.of(SPDMethod, targets, 5)
    known = known_mechanisms(SPDMethod, spd, model, targets, units)
    for i in model.represented().nonzero().flatten().tolist():
        for target in ("linear1", "linear2"):
            k = known[units.index(f"{target}:{i}")]
            assert k["mechanism"] == f"feature {i}" and k["score"] == pytest.approx(1.0) and k["by"] == "block"
