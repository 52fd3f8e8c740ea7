import pytest
import torch
from torch import nn

from paramlens.errors import ParamLensError
from paramlens.interaction.basis import interaction_basis, segments_of
from paramlens.interaction.edges import ablated_output, edges
from paramlens.interaction.modularity import modules


def two_independent_networks():
    """Block-diagonal weights: inputs 0-3 feed hidden 0-7 feed output 0; inputs 4-7 feed hidden 8-15 feed
    output 1. Two modules with no interaction between them."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    with torch.no_grad():
        mask1 = torch.zeros(16, 8)
        mask1[:8, :4] = 1
        mask1[8:, 4:] = 1
        net[0].weight.mul_(mask1)
        net[0].bias.zero_()
        mask2 = torch.zeros(2, 16)
        mask2[0, :8] = 1
        mask2[1, 8:] = 1
        net[2].weight.mul_(mask2)
        net[2].bias.zero_()
    return net


@pytest.mark.parametrize("transform", ["identity", "sqrt", "log"])
def test_neuron_basis_graph_splits_two_independent_networks(transform):
    net = two_independent_networks()
    segs = segments_of(list(net))
    x = torch.randn(400, 8)
    bases = interaction_basis(segs, x, "neuron")
    m = modules(edges(segs, bases, x), transform)
    assert m.q > 0.4 and m.method == "leiden"
    names = [torch.argmax(b.dual, dim=0) for b in bases]  # neuron index behind each basis direction
    for layer, (labels, idx) in enumerate(zip(m.membership, names)):
        side = {int(i): lab for i, lab in zip(idx, labels)}
        cut = {0: 4, 1: 8, 2: 1}[layer]
        real = [i for i in side if i < (8, 16, 2)[layer]]  # leave out the constant unit
        left = {side[i] for i in real if i < cut}
        right = {side[i] for i in real if i >= cut}
        assert not left & right, (layer, left, right)


def test_keeping_every_edge_reproduces_the_network():
    net = two_independent_networks()
    segs = segments_of(list(net))
    x = torch.randn(50, 8)
    for kind in ("lib", "pca", "neuron"):
        for centred in (False, True):
            bases = interaction_basis(segs, x, kind, centred=centred)
            keep = [torch.ones(w.shape, dtype=torch.bool) for w in edges(segs, bases, x)]
            assert torch.allclose(ablated_output(segs, bases, x, keep).float(), net(x), atol=1e-5), (kind, centred)


def test_unknown_transform_is_a_clear_error():
    with pytest.raises(ParamLensError, match="transform"):
        modules([torch.ones(2, 2)], "cube")


def test_ablation_curves_end_at_the_full_network_and_start_from_nothing():
    from paramlens.interaction.edges import direction_curve, edge_curve

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    segs = segments_of(list(net))
    x = torch.randn(300, 4)
    labels = net(x).argmax(-1)  # the network's own decisions: full accuracy is 1
    for kind in ("lib", "pca"):
        bases = interaction_basis(segs, x, kind)
        weights = edges(segs, bases, x)
        total = sum(w.numel() for w in weights)
        curve = edge_curve(segs, bases, x, labels, weights, [0, total])
        assert curve[-1] == 1.0 and curve[0] < 0.9
        dirs = direction_curve(segs, bases, x, labels, 1, [0, bases[1].size])
        assert dirs[-1] == 1.0 and dirs[0] < 0.9
