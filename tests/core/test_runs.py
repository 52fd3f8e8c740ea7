"""core.runs: results round-trip through run folders; interrupted training resumes to the same bits."""

import dataclasses
import json
import signal

import pytest
import torch
from torch import Tensor

from paramlens import ParamLensError
from paramlens.core.runs import CHECKPOINT, Result, load_config, new_run_dir, save_config
from paramlens.models.toy.tms import TMSConfig, train_tms


@dataclasses.dataclass
class Example(Result):
    kind = "example"
    scores: Tensor
    per_target: dict[str, Tensor]
    name: str
    history: list[dict[str, float]]


def test_result_saves_tensors_and_json_and_loads_back(tmp_path):
    r = Example(torch.randn(3, 2), {"a": torch.arange(4), "b.c": torch.ones(2)}, "x", [{"step": 1, "loss": 0.5}])
    r.save(tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["name"] == "x"
    back = Example.load(tmp_path)
    assert torch.equal(back.scores, r.scores) and back.name == "x" and back.history == r.history
    assert set(back.per_target) == {"a", "b.c"} and torch.equal(back.per_target["a"], torch.arange(4))


def test_loading_the_wrong_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ParamLensError, match="result.json: missing"):
        Example.load(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps({"kind": "other"}))
    with pytest.raises(ParamLensError, match="expected 'example'"):
        Example.load(tmp_path)


def test_config_round_trip_and_fresh_run_folders(tmp_path):
    cfg = TMSConfig(n_features=7, seed=3)
    first, second = new_run_dir(tmp_path, "tms"), new_run_dir(tmp_path, "tms")
    assert first != second and first.is_dir() and second.is_dir()
    save_config(first, cfg)
    assert load_config(first, TMSConfig) == cfg


def test_interrupted_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    cfg = TMSConfig(n_steps=400, batch_size=64)
    reference, ref_history = train_tms(cfg, progress=False)

    from paramlens.models.toy import tms as tms_module

    calls = {"n": 0}
    original = tms_module.tied_loss

    def interrupting_loss(model, x):  # Ctrl-C arrives during step 250
        calls["n"] += 1
        if calls["n"] == 250:
            signal.raise_signal(signal.SIGINT)
        return original(model, x)

    monkeypatch.setattr(tms_module, "tied_loss", interrupting_loss)
    with pytest.raises(ParamLensError, match="interrupted after step 250 of 400.*--resume"):
        train_tms(cfg, folder=tmp_path, progress=False)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 250
    monkeypatch.setattr(tms_module, "tied_loss", original)

    resumed, history = train_tms(cfg, folder=tmp_path, resume=True, progress=False)
    assert without_time(history) == without_time(ref_history)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def without_time(history):
    """The log minus wall-clock seconds, which differ between runs."""
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]


def test_result_dict_of_tensors_round_trips_even_with_an_empty_key(tmp_path):
    @dataclasses.dataclass
    class Masks(Result):
        kind = "masks_for_test"
        masks: dict

    r = Masks({"": torch.ones(2, 3), "layer.0": torch.zeros(1)})  # "" is a root module's name
    r.save(tmp_path)
    back = Masks.load(tmp_path)
    assert set(back.masks) == {"", "layer.0"} and torch.equal(back.masks[""], torch.ones(2, 3))


def test_result_with_one_tensor_under_two_names_saves(tmp_path):
    shared = torch.rand(4, 3)  # e.g. one APD mask for every target
    r = Example(shared[1:], {"a": shared, "b": shared}, "x", [])
    r.save(tmp_path)
    back = Example.load(tmp_path)
    assert torch.equal(back.per_target["a"], shared) and torch.equal(back.per_target["b"], shared)
    assert torch.equal(back.scores, shared[1:])
