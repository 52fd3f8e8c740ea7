"""core.loading.load: every supported format, and one clear error for each kind of bad file."""


import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from paramlens import ParamLensError
from paramlens.core.loading import inspect_loaded, load
from paramlens.core.resolve import PACKAGED
from paramlens.core.weights import select


def state():
    torch.manual_seed(0)
    return {"layer.weight": torch.randn(3, 4), "layer.bias": torch.randn(3), "steps": torch.tensor(5)}


def assert_same(got, expected):
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_safetensors_pt_and_npz_round_trip(tmp_path):
    sd = state()
    save_file(sd, tmp_path / "w.safetensors")
    torch.save(sd, tmp_path / "w.pt")
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in sd.items()})
    for name, fmt in [("w.safetensors", "safetensors"), ("w.pt", "torch zip"), ("w.npz", "npz")]:
        loaded = load(tmp_path / name)
        assert loaded.format == fmt and loaded.module is None
        assert_same(loaded.tensors, sd)


def test_nested_training_checkpoint_is_flattened(tmp_path):
    sd = state()
    torch.save({"model": sd, "epoch": 3, "history": [torch.tensor(1.0)]}, tmp_path / "ckpt.pth")
    loaded = load(tmp_path / "ckpt.pth")
    assert list(loaded.tensors) == list(sd) and "under 'model'" in loaded.note  # the wrapper's state dict only


def test_whole_module_runs_only_with_trust_code(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    torch.save(model, tmp_path / "m.pt")
    safe = load(tmp_path / "m.pt")
    assert safe.module is None and "whole pickled nn.Module" in safe.note
    assert_same(safe.tensors, model.state_dict())
    with pytest.raises(ParamLensError, match=r"m.pt: holds weights only.*--trust-code"):
        safe.runnable("decompose")
    loaded = load(tmp_path / "m.pt", trust_code=True)
    assert loaded.kind == "module" and isinstance(loaded.module, nn.Sequential)
    assert_same(loaded.tensors, model.state_dict())


def test_hugging_face_folder_gives_a_runnable_model_with_conv1d_targets(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=11, n_positions=16))
    model.save_pretrained(tmp_path / "gpt")
    loaded = load(tmp_path / "gpt")
    assert loaded.format == "hf" and type(loaded.module).__name__ == "GPT2LMHeadModel"
    tokens = torch.tensor([[1, 2, 3]])
    assert torch.allclose(loaded.module(tokens).logits, model.eval()(tokens).logits, atol=1e-6)
    kinds = {t.name: t.kind for t in select(loaded.module, "transformer.h.0.*")}
    assert kinds["transformer.h.0.mlp.c_fc"] == "conv1d" and kinds["transformer.h.0.attn.c_attn"] == "conv1d"
    assert loaded.n_parameters == sum(p.numel() for p in model.parameters())  # tied lm_head counted once


def test_gguf_is_dequantized_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PARAMLENS_CACHE", str(tmp_path))
    first = load(PACKAGED["smollm2"].path())
    assert first.format == "gguf" and type(first.module).__name__ == "LlamaForCausalLM"
    assert 130e6 < first.n_parameters < 140e6  # SmolLM2-135M
    cached = list((tmp_path / "gguf").iterdir())
    folders = [p for p in cached if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "model.safetensors").is_file() and first.tokenizer is not None
    assert [p.name for p in cached if not p.is_dir()] == [folders[0].name + ".lock"]  # no temporary folder left
    second = load(PACKAGED["smollm2"].path())
    w = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(first.tensors[w], second.tensors[w])
    logits = second.module(torch.tensor([[1, 2, 3, 4]])).logits
    assert logits.shape == (1, 4, 49152) and torch.isfinite(logits).all()
    assert {t.kind for t in select(second.module, "model.layers.0.self_attn.*")} == {"linear"}


def test_bad_files_raise_one_clear_error(tmp_path):
    sd = state()
    save_file(sd, tmp_path / "w.safetensors")
    raw = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) - 10])
    (tmp_path / "w.xyz").write_text("?")
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    cases = [
        ("missing.pt", "no such file"),
        ("cut.safetensors", "cut.safetensors: unreadable safetensors file"),
        ("w.xyz", "w.xyz: a text file, not a weights file"),
        ("empty", "folder without config.json"),
        ("obj.npz", "pickled Python objects"),
    ]
    for name, message in cases:
        with pytest.raises(ParamLensError, match=message):
            load(tmp_path / name)


def test_non_finite_weights_are_refused_by_name_but_inspectable(tmp_path):
    sd = state()
    sd["layer.weight"][1, 2] = float("nan")
    save_file(sd, tmp_path / "nan.safetensors")
    with pytest.raises(ParamLensError, match=r"nan.safetensors: tensor 'layer.weight' \(3, 4\) has 1 non-finite"):
        load(tmp_path / "nan.safetensors")
    sd["layer.bias"][0] = float("inf")
    save_file(sd, tmp_path / "bad.safetensors")
    assert load(tmp_path / "bad.safetensors", check_finite=False).tensors["layer.bias"][0] == float("inf")
    rows = {r["name"]: r for r in inspect_loaded(load(tmp_path / "bad.safetensors", check_finite=False)).rows}
    assert rows["layer.weight"]["nonfinite"] == 1 and rows["layer.bias"]["nonfinite"] == 1
    finite = sd["layer.weight"][torch.isfinite(sd["layer.weight"])]
    assert rows["layer.weight"]["mean"] == pytest.approx(float(finite.double().mean()))


def test_concurrent_loads_fill_the_gguf_cache_once(tmp_path, monkeypatch):
    """Two loads of one GGUF file at once: the second waits for the first's cache fill instead of racing it."""
    import threading
    import time

    from paramlens.core import hf
    from paramlens.core.loading import Loaded

    monkeypatch.setenv("PARAMLENS_CACHE", str(tmp_path))
    fills = []

    def slow_fill(path, cached):
        fills.append(path)
        time.sleep(0.5)
        cached.mkdir(parents=True)
        (cached / "config.json").write_text("{}")

    monkeypatch.setattr(hf, "_fill_cache", slow_fill)
    monkeypatch.setattr(hf, "load_hf_folder", lambda folder, trust=False: Loaded(folder, "hf", {}))
    results = []
    threads = [threading.Thread(target=lambda: results.append(hf.load_gguf(PACKAGED["smollm2"].path())))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fills) == 1 and len(results) == 2 and all(r.format == "gguf" for r in results)


def test_dtypes_torch_cannot_hold_are_one_line(tmp_path):
    np.save(tmp_path / "ld.npy", np.ones(2, np.longdouble))
    with pytest.raises(ParamLensError, match="ld.npy: dtype float128 has no torch equivalent"):
        load(tmp_path / "ld.npy")
    header = b'{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}'
    (tmp_path / "f4.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\x00")
    with pytest.raises(ParamLensError, match="f4.safetensors: tensor 'a' is of dtype float4_e2m1fn_x2, which"):
        load(tmp_path / "f4.safetensors")


def test_token_id_files_are_checked_and_capped_by_tokens(tmp_path):
    from paramlens.core.token_ids import read_token_ids

    (tmp_path / "ids.txt").write_text("1 2 3 4\n5 6 7 8\n9 10 11 12\n")
    assert read_token_ids(tmp_path / "ids.txt", 20, 4, max_tokens=8).tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    torch.save(torch.arange(100), tmp_path / "flat.pt")
    assert read_token_ids(tmp_path / "flat.pt", 100, 10, max_tokens=30).shape == (3, 10)
    (tmp_path / "huge.txt").write_text("1 99999999999999999999999\n")
    with pytest.raises(ParamLensError, match="huge.txt, line 1: an id beyond 64-bit integers"):
        read_token_ids(tmp_path / "huge.txt", 20, 2)
    with pytest.raises(ParamLensError, match=r"flat.pt: token ids range over \[0, 99\], outside .* vocabulary of 50"):
        read_token_ids(tmp_path / "flat.pt", 50, 10)


def test_zip_files_damaged_in_any_field_raise_one_clear_error(tmp_path):
    """zipfile raises NotImplementedError (a version or compression method it lacks), RuntimeError (the encrypted
    flag) and zlib.error (damaged deflate data) besides BadZipFile: each is one ParamLensError naming the file."""
    import struct

    np.savez(tmp_path / "plain.npz", a=np.arange(6.0), b=np.ones(3))
    np.savez_compressed(tmp_path / "packed.npz", a=np.arange(4096.0))
    plain, packed = (tmp_path / "plain.npz").read_bytes(), (tmp_path / "packed.npz").read_bytes()
    central = plain.index(b"PK\x01\x02")  # the first central directory record

    def patched(raw, at, fmt, value):
        return raw[:at] + struct.pack(fmt, value) + raw[at + struct.calcsize(fmt):]

    local_method = patched(plain, 8, "<H", 99)  # the first member's compression method, local header and directory
    name_size, extra_size = struct.unpack_from("<HH", packed, 26)
    data = 30 + name_size + extra_size  # the first member's deflate stream
    cases = {
        "version.npz": patched(plain, central + 6, "<H", 64),  # needs zip version 6.4
        "method.npz": patched(local_method, central + 10, "<H", 99),
        "encrypted.npz": patched(plain, central + 8, "<H", 1),
        "deflate.npz": packed[:data] + b"\xff" + packed[data + 1:],  # block type 3, which deflate does not have
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(ParamLensError, match=f"{name}: (a damaged zip file|unreadable .npz)") as caught:
            load(tmp_path / name)
        assert "\n" not in str(caught.value)
