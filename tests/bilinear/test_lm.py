import pytest
import torch

from paramlens.bilinear.lm import mlp_inputs, token_interactions
from paramlens.core.streams import mlp_parts, unembedding
from paramlens.errors import ParamLensError
from paramlens.models.lm.tiny import TinyLMConfig, build_tiny_lm

CFG = TinyLMConfig(vocab_size=300, d_model=32, n_layers=1, n_heads=2, d_mlp=16, context=8)


def test_planted_pair_is_the_top_interaction():
    """One hidden unit reads token a on the gate side, token b on the up side, and writes token c's
    unembedding: the strongest pair for c must be (a, b)."""
    torch.manual_seed(0)
    model = build_tiny_lm(CFG)
    a, b, c = 17, 123, 250
    X = mlp_inputs(model, 0).float()
    mlp = mlp_parts(model, 0).mlp
    with torch.no_grad():
        for lin in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            lin.weight.zero_()
        mlp.gate_proj.weight[0] = X[a] / X[a].norm()
        mlp.up_proj.weight[0] = X[b] / X[b].norm()
        mlp.down_proj.weight[:, 0] = unembedding(model, fold_norm=True)[c]
    (found,) = token_interactions(model, 0, [c], top=3)
    assert found.pairs[0][:2] == (min(a, b), max(a, b))
    assert found.pairs[0][2] > 1.3 * abs(found.pairs[1][2])


def test_a_token_alone_is_the_diagonal_of_the_interaction_matrix():
    """T_o[t, t] equals u_o . MLP(x_t) computed by running the MLP."""
    torch.manual_seed(1)
    model = build_tiny_lm(CFG)
    X = mlp_inputs(model, 0)
    with torch.no_grad():
        direct = model.model.layers[0].mlp(X.float()).double() @ unembedding(model, fold_norm=True)[5].double()
    (found,) = token_interactions(model, 0, [5], top=300 * 301 // 2)
    diag = {i: v for i, j, v in found.pairs if i == j}
    assert len(diag) == 300
    assert torch.allclose(torch.tensor([diag[t] for t in range(300)], dtype=torch.float64), direct, rtol=1e-4, atol=1e-6)


def test_gated_models_and_bad_tokens_are_refused():
    model = build_tiny_lm(CFG.model_copy(update={"mlp": "swiglu"}))
    with pytest.raises(ParamLensError, match="bilinearise"):
        token_interactions(model, 0, [1])
    with pytest.raises(ParamLensError, match="outside the vocabulary"):
        token_interactions(build_tiny_lm(CFG), 0, [300])
    with pytest.raises(ParamLensError, match="layer 3 does not exist"):
        token_interactions(build_tiny_lm(CFG), 3, [1])
