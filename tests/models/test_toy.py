"""Toy zoo: training reaches its stated quality, and ground_truth() describes the trained weights."""

import torch

from paramlens.core.weights import run_with, select
from paramlens.models.toy import load_toy, save_model
from paramlens.models.toy.cross_layer import CrossLayerConfig, layer_shares, train_cross_layer
from paramlens.models.toy.residual_mlp import ResidualMLPConfig, residual_loss, train_residual_mlp
from paramlens.models.toy.tms import TMSConfig, train_tms


def test_tms_5_2_default_seed_represents_all_features():
    cfg = TMSConfig()
    model, history = train_tms(cfg, progress=False)
    assert model.represented().all()
    x = model.source().sample(20000, torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss = (model(x) - x).pow(2).mean()
    zero_output = x.pow(2).mean()
    assert loss < 0.15 * zero_output  # measured 0.10 at seed 0
    assert torch.equal(model.linear2.weight, model.linear1.weight.T)  # trained tied, stored untied


def test_a_feature_left_out_of_w_is_no_mechanism_of_the_ground_truth():
    model, _ = train_tms(TMSConfig(), progress=False)
    with torch.no_grad():  # as some trainers leave a feature: a tiny column that the negative bias keeps off
        model.linear1.weight[:, 2] *= 0.01
        model.linear2.bias[2] = -0.1
        model.tie()
    assert model.represented().tolist() == [True, True, False, True, True]
    gt = model.ground_truth()
    assert gt.matrices["linear1"].shape == (4, 2, 5) and gt.input_directions["linear1"][:, 2].abs().sum() == 0
    W = model.linear1.weight.detach()
    assert torch.allclose(gt.matrices["linear1"].sum(0), W - torch.outer(W[:, 2], torch.eye(5)[2]), atol=1e-7)
    assert gt.description.startswith("4 of 5 features represented")


def test_tms_ground_truth_sums_to_the_weights_and_holds_the_identity():
    model, _ = train_tms(TMSConfig(n_features=6, n_hidden=3, hidden_identity=True, n_steps=200), progress=False)
    gt = model.ground_truth()
    for target in select(model, ["linear1", "linear2"]):
        assert gt.matrices[target.name].shape[1:] == target.shape
        assert torch.allclose(gt.matrices[target.name].sum(0), target.matrix(model), atol=1e-6)
    assert torch.equal(gt.matrices["hidden"][0], torch.eye(3))
    assert torch.equal(model.hidden.weight, torch.eye(3))  # the identity is not trained
    # each feature's mechanism alone reproduces the model's hidden activation for that feature
    one_hot = torch.eye(6)
    for i in range(6):
        alone = run_with(model, {"linear1": gt.matrices["linear1"][i]}, one_hot[i : i + 1])
        assert torch.allclose(alone, model(one_hot[i : i + 1]), atol=1e-6)


def test_training_is_deterministic_and_saves_and_loads(tmp_path):
    cfg = ResidualMLPConfig(n_features=10, d_embed=40, d_mlp=6, n_steps=50, batch_size=32, seed=4)
    a, _ = train_residual_mlp(cfg, progress=False)
    b, _ = train_residual_mlp(cfg, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    save_model(tmp_path, a, cfg)
    back = load_toy(tmp_path)
    x = torch.randn(5, 10)
    assert back.cfg == cfg and torch.equal(back(x), a(x))


def no_mlp_loss(model, x):
    zero = {f"layers.{k}.mlp_out": torch.zeros_like(l.mlp_out.weight) for k, l in enumerate(model.layers)}
    return residual_loss(lambda inp: run_with(model, zero, inp), x)


def test_residual_mlp_computes_relu_in_superposition():
    cfg = ResidualMLPConfig(n_features=20, d_embed=200, d_mlp=10, feature_prob=0.05, n_steps=1500, batch_size=256)
    model, _ = train_residual_mlp(cfg, progress=False)
    x = model.source().sample(8000, torch.Generator().manual_seed(1))
    with torch.no_grad():
        trained, ablated = residual_loss(model, x), no_mlp_loss(model, x)
    assert trained < 0.6 * ablated  # 10 neurons help all 20 features
    assert (model.feature_errors() < 1 / 6).float().mean() >= 0.9  # 1/6: per-feature error with no MLP
    gt = model.ground_truth()
    directions = gt.input_directions["layers.0.mlp_in"]
    assert torch.allclose(directions.norm(dim=1), torch.ones(20))
    assert torch.allclose(model.W_E(torch.eye(20)), directions)  # feature i is written along direction i


def test_cross_layer_splits_features_across_both_layers():
    cfg = CrossLayerConfig(n_features=40, d_embed=200, d_mlp=20, feature_prob=0.05, n_steps=1500, batch_size=256)
    model, _ = train_cross_layer(cfg, progress=False)
    assert [t.shape for t in select(model, "layers.*.mlp_in")] == [(10, 200), (10, 200)]
    shares = layer_shares(model)
    assert torch.allclose(shares.sum(1), torch.ones(40))
    split = ((shares > 0.1).all(dim=1)).float().mean()
    assert split >= 0.6, f"only {split:.0%} of features use both layers"  # 68-75% over seeds 0-2
    assert set(model.ground_truth().input_directions) == {"layers.0.mlp_in", "layers.1.mlp_in"}
