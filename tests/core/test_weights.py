"""core.weights: selection, the (d_out, d_in) view, and substitution against hand-built models."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers.pytorch_utils import Conv1D

from paramlens import ParamLensError
from paramlens.core.weights import MapSlots, frozen, maps_replaced, matrices, run_with, select


class Net(nn.Module):
    """Embedding -> Conv1D -> ReLU -> Linear -> Bilinear(x, x): one of every supported layer."""

    def __init__(self, vocab: int, d: int, h: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.conv = Conv1D(h, d)  # GPT-2 layout: weight (d_in, d_out)
        self.proj = nn.Linear(h, d)
        self.bil = nn.Bilinear(d, d, 3)
        self.norm = nn.LayerNorm(d)

    def forward(self, tokens):
        x = self.embed(tokens)
        x = self.proj(torch.relu(self.conv(x)))
        x = self.norm(x)
        return self.bil(x, x)


def make_net(seed, vocab=7, d=4, h=5):
    torch.manual_seed(seed)
    net = Net(vocab, d, h)
    nn.init.normal_(net.conv.weight)
    return net


dims = st.integers(min_value=1, max_value=6)


def test_select_finds_every_kind_in_module_order():
    net = make_net(0)
    targets = select(net, "*")
    assert [(t.name, t.kind) for t in targets] == [
        ("embed", "embedding"), ("conv", "conv1d"), ("proj", "linear"), ("bil", "bilinear")]
    assert [t.shape for t in targets] == [(4, 7), (5, 4), (4, 5), (3, 16)]


def test_matrix_view_matches_the_layer_math():
    net = make_net(1)
    mats = matrices(net, select(net, "*"))
    x = torch.randn(2, 4)
    assert torch.allclose(net.conv(x), x @ mats["conv"].T + net.conv.bias, atol=1e-6)
    assert torch.equal(net.embed(torch.tensor([3])), mats["embed"][:, 3].unsqueeze(0))
    outer = torch.einsum("bi,bj->bij", x, x).flatten(1)
    assert torch.allclose(net.bil(x, x), outer @ mats["bil"].T + net.bil.bias, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), vocab=dims, d=dims, h=dims, n_tokens=st.integers(1, 5))
def test_substituting_each_weight_by_itself_is_bit_identical(seed, vocab, d, h, n_tokens):
    net = make_net(seed, vocab + 1, d, h)
    tokens = torch.randint(0, vocab + 1, (2, n_tokens))
    plain = net(tokens)
    targets = select(net, "*")
    for t in targets:
        assert torch.equal(run_with(net, {t: t.matrix(net)}, tokens), plain)
    assert torch.equal(run_with(net, {t: t.matrix(net) for t in targets}, tokens), plain)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), vocab=dims, d=dims, h=dims)
def test_substitution_equals_a_hand_built_model(seed, vocab, d, h):
    net = make_net(seed, vocab + 1, d, h)
    tokens = torch.randint(0, vocab + 1, (3, 2))
    gen = torch.Generator().manual_seed(seed)
    for t in select(net, "*"):
        new = torch.randn(*t.shape, generator=gen)
        built = copy.deepcopy(net)
        module = built.get_submodule(t.name)
        with torch.no_grad():  # write the matrix into the module's own layout by hand
            if t.kind == "linear":
                module.weight.copy_(new)
            elif t.kind in ("embedding", "conv1d"):
                module.weight.copy_(new.T)
            else:
                module.weight.copy_(new.reshape(module.weight.shape))
        before = [p.clone() for p in net.parameters()]
        assert torch.equal(run_with(net, {t.name: new}, tokens), built(tokens)), t.kind
        assert all(torch.equal(a, b) for a, b in zip(before, net.parameters())), "module was modified"


def test_per_example_weights_match_separate_runs():
    net = make_net(3)
    tokens = torch.randint(0, 7, (4, 3))
    target = select(net, "proj")[0]
    per_example = torch.randn(4, *target.shape)
    batched = run_with(net, {target: per_example}, tokens, batched=True)
    for b in range(4):
        single = run_with(net, {target: per_example[b]}, tokens[b : b + 1])
        assert torch.allclose(batched[b], single[0], atol=1e-6)


def test_gradients_reach_the_replacement():
    net = make_net(4)
    t = select(net, "conv")[0]
    replacement = t.matrix(net).detach().clone().requires_grad_(True)
    run_with(net, {t: replacement}, torch.tensor([[1, 2]])).sum().backward()
    assert replacement.grad is not None and replacement.grad.abs().sum() > 0
    assert net.conv.weight.grad is None


def test_frozen_stops_gradients_and_restores_them_even_on_error():
    net = make_net(4)
    net.embed.weight.requires_grad_(False)  # already frozen by the user: stays so
    with pytest.raises(RuntimeError, match="inside"):
        with frozen(net):
            assert not any(p.requires_grad for p in net.parameters())
            raise RuntimeError("inside")
    assert not net.embed.weight.requires_grad
    assert all(p.requires_grad for n, p in net.named_parameters() if n != "embed.weight")


def test_clear_errors():
    net = make_net(5)
    with pytest.raises(ParamLensError, match="matches no weight layer.*embed, conv, proj, bil"):
        select(net, "mlp.*")
    with pytest.raises(ParamLensError, match="'norm' is a LayerNorm"):
        select(net, "norm")
    with pytest.raises(ParamLensError, match=r"'proj' has shape \(5, 4\); expected \(4, 5\)"):
        run_with(net, {"proj": torch.zeros(5, 4)}, torch.tensor([[1]]))
    with pytest.raises(ParamLensError, match="batch size"):
        run_with(net, {"proj": torch.zeros(2, 4, 5), "conv": torch.zeros(3, 5, 4)}, torch.tensor([[1]]), batched=True)


def test_a_convolution_is_one_patch_matrix_and_substitutes_exactly():
    """Conv2d weight (out, in, kh, kw) is the (out, in*kh*kw) matrix that maps one flattened patch (unfold) to the
    output channels; substituting a scaled matrix scales the output."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(2, 3, 8, 8)
    model(x)
    (target,) = select(model, "0")
    assert target.kind == "conv" and target.shape == (5, 27)
    W = target.matrix(model)
    patches = torch.nn.functional.unfold(x, 3)  # (2, 27, 36)
    assert torch.allclose((W @ patches).view(2, 5, 6, 6) + model[0].bias[:, None, None], model[0](x), atol=1e-5)
    conv_only = nn.Sequential(model[0])
    assert torch.allclose(run_with(conv_only, {target: 2 * W}, x), 2 * model[0](x) - model[0].bias[:, None, None],
                          atol=1e-5)
    with pytest.raises(ParamLensError, match="conv layer: its input is not one vector"):
        target.read_in(x, torch.zeros(27, 2))
    with pytest.raises(ParamLensError, match="ReLU, which holds no weight matrix.*no sub-module that does"):
        select(model, "1")


def test_map_slots_replace_only_while_filled_and_leave_the_module_as_it_was():
    """Installed slots: a filled slot gives map(input) + bias (a rank-one map against its closed form), an empty
    one the module's own output; on exit no forward is left on the module, also on error; nesting is refused."""
    net = make_net(3)
    targets = {t.name: t for t in select(net, ["proj", "embed"])}
    tokens = torch.tensor([[0, 3, 6, 2]])
    plain = net(tokens)
    u, v = torch.randn(4), torch.randn(5)
    slots = MapSlots(net, list(targets.values()))
    with slots.installed():
        assert torch.equal(net(tokens), plain)
        with slots.filled({targets["proj"]: lambda x: (x @ v)[..., None] * u}):
            h = torch.relu(net.conv(net.embed(tokens)))
            assert torch.allclose(net.proj(h), (h @ v)[..., None] * u + net.proj.bias)
        assert slots.maps == {} and torch.equal(net(tokens), plain)
        with pytest.raises(ParamLensError, match="'embed' already has its forward replaced"), slots.installed():
            pass
    assert "forward" not in vars(net.proj) and "forward" not in vars(net.embed)
    with pytest.raises(RuntimeError, match="boom"), maps_replaced(net, {targets["proj"]: abs}):
        raise RuntimeError("boom")
    assert "forward" not in vars(net.proj) and torch.equal(net(tokens), plain)
