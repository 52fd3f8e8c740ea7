import torch
from torch import nn

from paramlens.interaction.basis import segments_of
from paramlens.interaction.degeneracy import Degeneracy, degeneracy


def planted():
    """Inputs: 6 dims with x5 = x0 - x1 (1 null direction); input 4 read by nobody (1 null gradient direction).
    Hidden ReLU layer of 12: unit 3 copies unit 2, unit 7 is twice unit 6 (2 identical-firing groups, and 2
    null activation directions), units 10 and 11 are dead (2 more null directions), unit 8 is always on,
    unit 9 is read by no output (1 null gradient direction; 12 outputs, so the readout itself leaves none)."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12))
    with torch.no_grad():
        w = torch.randn(12, 6, generator=g)
        b = torch.randn(12, generator=g) * 0.1
        w[:, 4] = 0
        w[3], b[3] = w[2], b[2]
        w[7], b[7] = 2 * w[6], 2 * b[6]
        b[10:] = -100.0
        b[8] = 100.0
        net[0].weight.copy_(w)
        net[0].bias.copy_(b)
        net[2].weight.copy_(torch.randn(12, 12, generator=g))
        net[2].weight[:, 9] = 0
    x = torch.randn(2000, 6, generator=g)
    x[:, 5] = x[:, 0] - x[:, 1]
    return net, x


def test_planted_degeneracy_is_counted_exactly(tmp_path):
    net, x = planted()
    d = degeneracy(segments_of(list(net)), x)
    assert d.activation_null == [1, 4, 5]  # outputs: 12 linear readouts of 8 live hidden directions
    assert d.gradient_null == [1, 1]
    assert (d.unit_layers, d.dead, d.always_on) == ([1], [2], [1])
    assert (d.duplicate_groups, d.duplicate_units, d.near_duplicate_units) == ([2], [2], [0])
    d.save(tmp_path)
    assert Degeneracy.load(tmp_path) == d and (tmp_path / d.figures(tmp_path)[0][0]).is_file()


def test_a_generic_network_has_no_degeneracy():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 10))  # more outputs than hidden directions
    d = degeneracy(segments_of(list(net)), torch.randn(3000, 5))
    assert d.activation_null == [0, 0, 2]  # 10 linear readouts of 8 hidden units + bias: 11 - 9
    assert d.gradient_null == [0, 0]
    assert d.dead == [0] and d.duplicate_units == [0]


def test_planted_degeneracy_in_a_transformer_is_counted_exactly():
    """Tiny Llama: 5 embedding columns zeroed (5 null directions of the stream before block 0); in block 1's
    MLP, 3 gate rows zeroed (their SiLU input is 0: dead) and gate row 10 copied to rows 11 and 12 (one group
    firing identically, two redundant units)."""
    from paramlens.interaction.degeneracy import residual_degeneracy
    from tests.core.test_streams import llama

    model = llama()
    with torch.no_grad():
        model.model.embed_tokens.weight[:, -5:] = 0
        gate = model.model.layers[1].mlp.gate_proj.weight
        gate[:3] = 0
        gate[11] = gate[10]
        gate[12] = gate[10]
    d = residual_degeneracy(model, torch.randint(0, 50, (32, 16)), sources=2)
    assert d.widths == [32, 32, 32] and d.activation_null[0] == 5 and d.units == "MLP of block"
    assert d.unit_layers == [0, 1] and d.dead == [0, 3]
    assert (d.duplicate_groups[1], d.duplicate_units[1]) == (1, 2)
    assert d.duplicate_units[0] == 0 and d.activation_null[1:] == [0, 0]
    assert d.gradient_null == [0, 0]  # the constant unit, which no block reads, is not counted
