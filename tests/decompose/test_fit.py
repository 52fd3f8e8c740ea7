"""decompose(): SPD and APD on toy models and small transformers, resume, and failure modes."""

import signal

import pytest
import torch
from torch import nn

from paramlens import ParamLensError
from paramlens.core.data import RandomTokens
from paramlens.core.runs import CHECKPOINT
from paramlens.decompose import Decomposition, decompose
from paramlens.decompose.spd import SPDMethod
from paramlens.models.toy.tms import TMSConfig, train_tms


@pytest.fixture(scope="module")
def tms():
    model, _ = train_tms(TMSConfig(), progress=False)
    return model


def test_spd_on_tms_moves_from_chance_toward_ground_truth(tms):
    r = decompose(tms, tms.source(), ["linear1", "linear2"], steps=1000, batch_size=1024, lr=1e-2, tied=tms.tied_targets,
                  ground_truth=tms.ground_truth(), progress=False)
    m, chance = r.metrics, r.chance
    assert m["recon/unmasked"] < 1e-3 * m["recon/zero"]  # faithful: the subcomponents sum to W
    assert m["recon/ci"] < 0.3 * m["recon/zero"]  # the important subcomponents alone compute the output
    assert m["mmcs"] > chance["mmcs"] and m["ml2r"] > chance["ml2r"]
    assert m["ci_l0/linear1"] < 0.6 * chance["ci_l0/linear1"]
    assert m["alive/linear1"] < chance["alive/linear1"]
    assert r.probes["ci_one_hot/linear1"].shape == (5, 20) and r.probes["cos/linear1"].shape == (5, 20)


def test_result_round_trips_through_the_run_folder(tms, tmp_path):
    r = decompose(tms, tms.source(), ["linear1", "linear2"], steps=50, batch_size=256, folder=tmp_path,
                  ground_truth=tms.ground_truth(), progress=False)
    back = Decomposition.load(tmp_path)
    assert back.metrics == r.metrics and back.config == r.config
    assert all(torch.equal(back.params[k], v) for k, v in r.params.items())
    rebuilt = back.module()
    x = torch.eye(5)
    inputs = {"linear1": x, "linear2": tms.linear1(x)}
    assert torch.allclose(rebuilt.importance({k: v * 0.75 for k, v in inputs.items()})["linear1"],
                          r.probes["ci_one_hot/linear1"], atol=1e-6)
    assert "mmcs" in back.summary() and back.figures(tmp_path)


def test_a_decomposition_stops_at_the_first_evaluation_stop_when_accepts(tms, tmp_path):
    seen = []

    def recovered(entry):  # an evaluation entry carries the ground-truth scores
        seen.append(entry["step"])
        return "mmcs/linear1" in entry and entry["step"] >= 20

    r = decompose(tms, tms.source(), ["linear1", "linear2"], steps=100, batch_size=128, eval_every=10, log_every=5,
                  ground_truth=tms.ground_truth(), folder=tmp_path, stop_when=recovered, progress=False)
    assert seen == [5, 10, 15, 20] and r.history[-1]["step"] == 20 and "mmcs/linear1" in r.history[-1]
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 20
    assert Decomposition.load(tmp_path).history == r.history


def test_interrupted_decomposition_resumes_to_the_same_result(tms, tmp_path, monkeypatch):
    settings = dict(steps=60, batch_size=128, ground_truth=tms.ground_truth(), progress=False, checkpoint_every=10)
    reference = decompose(tms, tms.source(), ["linear1", "linear2"], **settings)
    original, calls = SPDMethod.losses, {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 25:
            signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(SPDMethod, "losses", staticmethod(interrupting))
    with pytest.raises(ParamLensError, match="interrupted after step 25 of 60"):
        decompose(tms, tms.source(), ["linear1", "linear2"], folder=tmp_path, **settings)
    monkeypatch.setattr(SPDMethod, "losses", staticmethod(original))
    resumed = decompose(tms, tms.source(), ["linear1", "linear2"], folder=tmp_path, resume=True, **settings)
    assert all(torch.equal(resumed.params[k], v) for k, v in reference.params.items())
    assert without_time(resumed.history) == without_time(reference.history)


def test_non_finite_loss_stops_with_the_loss_name_and_keeps_the_checkpoint(tms, tmp_path, monkeypatch):
    original, calls = SPDMethod.losses, {"n": 0}

    def poisoned(*args, **kwargs):
        losses = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 7:
            losses["stochastic_recon"] = losses["stochastic_recon"] * float("nan")
        return losses

    monkeypatch.setattr(SPDMethod, "losses", staticmethod(poisoned))
    with pytest.raises(ParamLensError, match="loss 'stochastic_recon' is nan at step 6"):
        decompose(tms, tms.source(), ["linear1", "linear2"], steps=20, batch_size=64, folder=tmp_path,
                  checkpoint_every=5, progress=False)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert saved["step"] == 5
    assert all(torch.isfinite(v).all() for v in saved["states"]["decomposition"].values())


def test_bad_targets_are_clear_errors(tms):
    with pytest.raises(ParamLensError, match="matches no weight layer"):
        decompose(tms, tms.source(), ["mlp.*"], steps=1, progress=False)
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Bilinear(3, 3, 2))
    with pytest.raises(ParamLensError, match="'1' is a LayerNorm"):
        decompose(model, tms.source(), ["1"], steps=1, progress=False)
    with pytest.raises(ParamLensError, match="'2' is a bilinear layer"):
        decompose(model, tms.source(), ["2"], steps=1, progress=False)
    with pytest.raises(ParamLensError, match="unknown decomposition method 'pca'"):
        decompose(tms, tms.source(), ["linear1"], method="pca")


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=16, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval(), "transformer.h.*.mlp.c_*"


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=50, max_position_embeddings=16, bos_token_id=0, eos_token_id=0)
    return LlamaForCausalLM(cfg).eval(), ["model.layers.*.self_attn.*_proj", "model.layers.*.mlp.*_proj"]


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama])
@pytest.mark.parametrize("method", ["spd", "apd"])
def test_language_models_decompose_with_kl(build, method):
    model, targets = build()
    settings = {"C": 8, "rank": 2, "topk": 2.0} if method == "apd" else {"C": 24}
    r = decompose(model, RandomTokens(50, 8), targets, method=method, steps=16, batch_size=8, lr=1e-2,
                  output_loss="kl", log_every=4, progress=False, **settings)
    first, last = r.history[0], r.history[-1]
    assert last["faithfulness"] < first["faithfulness"]
    assert {"ce", "ce_ci", "ce_zero", "ce_unrecovered_pct"} <= set(r.metrics)
    assert last["total"] < first["total"]
    kinds = {t["kind"] for t in r.targets}
    assert kinds == ({"conv1d"} if build is tiny_gpt2 else {"linear"})


def without_time(history):
    """The log minus wall-clock seconds, which differ between runs."""
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]
