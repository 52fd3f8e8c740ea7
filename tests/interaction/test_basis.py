import pytest
import torch
from torch import nn

from paramlens.errors import ParamLensError
from paramlens.interaction.basis import Segment, augmented_activations, interaction_basis, segments_of


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    segs = segments_of(list(net))
    x = torch.randn(500, 6)
    return net, segs, x


def test_activations_are_the_networks(mlp):
    net, segs, x = mlp
    acts = augmented_activations(segs, x)
    assert torch.allclose(acts[-1][:, :3].float(), net(x), atol=1e-5) and torch.all(acts[1][:, -1] == 1)


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("kind", ["lib", "pca", "neuron"])
def test_every_basis_reconstructs_the_activations(mlp, kind, centred):
    _, segs, x = mlp
    acts = augmented_activations(segs, x)
    bases = interaction_basis(segs, x, kind, centred=centred)
    for f, b in zip(acts, bases):
        assert torch.allclose(b.rebuild(b.coordinates(f))[:, :-1], f[:, :-1], atol=1e-9)
    if centred:  # the mean is the offset: coordinates average to 0 (the LIB's output layer is the raw outputs)
        for f, b in zip(acts, bases[:-1] if kind == "lib" else bases):
            assert torch.allclose(b.coordinates(f).mean(0), torch.zeros(b.size, dtype=f.dtype), atol=1e-9)
    for b in bases[:-1] if kind == "lib" else bases:  # (the LIB's output layer is the outputs, unsorted)
        assert torch.all(b.importance[:-1] >= b.importance[1:])


@pytest.mark.parametrize("act", [torch.relu, torch.tanh])
def test_lib_whitens_and_diagonalises_the_per_row_jacobian_second_moment(act):
    """Reference: per-row Jacobians from torch.func (vmap of jacrev), averaged; in the LIB's own rotation
    E[J^T J] must be diagonal with the importances, for any elementwise activation."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    segs = [Segment(s.linear, act if s.act is torch.relu else s.act) for s in segments_of(list(net))]
    x = torch.randn(400, 6)
    acts = augmented_activations(segs, x)
    bases = interaction_basis(segs, x)
    for layer, seg in enumerate(segs):
        b, nxt = bases[layer], bases[layer + 1]
        y = acts[layer] @ b.dual
        assert torch.allclose(y.T @ y / len(y), torch.eye(b.size, dtype=torch.float64), atol=1e-8)
        jac = torch.func.vmap(torch.func.jacrev(lambda v, seg=seg, b=b, c=nxt.coords: seg(v @ b.vectors.T) @ c))(y)
        m = torch.einsum("noi,noj->ij", jac, jac) / len(y)
        assert torch.allclose(m, torch.diag(b.importance), atol=1e-9 * float(b.importance[0]) + 1e-14)


def test_null_directions_are_dropped():
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(300, 4)
    x[:, 3] = x[:, 0] + x[:, 1]  # inputs span 3 dimensions (+ the constant)
    bases = interaction_basis(segments_of(list(net)), x)
    assert bases[0].size == 4 and bases[0].gram_eigenvalues[4] < 1e-10 * bases[0].gram_eigenvalues[0]


def test_unsupported_layers_are_a_clear_error():
    with pytest.raises(ParamLensError, match="only Linear"):
        segments_of([nn.Linear(2, 2), nn.Tanh()])
    with pytest.raises(ParamLensError, match="unknown basis"):
        interaction_basis(segments_of([nn.Linear(2, 2)]), torch.randn(4, 2), kind="ica")
