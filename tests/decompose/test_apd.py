"""APD's attributions against their closed form, batch top-k, the inference threshold, and seeded probes."""

import pytest
import torch
from torch import nn

from paramlens.core.data import RandomTokens
from paramlens.core.weights import select
from paramlens.decompose import decompose
from paramlens.decompose.apd import APDConfig, APDMethod, attributions, batch_topk, output_probes
from paramlens.decompose.forward import capture


def two_layer_relu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=True))
    targets = select(model, ["0", "2"])
    dec = APDMethod.build(model, targets, APDConfig(C=3, rank=2))
    return model, targets, dec


def test_attributions_match_the_closed_form_of_a_relu_network():
    model, targets, dec = two_layer_relu()
    x = torch.randn(7, 6)
    _, inputs = capture(model, targets, x)
    W2 = model[2].weight.detach()
    slope = (inputs["2"] > 0).float()  # ReLU'(h1), (7, 5)
    # effect of component c on the output: through layer 0, then W2 diag(slope); plus its own part of layer 2
    through_first = torch.einsum("oj,bj,bcj->bco", W2, slope, dec.component_acts(targets[0], inputs["0"]).detach())
    own = dec.component_acts(targets[1], inputs["2"]).detach()
    expected = (through_first + own).pow(2).sum(-1)
    assert torch.allclose(attributions(dec, model, x, inputs), expected, atol=1e-5, rtol=1e-5)


def test_random_sign_probes_estimate_the_sum_over_outputs_without_bias():
    model, targets, dec = two_layer_relu()
    x = torch.randn(7, 6)
    _, inputs = capture(model, targets, x)
    exact = attributions(dec, model, x, inputs)
    cfg = APDConfig(C=3, rank=2, max_exact_outputs=1, n_probes=4000)
    probes = output_probes(4, cfg, torch.Generator().manual_seed(0))
    assert probes.shape == (4000, 4)
    estimate = attributions(dec, model, x, inputs, probes)
    assert torch.allclose(estimate, exact, rtol=0.1, atol=1e-3 * float(exact.max()))


def test_batch_topk_keeps_the_largest_scores_of_the_whole_batch():
    scores = torch.rand(50, 8, generator=torch.Generator().manual_seed(1))
    mask, kth = batch_topk(scores, 1.5)
    assert int(mask.sum()) == 75  # 1.5 per input on average, anywhere in the batch
    assert float(scores[mask.bool()].min()) == float(kth)
    assert float(scores[~mask.bool()].max()) < float(kth)


def test_apd_on_tms_learns_and_its_threshold_decides_activity_one_input_at_a_time():
    from paramlens.models.toy.tms import TMSConfig, train_tms

    model, _ = train_tms(TMSConfig(), progress=False)
    r = decompose(model, model.source(), ["linear1", "linear2"], method="apd", steps=600, batch_size=512, lr=3e-3,
                  tied=model.tied_targets, ground_truth=model.ground_truth(), progress=False)
    assert r.metrics["recon/unmasked"] < 0.2 * r.chance["recon/unmasked"]
    assert r.metrics["mmcs"] > r.chance["mmcs"]
    dec = r.module()
    assert float(dec.threshold) > 0
    # on the evaluation batch the threshold keeps about top-k components per input, as batch top-k did in training
    assert r.metrics["ci_l0/linear1"] == pytest.approx(0.211, abs=0.06)
    # one input alone is judged by the threshold, not by a top-k of a batch of one (which would always pick one)
    x = torch.zeros(1, 5)
    _, inputs = capture(model, dec.targets, x)
    assert float(APDMethod.importance(dec, model, x, inputs)["linear1"].sum()) == 0  # nothing is active on zero
    ci = r.probes["ci_one_hot/linear1"]
    assert int((ci.sum(1) > 0).sum()) > 1  # more than one of the five one-hot probes turns a component on


def test_language_model_probes_come_from_the_seed():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=50, max_position_embeddings=16, bos_token_id=0, eos_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    settings = dict(method="apd", C=4, rank=2, topk=1.0, max_exact_outputs=8, n_probes=2, steps=6, batch_size=4,
                    lr=1e-2, output_loss="kl", progress=False)
    runs = [decompose(model, RandomTokens(50, 8), ["model.layers.0.mlp.*_proj"], **settings) for _ in range(2)]
    assert all(torch.equal(runs[0].params[k], runs[1].params[k]) for k in runs[0].params)
    assert runs[0].metrics == runs[1].metrics
