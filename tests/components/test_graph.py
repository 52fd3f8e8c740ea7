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


def _constant_gates(spd, importances):
    """Gates that output their bias: importance ``importances[target]`` ``(C,)`` on every input."""
    with torch.no_grad():
        for name, g in importances.items():
            gates = spd.gates[name]
            gates.w1.zero_()
            gates.b1.zero_()
            gates.w2.zero_()
            gates.b2.copy_(g)


def test_edges_are_gradient_times_importance_in_closed_form():
    """With constant importances ``g`` (gates that output their bias), ``h = sum_i g1_i u1_i (v1_i . x)``:
    ``lin1:i -> lin2:j`` is ``sum_n |(v2_j . u1_i)(v1_i . x_n)| g1_i g2_j``; ``lin1:i -> output:k`` is
    ``sum_n |sum_j g2_j u2_jk (v2_j . u1_i)(v1_i . x_n)| g1_i``; ``lin2:j -> output:k`` is
    ``sum_n |u2_jk (v2_j . h_n)| g2_j``; ``input:k -> lin1:i`` is ``sum_n |V1_ki x_nk| g1_i`` and ``input:k -> lin2:j`` is
    ``sum_n |sum_i g1_i (u1_i . v2_j) V1_ki x_nk| g2_j``."""
    torch.manual_seed(0)
    model = Linear2()
    targets = select(model, ["lin1", "lin2"])
    spd = SPDMethod.build(model, targets, SPDConfig(C=3))
    g1, g2 = torch.tensor([1.0, 0.5, 0.25]), torch.tensor([0.75, 1.0, 0.5])
    _constant_gates(spd, {"lin1": g1, "lin2": g2})
    x = torch.randn(10, 4)
    graph = attribution_graph(SPDMethod, spd, model, targets, x.split(4), progress=False)
    V1, U1 = spd.components["lin1"].V.detach(), spd.components["lin1"].U.detach()  # (4, 3), (3, 3)
    V2, U2 = spd.components["lin2"].V.detach(), spd.components["lin2"].U.detach()  # (3, 3), (3, 2)
    a1 = x @ V1  # (n, C)
    coupling = U1 @ V2  # (i, j): u1_i . v2_j
    want = (a1[:, :, None] * coupling[None]).abs().sum(0) * g1[:, None] * g2[None, :]
    assert torch.allclose(graph.edges["lin1->lin2"], want, atol=1e-5)
    via = torch.einsum("ni,ij,j,jk->nik", a1, coupling, g2, U2)
    assert torch.allclose(graph.edges["lin1->output"], via.abs().sum(0) * g1[:, None], atol=1e-5)
    h = (a1 * g1) @ U1
    direct = torch.einsum("nj,jk->njk", h @ V2, U2)
    assert torch.allclose(graph.edges["lin2->output"], direct.abs().sum(0) * g2[:, None], atol=1e-5)
    assert torch.allclose(graph.edges["input->lin1"], (x[:, :, None] * V1[None]).abs().sum(0) * g1, atol=1e-5)
    through = torch.einsum("i,ij,ki,nk->nkj", g1, coupling, V1, x)
    assert torch.allclose(graph.edges["input->lin2"], through.abs().sum(0) * g2, atol=1e-5)
    assert graph.positions == 10 and graph.outputs == ["output:0", "output:1"]
    assert graph.inputs == [f"input:{k}" for k in range(4)]
    pruned = graph.pruned(0.5)
    kind = lambda e: "input" if e["source"].startswith("input:") else "output" if e["target"].startswith(
        "output:") else "units"
    for k, keys in {"input": ["input->lin1", "input->lin2"], "units": ["lin1->lin2"],
                    "output": ["lin1->output", "lin2->output"]}.items():
        weights = [e["weight"] for e in pruned if kind(e) == k]
        assert weights == sorted(weights, reverse=True) and sum(weights) >= 0.5 * sum(
            float(graph.edges[key].sum()) for key in keys) > sum(weights[:-1]), k


def test_an_apd_run_has_no_subcomponent_graph():
    class Stub:
        name = "apd"

    with pytest.raises(ParamLensError, match="reads SPD subcomponents"):
        attribution_graph(Stub, None, None, [], [], progress=False)


class TokenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.lin1 = nn.Linear(3, 2, bias=False)
        self.unembed = nn.Linear(2, 3, bias=False)  # fewer outputs than tokens, as a compiled program may have

    def forward(self, tokens):
        return self.unembed(self.lin1(self.embed(tokens)))


def test_token_edges_sum_gradient_times_embedding_over_the_positions_of_each_token():
    """``a_i(p) = v1_i . E[x_p]``: ``input:t -> lin1:i`` is ``count(t) |v1_i . E[t]| g_i``; only tokens seen are
    nodes."""
    torch.manual_seed(0)
    model = TokenLinear()
    targets = select(model, ["lin1"])
    spd = SPDMethod.build(model, targets, SPDConfig(C=2))
    g = torch.tensor([0.5, 1.0])
    _constant_gates(spd, {"lin1": g})
    x = torch.tensor([[0, 1, 1, 3], [3, 3, 1, 0]])
    graph = attribution_graph(SPDMethod, spd, model, targets, x.split(1), progress=False)
    V1, E = spd.components["lin1"].V.detach(), model.embed.weight.detach()
    seen = torch.tensor([0, 1, 3])
    want = torch.bincount(x.reshape(-1))[seen, None] * (E[seen] @ V1).abs() * g
    assert graph.inputs == ["input:0", "input:1", "input:3"] and graph.outputs == ["output"]
    assert torch.allclose(graph.edges["input->lin1"], want, atol=1e-5)
    assert graph.edges["lin1->output"].shape == (2, 1) and bool((graph.edges["lin1->output"] > 0).all())


class OneHotLinear(nn.Module):
    """A token model with no embedding module: its first layer reads one-hot tokens."""

    def __init__(self):
        super().__init__()
        self.lin0 = nn.Linear(5, 3, bias=False)
        self.lin1 = nn.Linear(3, 4, bias=False)

    def forward(self, tokens):
        return self.lin1(self.lin0(torch.nn.functional.one_hot(tokens, 5).float()))


def test_a_token_model_without_an_embedding_module_has_no_input_edges():
    torch.manual_seed(0)
    model = OneHotLinear()
    targets = select(model, ["lin0", "lin1"])
    spd = SPDMethod.build(model, targets, SPDConfig(C=2))
    graph = attribution_graph(SPDMethod, spd, model, targets, [torch.tensor([[0, 1, 4, 2]])], progress=False)
    assert set(graph.edges) == {"lin0->lin1", "lin0->output", "lin1->output"}
