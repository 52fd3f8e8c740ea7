import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paramlens.bilinear.spectra import (
    bilinear_tensor,
    effective_rank,
    eigen,
    interaction_matrix,
    output_features,
    quadratic_form,
)
from paramlens.errors import ParamLensError
from paramlens.models.bilinear_nets import Bilinear


def random_layer(d_in=6, d_hidden=5, d_out=4, bias=True, seed=0, output_bias=False):
    torch.manual_seed(seed)
    layer = Bilinear(d_in, d_hidden, d_out, bias=bias).double()
    if bias:  # nn.Linear starts with small biases; make them matter
        torch.nn.init.normal_(layer.w.bias)
        torch.nn.init.normal_(layer.v.bias)
    if output_bias:  # as in views of models whose MLPs have biases
        layer.p = torch.nn.Linear(d_hidden, d_out).double()
        torch.nn.init.normal_(layer.p.bias)
    return layer


def test_planted_spectrum_is_recovered():
    """W_h = v_h, V_h = lambda_h v_h with orthonormal v_h and P = [1 ... 1]: Q = sum_h lambda_h v_h v_h^T."""
    torch.manual_seed(1)
    basis, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    lambdas = torch.tensor([3.0, -2.0, 1.5, 0.5], dtype=torch.float64)
    layer = Bilinear(8, 4, 1).double()
    with torch.no_grad():
        layer.w.weight.copy_(basis[:, :4].T)
        layer.v.weight.copy_(lambdas[:, None] * basis[:, :4].T)
        layer.p.weight.fill_(1.0)
    eig = quadratic_form(layer, torch.ones(1)).eigen()
    assert torch.allclose(eig.values[:4], lambdas, atol=1e-12)
    assert eig.values[4:].abs().max() < 1e-12
    cos = (eig.vectors[:4] @ basis[:, :4]).abs()  # matched eigenvectors: |cos| = 1 on the diagonal
    assert torch.allclose(cos.diagonal(), torch.ones(4, dtype=torch.float64), atol=1e-10)
    assert effective_rank(eig.values) == pytest.approx((7.0**2) / (9 + 4 + 2.25 + 0.25))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), bias=st.booleans(), output_bias=st.booleans())
def test_eigenvalues_rebuild_every_output_direction_exactly(seed, bias, output_bias):
    """u . y(x) = sum_k lambda_k (v_k . [x, 1])^2 for any u, x."""
    layer = random_layer(bias=bias, seed=seed, output_bias=output_bias)
    u = torch.randn(4, dtype=torch.float64)
    x = torch.randn(10, 6, dtype=torch.float64)
    eig = eigen(interaction_matrix(layer, u))
    folded = torch.cat([x, torch.ones(10, 1, dtype=torch.float64)], dim=1)
    with torch.no_grad():
        assert torch.allclose(eig.evaluate(folded), layer(x) @ u, atol=1e-10)
        form = quadratic_form(layer, u)
        assert torch.allclose(form(x), layer(x) @ u, atol=1e-10)
    if not bias and not output_bias:
        assert form.linear.abs().max() == 0 and form.constant == 0


def test_bias_split_matches_the_layer_terms():
    layer = random_layer()
    u = torch.randn(4, dtype=torch.float64)
    x = torch.randn(7, 6, dtype=torch.float64)
    terms = quadratic_form(layer, u).terms(x)
    W, V, bw, bv = layer.w.weight, layer.v.weight, layer.w.bias, layer.v.bias
    with torch.no_grad():
        Pu = layer.p.weight.T @ u
        quad = ((x @ W.T) * (x @ V.T)) @ Pu
        lin = (bw * (x @ V.T) + (x @ W.T) * bv) @ Pu
        const = (bw * bv) @ Pu
    assert torch.allclose(terms[:, 0], quad) and torch.allclose(terms[:, 1], lin)
    assert torch.allclose(terms[:, 2], const.expand(7))


def test_interaction_matrix_is_the_tensor_contracted_with_u():
    layer = random_layer(output_bias=True)
    u = torch.randn(4, dtype=torch.float64)
    assert torch.allclose(interaction_matrix(layer, u), torch.einsum("o,oij->ij", u, bilinear_tensor(layer)))


@pytest.mark.parametrize("output_bias", [False, True])
def test_output_features_match_the_svd_of_the_flattened_tensor(output_bias):
    layer = random_layer(d_out=5, output_bias=output_bias)
    B = bilinear_tensor(layer).flatten(1)  # (d_out, (d_in + 1)^2)
    U, S, _ = torch.linalg.svd(B, full_matrices=False)
    feats = output_features(layer, k=3)
    assert torch.allclose(feats.singular_values, S[:3], rtol=1e-8)
    assert torch.allclose((feats.directions @ U[:, :3]).abs().diagonal(), torch.ones(3, dtype=torch.float64))
    for s, spec in zip(S[:3], feats.spectra):  # each feature's Q has Frobenius norm sigma
        assert float(spec.values.norm()) == pytest.approx(float(s), rel=1e-8)
    hidden = output_features(layer, k=2, readout=torch.eye(5))  # features of the hidden products
    assert hidden.directions.shape == (2, 5)


def test_gated_layers_and_wrong_directions_are_clear_errors():
    with pytest.raises(ParamLensError, match="bilinearise"):
        interaction_matrix(Bilinear(3, 4, 2, gate="silu"), torch.ones(2))
    with pytest.raises(ParamLensError, match="writes 2 outputs"):
        interaction_matrix(Bilinear(3, 4, 2), torch.ones(3))
    with pytest.raises(ParamLensError, match="unknown gate"):
        Bilinear(3, 4, 2, gate="tanh")


def test_a_gated_mlp_is_viewed_without_copies():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    for act, gate in (("linear", None), ("silu", "silu")):
        torch.manual_seed(0)
        mlp = LlamaMLP(LlamaConfig(hidden_size=8, intermediate_size=12, hidden_act=act, num_attention_heads=2))
        view = Bilinear.view_of(mlp)
        x = torch.randn(3, 8)
        assert view.gate == gate and view.w is mlp.gate_proj
        assert torch.allclose(view(x), mlp(x))
    with pytest.raises(ParamLensError, match="not a gated MLP"):
        Bilinear.view_of(torch.nn.Linear(2, 2))
