"""Attribution graph edges against their closed form on a two-layer linear model."""

import pytest
import torch
from torch import nn

from paramlens.components.graph import attribution_graph
from paramlens.core.weights import select
from paramlens.decompose.spd import SPDConfig, SPDMethod
from paramlens.errors import ParamLensError


class Linear2(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin1 = nn.Linear(4, 3, bias=False)
        self.lin2 = nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.lin2(self.lin1(x))


def test_edges_are_gradient_times_importance_in_closed_form():
    """With constant importances ``g`` (gates that output their bias), ``h = sum_i g1_i u1_i (v1_i . x)``:
    ``lin1:i -> lin2:j`` is ``sum_n |(v2_j . u1_i)(v1_i . x_n)| g1_i``; ``lin1:i -> output:k`` is
    ``sum_n |sum_j g2_j u2_jk (v2_j . u1_i)(v1_i . x_n)| g1_i``; ``lin2:j -> output:k`` is
    ``sum_n |u2_jk (v2_j . h_n)| g2_j``."""
    torch.manual_seed(0)
    model = Linear2()
    targets = select(model, ["lin1", "lin2"])
    spd = SPDMethod.build(model, targets, SPDConfig(C=3))
    g1, g2 = torch.tensor([1.0, 0.5, 0.25]), torch.tensor([0.75, 1.0, 0.5])
    with torch.no_grad():
        for gates, g in ((spd.gates["lin1"], g1), (spd.gates["lin2"], g2)):
            gates.w1.zero_()
            gates.b1.zero_()
            gates.w2.zero_()
            gates.b2.copy_(g)
    x = torch.randn(10, 4)
    graph = attribution_graph(SPDMethod, spd, model, targets, x.split(4), progress=False)
    V1, U1 = spd.components["lin1"].V.detach(), spd.components["lin1"].U.detach()  # (4, 3), (3, 3)
    V2, U2 = spd.components["lin2"].V.detach(), spd.components["lin2"].U.detach()  # (3, 3), (3, 2)
    a1 = x @ V1  # (n, C)
    coupling = U1 @ V2  # (i, j): u1_i . v2_j
    want = (a1[:, :, None] * coupling[None]).abs().sum(0) * g1[:, None]
    assert torch.allclose(graph.edges["lin1->lin2"], want, atol=1e-5)
    via = torch.einsum("ni,ij,j,jk->nik", a1, coupling, g2, U2)
    assert torch.allclose(graph.edges["lin1->output"], via.abs().sum(0) * g1[:, None], atol=1e-5)
    h = (a1 * g1) @ U1
    direct = torch.einsum("nj,jk->njk", h @ V2, U2)
    assert torch.allclose(graph.edges["lin2->output"], direct.abs().sum(0) * g2[:, None], atol=1e-5)
    assert graph.positions == 10 and graph.outputs == ["output:0", "output:1"]
    pruned = graph.pruned(0.5)
    weights = [e["weight"] for e in pruned]
    assert weights == sorted(weights, reverse=True) and sum(weights) >= 0.5 * sum(
        float(m.sum()) for m in graph.edges.values()) > sum(weights[:-1])


def test_an_apd_run_has_no_subcomponent_graph():
    class Stub:
        name = "apd"

    with pytest.raises(ParamLensError, match="reads SPD subcomponents"):
        attribution_graph(Stub, None, None, [], [], progress=False)
