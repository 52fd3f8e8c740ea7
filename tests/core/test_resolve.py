"""core.resolve: every kind of model spec gives one Loaded, the same tensors whatever the format, and a runnable
module exactly where the source holds an architecture."""

import json
import shutil

import pytest
import torch
from torch import nn

from paramlens import ParamLensError
from paramlens.core.resolve import resolve, resolve_lm
from tests.formats import Payload, weights_files, whole_module


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def test_every_weights_format_gives_the_same_tensors_and_no_architecture(tmp_path):
    model = mlp()
    expected = model.state_dict()
    for name, path in weights_files(model, tmp_path).items():
        loaded = resolve(path)
        assert sorted(loaded.tensors) == sorted(expected), name  # safetensors keeps names sorted, not in order
        assert all(torch.equal(loaded.tensors[k], expected[k]) for k in expected), name
        assert loaded.module is None and loaded.kind == "weights", name
        with pytest.raises(ParamLensError, match=f"{path.name}: holds weights only.*geometry runs the model"):
            loaded.runnable("geometry")


def test_wrappers_and_prefixes_are_unpacked_and_said(tmp_path):
    files = weights_files(mlp(), tmp_path)
    assert "under 'state_dict'" in resolve(files["wrapped_state_dict.ckpt"]).note
    assert "under 'model'" in resolve(files["wrapped_model.pth"]).note
    assert "'module.' prefix" in resolve(files["ddp_module.pt"]).note


def test_a_whole_pickled_module_is_weights_only_unless_code_is_trusted(tmp_path):
    model = mlp()
    path = whole_module(model, tmp_path / "whole.pt")
    safe = resolve(path)
    assert safe.module is None and "whole pickled nn.Module" in safe.note and "--trust-code" in safe.note
    assert set(safe.tensors) == set(model.state_dict())
    trusted = resolve(path, trust_code=True)
    x = torch.randn(2, 4)
    assert trusted.kind == "module" and torch.equal(trusted.module(x), model(x))


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=32)).eval()


@pytest.mark.parametrize("layout", ["safetensors", "sharded", "bin"])
def test_hugging_face_folders_in_every_layout_run_the_same_model(tmp_path, layout):
    model = gpt2()
    model.save_pretrained(tmp_path / "m", **({"max_shard_size": "20KB"} if layout == "sharded" else {}))
    if layout == "bin":  # the older layout: one torch.save'd state dict
        (tmp_path / "m" / "model.safetensors").unlink()
        torch.save(model.state_dict(), tmp_path / "m" / "pytorch_model.bin")
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"safetensors": "model.safetensors", "sharded": "model.safetensors.index.json",
            "bin": "pytorch_model.bin"}[layout] in names
    loaded = resolve_lm(tmp_path / "m", "geometry")
    ids = torch.randint(0, 50, (2, 8))
    assert loaded.kind == "causal_lm" and loaded.format == "hf"
    assert torch.allclose(loaded.module(ids).logits, model(ids).logits, atol=1e-5)
    assert loaded.tokenizer is None and "--token-ids" in loaded.note


def test_a_model_folder_whose_weights_pickle_code_is_refused_and_never_run(tmp_path):
    model = gpt2()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    state = dict(model.state_dict())
    state["payload"] = Payload(marker)
    torch.save(state, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(ParamLensError, match=r"pytorch_model.bin: the weights file pickles code \(posix.system"):
        resolve(tmp_path / "m")
    assert not marker.exists()


def test_packaged_encoder_and_its_tokenizer():
    loaded = resolve("minilm")
    assert loaded.kind == "encoder" and loaded.name == "all-MiniLM-L6-v2" and loaded.tokenizer is not None
    assert resolve_lm("MiniLM", "geometry").module is not None


def test_built_in_names_train_on_the_spot_with_their_options():
    loaded = resolve("modular_addition", options={"p": 5, "n_steps": 20}, progress=False)
    assert loaded.kind == "modular_addition" and loaded.module.cfg.p == 5 and loaded.path is None
    tms = resolve("tms", options={"n_steps": 20}, progress=False, seed=3)
    assert tms.kind == "tms" and tms.module.cfg.seed == 3
    with pytest.raises(ParamLensError, match="takes no option gamma"):
        resolve("tms", options={"gamma": 1})


def test_run_folders_resolve_to_their_saved_model(tmp_path):
    from paramlens.models.toy import save_model
    from paramlens.models.toy.tms import TMSConfig, train_tms

    model, _ = train_tms(TMSConfig(n_steps=20), progress=False)
    save_model(tmp_path / "run", model, model.cfg)
    loaded = resolve(tmp_path / "run")
    assert loaded.kind == "tms" and loaded.format == "run folder"
    assert torch.equal(loaded.module.linear1.weight, model.linear1.weight)
    (tmp_path / "result").mkdir()
    (tmp_path / "result" / "config.json").write_text(json.dumps({"C": 3}))
    (tmp_path / "result" / "result.json").write_text("{}")
    with pytest.raises(ParamLensError, match="a ParamLens result folder, not a model"):
        resolve(tmp_path / "result")


def test_unknown_names_list_what_is_known(tmp_path):
    with pytest.raises(ParamLensError, match=r"nonsense: no such file or folder, and not a known name \(smollm2, "):
        resolve("nonsense")


def test_a_transformer_lens_state_dict_runs_with_its_config_and_says_what_is_missing_without(tmp_path):
    from safetensors.torch import load_file

    data = "tests/data/lens"
    shutil.copy(f"{data}/gpt2_ln.pt", tmp_path / "lens.pt")
    bare = resolve(tmp_path / "lens.pt")
    assert bare.module is None and "TransformerLens" in bare.note and "act_fn" in bare.note
    assert not any(k.endswith("IGNORE") for k in bare.tensors)  # -inf by design: dropped, not called corrupt
    shutil.copy(f"{data}/gpt2_ln.config.json", tmp_path / "lens.config.json")
    loaded = resolve_lm(tmp_path / "lens.pt", "geometry")
    expected = load_file(f"{data}/gpt2_ln.expected.safetensors")
    logits = loaded.module(expected["tokens"]).logits
    assert (logits - expected["logits"]).abs().max() < 1e-4


def test_not_a_language_model_is_a_clear_error():
    with pytest.raises(ParamLensError, match="tms: a built-in toy model, not a transformer language model"):
        resolve_lm("tms", "bigram")  # refused by name, before anything is trained
    with pytest.raises(ParamLensError, match="an encoder without next-token logits; bigram needs a causal"):
        resolve_lm("minilm", "bigram", causal=True)


def test_a_folder_whose_weights_do_not_fit_its_model_is_refused(tmp_path):
    """Renamed keys would leave transformers initialising the whole model at random."""
    from safetensors.torch import load_file, save_file

    gpt2().save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    save_file({k.replace("transformer.", "body."): v for k, v in load_file(weights).items()}, weights)
    with pytest.raises(ParamLensError, match=r"the weights lack \d+ tensors the GPT2LMHeadModel needs .*at random"):
        resolve(tmp_path / "m")


def test_a_shard_index_may_not_reach_outside_its_folder(tmp_path):
    gpt2().save_pretrained(tmp_path / "m", max_shard_size="20KB")
    index = tmp_path / "m" / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    first = next(iter(data["weight_map"]))
    data["weight_map"][first] = "../outside.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(ParamLensError, match="names a shard outside the folder"):
        resolve(tmp_path / "m")


def test_a_config_that_contradicts_its_model_fails_when_read(tmp_path):
    model = gpt2()
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["n_head"] = 3  # 16 dimensions do not split into 3 heads
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ParamLensError, match=r"m: (the model fails on a 2-token input|transformers cannot build)"):
        resolve(tmp_path / "m")


def test_a_trusted_pickled_transformers_model_is_a_language_model(tmp_path):
    torch.save(gpt2(), tmp_path / "whole.pt")
    assert resolve(tmp_path / "whole.pt").module is None
    loaded = resolve_lm(tmp_path / "whole.pt", "geometry", trust_code=True)
    assert loaded.kind == "causal_lm"


def test_names_that_collide_or_share_a_tensor_are_all_kept(tmp_path):
    t = torch.ones(2)
    torch.save({"": torch.zeros(1), "a": {"b": torch.ones(1)}, "a.b": torch.full((1,), 2.0), "x": t, "y": t},
               tmp_path / "odd.pt")
    loaded = resolve(tmp_path / "odd.pt")
    assert {k: v.tolist() for k, v in loaded.tensors.items()} == {
        "tensor": [0.0], "a.b": [1.0], "a.b#2": [2.0], "x": [1.0, 1.0], "y": [1.0, 1.0]}
    assert "#2" in loaded.note and loaded.n_parameters == 5  # x and y are one tensor, counted once


def test_a_gguf_of_an_architecture_transformers_cannot_build_is_read_as_weights(tmp_path, monkeypatch):
    import gguf
    import numpy as np

    monkeypatch.setenv("PARAMLENS_CACHE", str(tmp_path / "cache"))
    w = gguf.GGUFWriter(str(tmp_path / "z.gguf"), "zorblax")
    w.add_tensor("a.weight", np.arange(12, dtype=np.float32).reshape(4, 3))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    loaded = resolve(tmp_path / "z.gguf")
    assert loaded.module is None and "zorblax" in loaded.note
    assert torch.equal(loaded.tensors["a.weight"], torch.arange(12.0).view(4, 3))


def test_float8_and_unsigned_tensors_are_widened_with_a_note(tmp_path):
    torch.save({"w": torch.tensor([0.5, -2.0]).to(torch.float8_e4m3fn), "u": torch.tensor([7]).to(torch.uint16)},
               tmp_path / "narrow.pt")
    loaded = resolve(tmp_path / "narrow.pt")
    assert loaded.tensors["w"].tolist() == [0.5, -2.0] and loaded.tensors["u"].dtype == torch.int64
    assert "widened" in loaded.note
