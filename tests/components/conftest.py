"""Fixtures of the components tests."""

import pytest
import torch

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
