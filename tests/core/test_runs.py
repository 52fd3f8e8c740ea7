"""core.runs: results round-trip through run folders; interrupted training resumes to the same bits; damaged folders
and mismatched resumes are one line naming the file."""

import dataclasses
import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from paramlens import ParamLensError
from paramlens.core.runs import (
    CHECKPOINT,
    LoopState,
    Result,
    atomic_write,
    descend,
    fit_loop,
    load_config,
    new_run_dir,
    require_checkpoint,
    resume_config,
    run_lock,
    save_config,
)
from paramlens.models.toy.residual_mlp import ResidualMLPConfig
from paramlens.models.toy.tms import TMS, TMSConfig, train_tms
from paramlens.models.train import read_saved, save_model


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


# Damaged run folders: one line naming the file, never a traceback.


def tiny_run(seed=0, width=3):
    """The stateful objects of a small training run, and its step function."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Linear(4, width)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def step(i):
        loss = model(torch.randn(8, 4, generator=generator)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return step, {"model": model, "optimizer": opt, "generator": generator}


def contents(folder):
    """Every file under ``folder`` with its bytes: what a refused run must leave untouched."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def one_line(error):
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def checkpointed(folder, steps=10):
    step, stateful = tiny_run()
    fit_loop(steps, step, stateful, folder=folder, checkpoint_every=5, progress=False)
    return folder / CHECKPOINT


def damage(path, how):
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "random": os.urandom(len(data)), "empty": b""}[how])


@pytest.mark.parametrize("how", ["truncated", "random", "empty"])
def test_resuming_from_a_damaged_checkpoint_is_one_line_and_writes_nothing(tmp_path, how):
    damage(checkpointed(tmp_path), how)
    before = contents(tmp_path)
    step, stateful = tiny_run()
    with pytest.raises(ParamLensError) as e:
        fit_loop(20, step, stateful, folder=tmp_path, resume=True, progress=False)
    assert one_line(e).startswith(f"{tmp_path / CHECKPOINT}: unreadable checkpoint")
    assert contents(tmp_path) == before


@pytest.mark.parametrize("saved, expected", [
    ([1, 2], "not a paramlens training checkpoint"),
    ({"step": 5, "history": "[]"}, "not a paramlens training checkpoint"),
    ({"step": 5, "history": "[]", "states": {"net": {}}}, r"holds the states \['net'\], this run needs"),
    ({"step": 50, "history": "[]", "states": {}}, "saved at step 50, outside this run's 20 steps"),
    ({"step": 5, "history": "{oops", "states": {}}, "its metric log is damaged"),
])
def test_a_checkpoint_of_the_wrong_structure_is_one_line(tmp_path, saved, expected):
    torch.save(saved, tmp_path / CHECKPOINT)
    step, stateful = tiny_run()
    with pytest.raises(ParamLensError, match=f"^{re.escape(str(tmp_path / CHECKPOINT))}: .*{expected}") as e:
        fit_loop(20, step, stateful, folder=tmp_path, resume=True, progress=False)
    one_line(e)


def test_a_checkpoint_whose_states_do_not_fit_the_model_is_one_line(tmp_path):
    checkpointed(tmp_path)
    step, stateful = tiny_run(width=5)  # another model shape
    with pytest.raises(ParamLensError, match=r"checkpoint.pt: state 'model' does not fit this run "
                                             r"\(weight is 3x4, needs 5x4; bias is 3, needs 5\)") as e:
        fit_loop(20, step, stateful, folder=tmp_path, resume=True, progress=False)
    one_line(e)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    saved["states"]["model"] = {"weight": torch.zeros(3, 4)}
    saved["states"]["generator"] = torch.zeros(3, dtype=torch.uint8)
    torch.save(saved, tmp_path / CHECKPOINT)
    step, stateful = tiny_run()
    with pytest.raises(ParamLensError, match=r"state 'model' does not fit this run \(missing bias\)"):
        fit_loop(20, step, stateful, folder=tmp_path, resume=True, progress=False)
    saved["states"]["model"] = stateful["model"].state_dict()
    torch.save(saved, tmp_path / CHECKPOINT)
    with pytest.raises(ParamLensError, match=r"state 'generator' does not fit this run \(.+\)") as e:
        fit_loop(20, step, stateful, folder=tmp_path, resume=True, progress=False)
    one_line(e)


def test_resuming_without_a_checkpoint_is_an_error_and_creates_nothing(tmp_path):
    step, stateful = tiny_run()
    with pytest.raises(ParamLensError, match=f"^{re.escape(str(tmp_path))}: no checkpoint to resume from "):
        fit_loop(20, step, stateful, folder=tmp_path, resume=True, progress=False)
    assert contents(tmp_path) == {}
    missing = tmp_path / "typo"
    with pytest.raises(ParamLensError, match="typo: no checkpoint to resume from .no such folder"):
        fit_loop(20, step, stateful, folder=missing, resume=True, progress=False)
    assert not missing.exists()
    assert require_checkpoint(checkpointed(tmp_path).parent) == tmp_path / CHECKPOINT


def test_resuming_a_finished_run_changes_nothing_and_continues_to_more_steps(tmp_path):
    checkpointed(tmp_path, steps=10)
    step, stateful = tiny_run()
    assert [h["step"] for h in fit_loop(10, step, stateful, folder=tmp_path, resume=True, progress=False)] == [10]
    reference_step, reference = tiny_run()
    fit_loop(15, reference_step, reference, progress=False)
    step, stateful = tiny_run()
    fit_loop(15, step, stateful, folder=tmp_path, resume=True, progress=False)
    assert torch.equal(stateful["model"].weight, reference["model"].weight)


@pytest.mark.parametrize("how", ["truncated", "random", "empty"])
def test_a_damaged_result_is_one_line_naming_the_file(tmp_path, how):
    Example(torch.randn(3, 2), {"a": torch.ones(2)}, "x", []).save(tmp_path)
    damage(tmp_path / "tensors.safetensors", how)
    with pytest.raises(ParamLensError, match=r"tensors.safetensors: unreadable safetensors file") as e:
        Example.load(tmp_path)
    one_line(e)
    damage(tmp_path / "result.json", how)
    with pytest.raises(ParamLensError, match=r"result.json: not a readable JSON file") as e:
        Example.load(tmp_path)
    one_line(e)


def test_a_result_of_another_kind_or_with_missing_tensors_is_one_line(tmp_path):
    r = Example(torch.randn(3, 2), {"a": torch.ones(2)}, "x", [])
    r.save(tmp_path)
    save_file({"per_target/a": torch.ones(2)}, str(tmp_path / "tensors.safetensors"))  # the scores are lost
    with pytest.raises(ParamLensError, match=r"tensors.safetensors: lacks the tensors scores of this 'example'"):
        Example.load(tmp_path)
    (tmp_path / "tensors.safetensors").unlink()
    with pytest.raises(ParamLensError, match=r"tensors.safetensors: is missing, with the tensors scores, per_target"):
        Example.load(tmp_path)
    r.save(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps({"kind": "example", "name": "x", "history": [], "extra": 1}))
    with pytest.raises(ParamLensError, match=r"result.json: extra not part of a 'example' result"):
        Example.load(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps(["example"]))
    with pytest.raises(ParamLensError, match=r"result.json: holds a different result type"):
        Example.load(tmp_path)


def test_a_damaged_or_foreign_config_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ParamLensError, match=r"config.json: not a readable JSON file .*so not a TMSConfig run") as e:
        load_config(tmp_path, TMSConfig)
    one_line(e)
    (tmp_path / "config.json").write_bytes(os.urandom(64))
    with pytest.raises(ParamLensError, match=r"config.json: not a readable JSON file") as e:
        load_config(tmp_path, TMSConfig)
    save_config(tmp_path, ResidualMLPConfig())
    with pytest.raises(ParamLensError, match=r"config.json: not a valid TMSConfig \(kind: .*\), so not a TMSConfig"):
        load_config(tmp_path, TMSConfig)
    with pytest.raises(ParamLensError, match=r"config.json: missing; .* is not a TMSConfig run"):
        load_config(tmp_path / "elsewhere", TMSConfig)


# Resume reads the saved config and refuses a mismatch.


def test_resume_config_refuses_every_differing_field_and_writes_nothing(tmp_path):
    save_config(tmp_path, TMSConfig(n_steps=200, n_features=20))
    before = contents(tmp_path)
    with pytest.raises(ParamLensError) as e:
        resume_config(tmp_path, TMSConfig, {"n_steps": 100, "n_features": 40, "seed": 0})
    assert one_line(e) == (f"resume {tmp_path}: n_steps differs (saved 200, now 100), n_features differs (saved 20, "
                           "now 40); rerun without them to continue the saved run, "
                           "or pass --override n_steps,n_features to change them")
    with pytest.raises(ParamLensError, match=r"n_features differs \(saved 20, now 40\); .*--override n_features "):
        resume_config(tmp_path, TMSConfig, {"n_steps": 100, "n_features": 40}, override=["n_steps"])
    assert contents(tmp_path) == before


def test_resume_config_uses_the_saved_config_and_overridden_values(tmp_path):
    saved = TMSConfig(n_steps=200, n_features=20, seed=3)
    save_config(tmp_path, saved)
    assert resume_config(tmp_path, TMSConfig, {}) == saved
    assert resume_config(tmp_path, TMSConfig, {"n_steps": 200, "seed": 3}) == saved
    assert resume_config(tmp_path, TMSConfig, {"n_steps": 400}, override=["n_steps"]) == saved.model_copy(
        update={"n_steps": 400})


def test_resume_config_refuses_unknown_fields_and_runs_of_another_kind(tmp_path):
    save_config(tmp_path, TMSConfig())
    with pytest.raises(ParamLensError, match=r"TMSConfig has no setting n_layers; settings: "):
        resume_config(tmp_path, TMSConfig, {"n_layers": 2})
    with pytest.raises(ParamLensError, match=r"TMSConfig has no setting colour"):
        resume_config(tmp_path, TMSConfig, {}, override=["colour"])
    with pytest.raises(ParamLensError, match=r"--override seed gives no new value"):
        resume_config(tmp_path, TMSConfig, {}, override=["seed"])
    with pytest.raises(ParamLensError, match=r"invalid settings \(n_steps: Input should be greater than or equal to 1"):
        resume_config(tmp_path, TMSConfig, {"n_steps": -1}, override=["n_steps"])
    with pytest.raises(ParamLensError, match=r"config.json: not a valid ResidualMLPConfig.*a ResidualMLPConfig run"):
        resume_config(tmp_path, ResidualMLPConfig, {})
    with pytest.raises(ParamLensError, match=r"empty.config.json: missing; .*empty is not a TMSConfig run"):
        resume_config(tmp_path / "empty", TMSConfig, {})


# Saved models.


def test_a_damaged_saved_model_is_one_line_naming_the_file(tmp_path):
    cfg = TMSConfig(n_features=5, n_hidden=2)
    save_model(tmp_path, TMS(cfg), cfg)
    for how in ["truncated", "random", "empty"]:
        save_model(tmp_path, TMS(cfg), cfg)
        damage(tmp_path / "model.safetensors", how)
        with pytest.raises(ParamLensError, match=r"model.safetensors: unreadable safetensors file") as e:
            read_saved(tmp_path)
        one_line(e)
    (tmp_path / "config.json").write_text("[1,")
    with pytest.raises(ParamLensError, match=r"config.json: not a readable JSON file"):
        read_saved(tmp_path)


def test_a_saved_model_with_missing_or_misshapen_tensors_is_one_line(tmp_path):
    cfg = TMSConfig(n_features=5, n_hidden=2)
    model = TMS(cfg)
    save_model(tmp_path, model, cfg)
    config, back = read_saved(tmp_path, lambda raw: TMS(TMSConfig.model_validate(raw)))
    assert config["n_features"] == 5 and all(torch.equal(a, b) for a, b in zip(back.parameters(), model.parameters()))
    state = dict(model.state_dict())
    name = sorted(state)[0]
    save_file({k: v for k, v in state.items() if k != name}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ParamLensError, match=f"model.safetensors: does not fit the tms model \\(missing {name}\\)"):
        read_saved(tmp_path, lambda raw: TMS(TMSConfig.model_validate(raw)))
    save_model(tmp_path, TMS(TMSConfig(n_features=6, n_hidden=2)), cfg)
    with pytest.raises(ParamLensError, match=r"model.safetensors: does not fit the tms model \(.* needs .*\)") as e:
        read_saved(tmp_path, lambda raw: TMS(TMSConfig.model_validate(raw)))
    one_line(e)


# Writing.


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")

    def failing(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing)
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"] and path.read_text() == "old"


def test_run_folders_skip_taken_names_even_files(tmp_path):
    first = new_run_dir(tmp_path, "x")
    (tmp_path / f"{first.name}-2").write_text("a file in the way")
    assert new_run_dir(tmp_path, "x").name == f"{first.name}-3"
    with pytest.raises(ParamLensError, match="not a folder"):
        new_run_dir(tmp_path / f"{first.name}-2", "x")


def test_the_run_lock_refuses_a_second_holder_and_is_free_afterwards(tmp_path):
    with run_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
        step, stateful = tiny_run()
        with pytest.raises(ParamLensError) as e:
            fit_loop(5, step, stateful, folder=tmp_path, progress=False)
        assert one_line(e) == (f"{tmp_path} is in use by another paramlens process (pid {os.getpid()}); "
                               "wait for it or choose another folder")
        assert not (tmp_path / CHECKPOINT).exists()
        fit_loop(5, step, stateful, folder=tmp_path, write=False, progress=False)  # a reading process takes no lock
    fit_loop(5, step, stateful, folder=tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT).exists() and (tmp_path / ".lock").read_text() == ""


def test_a_checkpoint_that_inflates_is_refused_before_torch_unpacks_it(tmp_path):
    """A checkpoint re-zipped with deflate: a few hundred kB that inflate to 128 MiB of zeros."""
    import io
    import zipfile

    model, _ = train_tms(TMSConfig(n_steps=100), folder=tmp_path, progress=False)
    buffer = io.BytesIO()
    torch.save({"step": 1, "history": "[]", "states": {"model": {"w": torch.zeros(32 << 20)}}}, buffer)
    with zipfile.ZipFile(buffer) as plain, zipfile.ZipFile(tmp_path / "checkpoint.pt", "w", zipfile.ZIP_DEFLATED) as z:
        for info in plain.infolist():
            z.writestr(info.filename, plain.read(info))
    assert (tmp_path / "checkpoint.pt").stat().st_size < 1 << 20
    with pytest.raises(ParamLensError, match="zip bomb"):
        train_tms(TMSConfig(n_steps=200), folder=tmp_path, resume=True, progress=False)


def test_files_in_run_folders_are_readable_by_others(tmp_path):
    model, _ = train_tms(TMSConfig(n_steps=100), progress=False)
    save_model(tmp_path, model, model.cfg)
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def scaled_run(interrupt_at=None):
    """A run whose :class:`LoopState` holds a tensor the optimizer moves, a scale that grows each step and the list of
    losses so far; it stops once the scale passes 1.2 (after step 19). Ctrl-C arrives during step ``interrupt_at``."""
    generator = torch.Generator().manual_seed(0)
    w = torch.ones(4, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.05)
    state = LoopState(tensors={"w": w}, scale=1.0, losses=[])

    def step(i):
        if i + 1 == interrupt_at:
            signal.raise_signal(signal.SIGINT)
        loss = (state.scale * w - torch.randn(4, generator=generator)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        state.scale *= 1.01
        state.losses.append(loss.item())
        return {"loss": loss.item()}

    return step, {"state": state, "optimizer": opt, "generator": generator}, lambda: state.scale > 1.2


def test_a_loop_that_stops_early_logs_and_checkpoints_its_last_step_and_resumes_to_it(tmp_path):
    step, stateful, stop = scaled_run()
    history = fit_loop(100, step, stateful, folder=tmp_path, checkpoint_every=5, log_every=5, progress=False,
                       should_stop=stop)
    assert [h["step"] for h in history] == [5, 10, 15, 19] and len(stateful["state"].losses) == 19
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 19
    calls = []
    again = fit_loop(100, lambda i: calls.append(i) or {}, scaled_run()[1], folder=tmp_path, resume=True,
                     progress=False, should_stop=stop)  # the saved run had stopped: no step is taken
    assert not calls and again == history


def test_a_loop_stops_after_the_first_log_entry_stop_when_accepts_and_resumes_to_it(tmp_path):
    step, stateful, _ = scaled_run()
    asked = []
    stop_when = lambda entry: asked.append(entry["step"]) or entry["step"] >= 12  # entries at 5, 10, 15
    history = fit_loop(100, step, stateful, folder=tmp_path, checkpoint_every=50, log_every=5, progress=False,
                       stop_when=stop_when)
    assert asked == [5, 10, 15] and [h["step"] for h in history] == [5, 10, 15]
    assert len(stateful["state"].losses) == 15 and torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 15
    calls = []
    again = fit_loop(100, lambda i: calls.append(i) or {}, scaled_run()[1], folder=tmp_path, resume=True,
                     progress=False, stop_when=stop_when)  # its last saved entry is asked first: no step is taken
    assert not calls and again == history


def test_loop_state_resumes_to_the_uninterrupted_run(tmp_path):
    step, reference, stop = scaled_run()
    ref_history = fit_loop(100, step, reference, log_every=5, progress=False, should_stop=stop)
    step, stateful, stop = scaled_run(interrupt_at=8)
    with pytest.raises(ParamLensError, match="interrupted after step 8 of 100"):
        fit_loop(100, step, stateful, folder=tmp_path, log_every=5, progress=False, should_stop=stop)
    step, resumed, stop = scaled_run()
    history = fit_loop(100, step, resumed, folder=tmp_path, resume=True, log_every=5, progress=False, should_stop=stop)
    assert without_time(history) == without_time(ref_history)
    a, b = reference["state"], resumed["state"]
    assert torch.equal(a.tensors["w"], b.tensors["w"]) and a.scale == b.scale and a.losses == b.losses
    assert b.tensors["w"] is resumed["optimizer"].param_groups[0]["params"][0]  # restored in place


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.pop("scale"), r"holds \['losses', 'tensors'\], needs \['losses', 'scale', 'tensors'\]"),
    (lambda s: s.update(tensors={"w": torch.ones(5)}), r"tensors.w is 5, needs 4"),
    (lambda s: s.update(tensors={"v": torch.ones(4)}), r"tensors does not hold the tensors w"),
    (lambda s: s.update(losses=3.0), r"losses is a float, needs a list"),
])
def test_a_loop_state_that_does_not_fit_is_one_line(tmp_path, change, expected):
    step, stateful, _ = scaled_run()
    fit_loop(3, step, stateful, folder=tmp_path, progress=False)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    change(saved["states"]["state"])
    torch.save(saved, tmp_path / CHECKPOINT)
    step, stateful, _ = scaled_run()
    with pytest.raises(ParamLensError, match=f"state 'state' does not fit this run \\({expected}\\)") as e:
        fit_loop(5, step, stateful, folder=tmp_path, resume=True, progress=False)
    one_line(e)


def test_descend_steps_down_a_finite_loss_and_refuses_any_other():
    w = torch.ones(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.5)
    descend(opt, (w**2).sum(), lambda value: f"loss {value}")
    assert torch.equal(w.detach(), torch.zeros(2))
    with pytest.raises(ParamLensError, match="^loss nan at step 3$"):
        descend(opt, (w * float("nan")).sum(), lambda value: f"loss {value} at step 3")
    assert torch.equal(w.detach(), torch.zeros(2))  # nothing moved


def test_a_loop_logging_to_a_file_writes_plain_progress_lines_once_a_period_and_none_when_shorter(monkeypatch, capsys):
    from paramlens.core import runs

    for period, shown in ((0.0, ["5/15", "10/15", "15/15"]), (3600.0, [])):  # a short loop stays quiet
        step, stateful, _ = scaled_run()
        monkeypatch.setattr(runs, "LINE_EVERY_S", period)
        fit_loop(15, step, stateful, log_every=5, progress=True, description="fit")
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]  # captured: not a terminal
        assert [ln.split()[:2] for ln in lines] == [["fit", "step"]] * len(shown)
        assert [ln.split()[2] for ln in lines] == shown and all("loss=" in ln for ln in lines)
