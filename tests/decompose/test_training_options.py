"""Options of the decomposition's training loop: micro-batches, autocast, and the full-state view of a sharded run's
checkpoints (the sharded runs themselves: test_distributed.py)."""

import json
import signal

import pytest
import torch
from torch import nn

from paramlens import ParamLensError
from paramlens.decompose import decompose
from paramlens.decompose.parallel import FullState
from paramlens.decompose.spd import SPDMethod
from paramlens.errors import Interrupted
from paramlens.models.toy.tms import TMSConfig, train_tms
from paramlens.terminal import Exit

TARGETS = ["linear1", "linear2"]


@pytest.fixture(scope="module")
def tms():
    model, _ = train_tms(TMSConfig(n_steps=300), progress=False)
    return model


def run(tms, **settings):
    base = {"C": 6, "steps": 8, "batch_size": 64, "lr": 1e-2, "tied": tms.tied_targets, "progress": False,
            "eval_size": 64}
    return decompose(tms, tms.source(), TARGETS, **{**base, **settings})


def test_micro_batches_give_the_step_of_the_whole_batch(tms):
    whole = run(tms, n_mask_samples=2)
    for n in (2, 4):
        split = run(tms, n_mask_samples=2, grad_accum_steps=n)
        assert split.params.keys() == whole.params.keys()
        for k, v in whole.params.items():
            assert torch.allclose(split.params[k], v, atol=1e-6, rtol=1e-5), (n, k)
        assert split.history[-1]["total"] == pytest.approx(whole.history[-1]["total"], rel=1e-5)


def test_micro_batches_that_do_not_split_the_batch_or_a_batch_top_k_are_refused(tms):
    with pytest.raises(ParamLensError, match="do not split into grad_accum_steps=3 micro-batches"):
        run(tms, grad_accum_steps=3)
    with pytest.raises(ParamLensError, match="top-k over the whole batch"):
        decompose(tms, tms.source(), TARGETS, method="apd", steps=2, batch_size=64, grad_accum_steps=2,
                  progress=False)


def test_bf16_autocast_trains_close_to_float32(tms):
    full = run(tms, steps=40, log_every=1)
    half = run(tms, steps=40, autocast="bf16", log_every=1)
    assert all(v.dtype == torch.float32 for v in half.params.values())
    first, last = half.history[0]["total"], half.history[-1]["total"]
    assert last < 0.8 * first
    assert last == pytest.approx(full.history[-1]["total"], rel=0.1)


def test_fp16_autocast_scales_the_loss_and_resumes_to_the_same_result(tms, tmp_path, monkeypatch):
    settings = {"steps": 40, "autocast": "fp16", "checkpoint_every": 10, "log_every": 1}
    reference = run(tms, **settings)
    assert reference.history[-1]["total"] < 0.8 * reference.history[0]["total"]
    original, calls = SPDMethod.losses, {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 15:
            signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(SPDMethod, "losses", staticmethod(interrupting))
    with pytest.raises(ParamLensError, match="interrupted after step 15 of 40"):
        run(tms, folder=tmp_path, **settings)
    assert "grad_scaler" in torch.load(tmp_path / "checkpoint.pt", weights_only=True)["states"]
    monkeypatch.setattr(SPDMethod, "losses", staticmethod(original))
    resumed = run(tms, folder=tmp_path, resume=True, **settings)
    assert all(torch.equal(resumed.params[k], v) for k, v in reference.params.items())


def test_a_full_state_is_given_only_at_the_step_it_was_taken():
    layer = nn.Linear(3, 2)
    state = FullState(layer, keep=True)
    state.now = 5
    with pytest.raises(Interrupted, match="stopped after step 5; with parallel=fsdp"):
        state.state_dict()
    state.take(5)
    saved = state.state_dict()
    with torch.no_grad():
        layer.weight.add_(1.0)
    state.load_state_dict(saved)
    assert torch.equal(layer.weight, saved["weight"])
    with pytest.raises(ValueError, match="weight is 2x2, needs 2x3"):
        state.load_state_dict({**saved, "weight": torch.zeros(2, 2)})


def test_the_command_line_sets_the_options(cli, tmp_path):
    code, _, err = cli("decompose", "tms", "-t", "linear1", "-t", "linear2", "--steps", 4, "--batch-size", 32,
                       "--C", 4, "--set", "grad_accum_steps=2", "--set", "autocast=bf16", "--set", "parallel=fsdp",
                       "--out", tmp_path)
    assert code == 0, err
    (folder,) = tmp_path.iterdir()
    saved = json.loads((folder / "config.json").read_text())
    assert (saved["grad_accum_steps"], saved["autocast"], saved["parallel"]) == (2, "bf16", "fsdp")
    code, _, err = cli("decompose", "tms", "-t", "linear1", "--set", "autocast=fp8", "--out", tmp_path)
    assert code == Exit.USAGE and "autocast" in err
