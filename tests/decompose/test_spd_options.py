"""SPD's training options: importance functions, adversarial masks, annealed exponent, frequency term, delta."""

from functools import partial

import pytest
import torch
from torch import nn

from paramlens import ParamLensError
from paramlens.core.weights import select
from paramlens.decompose import Decomposition, decompose
from paramlens.decompose.adversarial import masks_from, pgd_sources
from paramlens.decompose.components import upper_leaky_hard_sigmoid
from paramlens.decompose.forward import capture, output_loss, run_maps
from paramlens.decompose.importance_fns import SharedTransformer
from paramlens.decompose.spd import SPDConfig, SPDMethod, SPDModel, spd_losses
from paramlens.models.toy.tms import TMSConfig, train_tms

OPTIONS = {
    "mlp_per_target": {"ci_fn": "mlp_per_target"},
    "mlp_shared": {"ci_fn": "mlp_shared"},
    "transformer_shared": {"ci_fn": "transformer_shared", "ci_fn_hidden": 16},
    "adversarial_fresh": {"adversarial_recon_coeff": 1.0},
    "adversarial_persistent": {"adversarial_recon_coeff": 1.0, "pgd_persistent": True},
    "annealed_p": {"p": 2.0, "p_final": 0.5},
    "frequency": {"frequency_coeff": 0.1},
    "delta": {"delta_component": True},
}


@pytest.fixture(scope="module")
def tms():
    model, _ = train_tms(TMSConfig(n_steps=500), progress=False)
    return model


def _built(model, **settings):
    cfg = SPDConfig(C=8, steps=10, batch_size=64, **settings)
    targets = select(model, ["linear1", "linear2"])
    torch.manual_seed(0)
    return SPDMethod.build(model, targets, cfg), targets, cfg


@pytest.mark.parametrize("name", OPTIONS)
def test_each_option_trains_and_round_trips(tms, tmp_path, name):
    """Every option trains (total loss falls over 60 steps) and its result reloads into the same module."""
    r = decompose(tms, tms.source(), ["linear1", "linear2"], C=8, steps=60, batch_size=128, lr=1e-2,
                  folder=tmp_path, progress=False, log_every=10, **OPTIONS[name])
    totals = [h["total"] for h in r.history if "total" in h]
    assert totals[-1] < totals[0]
    assert all(torch.isfinite(torch.tensor(list(r.metrics.values()))))
    dec = Decomposition.load(tmp_path).module()
    assert set(dec.state_dict()) == set(r.params)


def test_exponent_is_annealed_linearly_inside_its_window():
    cfg = SPDConfig(steps=101, p=2.0, p_final=1.0, p_anneal_start=0.2, p_anneal_end=0.6)
    assert [cfg.exponent(s) for s in (0, 20, 40, 60, 100)] == pytest.approx([2.0, 2.0, 1.5, 1.0, 1.0])
    assert SPDConfig(p=0.9).exponent(7) == 0.9
    with pytest.raises(ValueError, match="before p_anneal_start"):
        SPDConfig(p_final=1.0, p_anneal_start=0.5, p_anneal_end=0.4)


def test_minimality_uses_the_exponent_of_the_step(tms):
    spd, targets, cfg = _built(tms, p=2.0, p_final=0.5)
    x = tms.source().sample(64, torch.Generator().manual_seed(0))
    out, inputs = capture(tms, targets, x)
    noise = SPDMethod.draw_noise(cfg, targets, inputs, out, torch.Generator().manual_seed(1), slice(0, 64))
    pre = spd.pre_importance(inputs)
    for step in (0, 9):
        p = cfg.exponent(step)
        expected = sum((upper_leaky_hard_sigmoid(v) + 1e-12).pow(p).sum(-1).mean() for v in pre.values())
        got = spd_losses(spd, tms, x, out, inputs, cfg, noise, step=step)["importance_minimality"]
        assert torch.allclose(got, expected)


def test_frequency_term_is_the_sum_of_squared_mean_importances(tms):
    spd, targets, cfg = _built(tms, frequency_coeff=0.5)
    x = tms.source().sample(64, torch.Generator().manual_seed(0))
    out, inputs = capture(tms, targets, x)
    noise = SPDMethod.draw_noise(cfg, targets, inputs, out, torch.Generator().manual_seed(1), slice(0, 64))
    losses = spd_losses(spd, tms, x, out, inputs, cfg, noise)
    expected = sum(upper_leaky_hard_sigmoid(v).mean(0).pow(2).sum() for v in spd.pre_importance(inputs).values())
    assert torch.allclose(losses["frequency"], expected)
    parts = sum(getattr(cfg, f"{k}_coeff") * v for k, v in losses.items() if k != "total")
    assert torch.allclose(losses["total"], parts)


def test_delta_component_makes_masks_ablate_from_the_real_weights():
    """With the delta on, all-ones masks give the target model exactly, even at a random initialisation, and a mask
    of zeros on subcomponent c removes exactly U_c V_c^T from W."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    targets = select(model, ["0", "2"])
    spd = SPDModel(targets, C=7, delta=True)
    spd.init_from(model)
    x = torch.randn(9, 6)
    ones = {t.name: torch.ones(9, 7) for t in targets}
    assert torch.allclose(run_maps(model, spd.maps(ones), x), model(x), atol=1e-5)
    comp = spd.component(targets[0])
    mask = torch.ones(9, 7)
    mask[:, 2] = 0
    ablated = run_maps(model, spd.maps({targets[0].name: mask}, only=[targets[0]]), x)
    W = model[0].weight - comp.matrices()[2]
    assert torch.allclose(ablated, model[2](torch.relu(x @ W.T + model[0].bias)), atol=1e-5)
    assert torch.allclose(comp.delta(), model[0].weight - comp.weight(), atol=1e-6)
    without = SPDModel(targets, C=7)
    without.init_from(model)
    assert not torch.allclose(run_maps(model, without.maps(ones), x), model(x), atol=1e-3)


def test_delta_of_tied_targets_is_the_owners_transposed(tms):
    spd, targets, _ = _built(tms, delta_component=True, tied=tms.tied_targets)
    owner, tied = (spd.component(t) for t in targets)
    assert torch.allclose(tied.delta(), owner.delta().T)


def test_pgd_raises_the_loss_and_stays_in_the_unit_box(tms):
    spd, targets, cfg = _built(tms)
    x = tms.source().sample(256, torch.Generator().manual_seed(0))
    out, inputs = capture(tms, targets, x)
    g = {n: v.detach() for n, v in spd.importance(inputs).items()}

    def loss_of(m):
        return output_loss(run_maps(tms, spd.maps(m), x), out, "mse")

    start = {n: torch.full_like(v, 0.5) for n, v in g.items()}
    found = pgd_sources(loss_of, g, start, steps=5, step_size=0.1, shared=False)
    assert float(loss_of(masks_from(g, found)).detach()) > float(loss_of(masks_from(g, start)).detach())
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in found.values())
    shared = pgd_sources(loss_of, g, {n: torch.full((8,), 0.5) for n in g}, steps=5, step_size=0.1, shared=True)
    assert all(v.shape == (8,) for v in shared.values())


def test_persistent_sources_move_and_are_saved(tms):
    spd, targets, cfg = _built(tms, adversarial_recon_coeff=1.0, pgd_persistent=True)
    before = {k: v.clone() for k, v in spd.persistent_sources().items()}
    x = tms.source().sample(64, torch.Generator().manual_seed(0))
    out, inputs = capture(tms, targets, x)
    noise = SPDMethod.draw_noise(cfg, targets, inputs, out, torch.Generator().manual_seed(1), slice(0, 64))
    assert len(noise) == cfg.n_mask_samples  # persistent: no fresh start is drawn
    spd_losses(spd, tms, x, out, inputs, cfg, noise)
    assert any(not torch.equal(before[k], v) for k, v in spd.persistent_sources().items())
    assert {f"sources.{t.name}" for t in targets} <= set(spd.state_dict())


def test_fresh_sources_start_from_one_extra_uniform_draw(tms):
    spd, targets, cfg = _built(tms, adversarial_recon_coeff=1.0, n_mask_samples=2)
    x = tms.source().sample(64, torch.Generator().manual_seed(0))
    out, inputs = capture(tms, targets, x)
    noise = SPDMethod.draw_noise(cfg, targets, inputs, out, torch.Generator().manual_seed(1), slice(0, 64))
    assert len(noise) == 3 and noise[2]["linear1"].shape == (64, 8)


def test_shared_transformer_is_causal_over_the_sequence():
    torch.manual_seed(0)
    fn = SharedTransformer(["a", "b"], C=3, hidden=8)
    acts = {"a": torch.randn(2, 5, 3), "b": torch.randn(2, 5, 3)}
    base = fn(acts)
    later = {k: v.clone() for k, v in acts.items()}
    later["a"][:, 3:] += 1.0
    moved = fn(later)
    assert torch.allclose(moved["a"][:, :3], base["a"][:, :3], atol=1e-6)
    assert not torch.allclose(moved["b"][:, 3:], base["b"][:, 3:], atol=1e-4)
    assert fn({"a": torch.randn(4, 3), "b": torch.randn(4, 3)})["b"].shape == (4, 3)


def test_shared_functions_refuse_targets_with_different_batch_shapes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    spd = SPDModel(select(model, ["0", "1"]), C=2, ci_fn="mlp_shared")
    with pytest.raises(ParamLensError, match="same batch dimensions"):
        spd.pre_importance({"0": torch.zeros(2, 5, dtype=torch.long), "1": torch.zeros(7, 4)})


def test_training_passes_the_step_to_the_annealed_exponent(tms):
    """Step 0 uses p; later steps the annealed exponent, so the logged minimality departs from a run without it."""
    runs = [decompose(tms, tms.source(), ["linear1", "linear2"], C=8, steps=4, batch_size=64, progress=False,
                      log_every=1, **settings).history for settings in ({}, {"p_final": 3.0})]
    plain, annealed = ([h["importance_minimality"] for h in run if "importance_minimality" in h] for run in runs)
    assert plain[0] == pytest.approx(annealed[0])
    assert annealed[-1] != pytest.approx(plain[-1], rel=1e-3)


def test_delta_is_scaled_by_its_own_draw_in_the_stochastic_losses(tms):
    """The stochastic losses put a uniform mask on each delta component (drawn with the others), so the
    subcomponents cannot leave the work to it; at a draw of 0 the layer is the subcomponents alone."""
    spd, targets, cfg = _built(tms, delta_component=True)
    x = tms.source().sample(64, torch.Generator().manual_seed(0))
    out, inputs = capture(tms, targets, x)
    noise = SPDMethod.draw_noise(cfg, targets, inputs, out, torch.Generator().manual_seed(1), slice(0, 64))
    assert noise[0]["delta:linear1"].shape == (64, 1)
    ones = {t.name: torch.ones(64, 8) for t in targets}
    zeros = {t.name: torch.zeros(64, 1) for t in targets}
    without = SPDModel(targets, C=8)
    without.load_state_dict({k: v for k, v in spd.state_dict().items() if "target_weight" not in k})
    assert torch.allclose(run_maps(tms, spd.maps(ones, deltas=zeros), x), run_maps(tms, without.maps(ones), x),
                          atol=1e-5)
    assert not torch.allclose(run_maps(tms, spd.maps(ones), x), run_maps(tms, without.maps(ones), x), atol=1e-3)


@pytest.mark.parametrize("options", [{}, {"delta_component": True, "frequency_coeff": 0.1, "p": 2.0, "p_final": 0.5},
                                     {"adversarial_recon_coeff": 1.0, "pgd_persistent": True}])
def test_compiled_losses_and_gradients_equal_eager_ones(tms, options):
    """The importance terms compiled alone, and all of a batch's losses compiled as one graph (the model's masked
    forward passes included), give the eager losses and gradients, on two successive steps (the second runs the
    compiled graph again)."""
    x = tms.source().sample(64, torch.Generator().manual_seed(1))
    runs = {}
    for mode, compile_losses in (("eager", False), ("terms", False), ("losses", True)):
        spd, targets, cfg = _built(tms, compile=mode != "eager", compile_losses=compile_losses, **options)
        assert isinstance(spd.terms, partial) == (mode != "terms")
        assert isinstance(spd.losses, partial) == (mode != "losses")
        target_out, inputs = capture(tms, targets, x)
        gen, out = torch.Generator().manual_seed(2), []
        for step in (3, 7):
            noise = SPDMethod.draw_noise(cfg.model_copy(update={"batch_size": 64}), targets, inputs, target_out, gen,
                                         slice(None))
            losses = spd_losses(spd, tms, x, target_out, inputs, cfg, noise, step)
            grads = torch.autograd.grad(losses["total"], list(spd.parameters()), allow_unused=True)
            out.append(({k: float(v.detach()) for k, v in losses.items()}, grads))
        runs[mode] = out
    for mode in ("terms", "losses"):
        for (losses, grads), (want, want_grads) in zip(runs[mode], runs["eager"]):
            assert losses == pytest.approx(want, rel=1e-4, abs=1e-7)
            for g, w in zip(grads, want_grads):
                assert (g is None) == (w is None) and (g is None or torch.allclose(g, w, rtol=1e-3, atol=1e-6))
