import torch

from paramlens.bilinear.bilinearise import anneal_to_bilinear, bilinearise, compare
from paramlens.core.data import TokenWindows
from paramlens.models.bilinear_nets import Bilinear
from paramlens.models.lm.tiny import TinyLMConfig, build_tiny_lm


def tiny_swiglu():
    torch.manual_seed(0)
    model = build_tiny_lm(TinyLMConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_mlp=64, context=16,
                                       mlp="swiglu"))
    with torch.no_grad():  # make the gates matter: larger pre-activations than at init
        for layer in model.model.layers:
            layer.mlp.gate_proj.weight.mul_(8)
    return model.eval()


def test_bilinearised_mlps_are_bilinear_and_the_error_is_measured_on_real_inputs():
    model = tiny_swiglu()
    twin = bilinearise(model)
    assert all(Bilinear.view_of(layer.mlp).is_bilinear for layer in twin.model.layers)
    assert twin.config.hidden_act == "linear" and model.config.hidden_act == "silu"
    tokens = torch.randint(0, 300, (4, 16), generator=torch.Generator().manual_seed(0))
    same = compare(model, model, tokens)
    assert same.kl == 0 and same.top1_agreement == 1 and max(same.mlp_relative_error.values()) == 0
    err = compare(model, twin, tokens)
    assert err.kl > 0 and len(err.mlp_relative_error) == 2
    # SiLU(x) - x = -x sigmoid(-x): the MLP error is large but bounded when pre-activations are large
    assert 0.05 < min(err.mlp_relative_error.values()) and max(err.mlp_relative_error.values()) < 5


def test_annealed_fine_tuning_gives_a_better_bilinear_model_than_plain_bilinearisation():
    model = tiny_swiglu()
    gen = torch.Generator().manual_seed(1)
    # a corpus the model can learn: a repeating pattern of 20 tokens
    stream = torch.arange(20).repeat(200)
    data = TokenWindows(stream, 16)
    tokens = data.sample(8, gen)
    before = compare(model, bilinearise(model), tokens)
    tuned, history = anneal_to_bilinear(model, data, steps=60, lr=3e-3, batch_size=8, progress=False)
    assert history[-1]["alpha"] == 1.0 and tuned.config.hidden_act == "linear"
    after = compare(model, tuned, tokens)
    assert after.ce_bilinear < before.ce_bilinear
