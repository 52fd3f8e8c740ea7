"""Every format a user may bring x every command that takes a model, on tiny files written by other tools' conventions:
a result where the format holds what the command needs, one clear line otherwise; planted pickle payloads never run;
damaged files are one line naming the file."""

import shutil

import pytest
import torch
from safetensors.torch import save_file

from paramlens.terminal import Exit
from tests.formats import Payload, malformed_files, weights_files, whole_module

LM_COMMANDS = {
    "geometry": ["--tokens", 512, "--context", 16, "--classes", "ridge"],
    "rotation": ["--tokens", 256, "--context", 16],
    "bigram": ["--tokens", 1024, "--context", 16, "--steps", 5],
    "interaction": ["--tokens", 128, "--context", 16, "--sources", 1, "--top", 2],
    "degeneracy": ["--tokens", 128, "--context", 16],
    "information": ["--tokens", 128, "--context", 16, "--steps", 3],
    "decompose": ["--tokens", 512, "--context", 16, "--steps", 2, "--C", 2, "--batch-size", 2],
}
TARGETS = {"hf": "model.layers.0.mlp.*", "lens": "transformer.h.0.mlp.*"}


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """A compiled integer ReLU network (1 ARX round, equality test with 0xa) in every weights-only format."""
    from paramlens.models.compiled import compile_circuit
    from paramlens.models.compiled.builders import arx_mixer

    module = compile_circuit(arx_mixer(1, bits=4, target=0xA)).to_module()
    folder = tmp_path_factory.mktemp("formats")
    files = weights_files(module, folder)
    files["whole_module.pt"] = whole_module(module, folder / "whole.pt")
    files["int8.safetensors"] = folder / "int8.safetensors"  # integer networks stored in narrow integer types
    save_file({k: v.to(torch.int8).contiguous() for k, v in module.state_dict().items()}, files["int8.safetensors"])
    return files


def one_line(err):
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("fmt", ["safetensors", "state_dict.pt", "legacy.pt", "wrapped_state_dict.ckpt",
                                 "wrapped_model.pth", "ddp_module.pt", "arrays.npz", "cuda.pt", "mps.pt",
                                 "whole_module.pt", "int8.safetensors"])
def test_inspect_and_reverse_read_every_weights_format_alike(cli, network, fmt, tmp_path):
    path = network[fmt]
    code, out, err = cli("inspect", path, "--json")
    assert code == 0 and '"parameters"' in out, err
    code, reference, err = cli("reverse", "scan", network["safetensors"], "--out", tmp_path)
    code, out, err = cli("reverse", "scan", path, "--out", tmp_path)
    assert code == 0, err
    assert out.split("\n", 1)[1].split("report:")[0] == reference.split("\n", 1)[1].split("report:")[0]
    assert "0x0a" in out
    code, out, err = cli("reverse", "circuit", path, "--out", tmp_path)
    assert code == 0 and "proven equal by SAT" in out, err
    code, out, err = cli("reverse", "invert", path, "--target", "1")
    assert code == 0 and "input:" in out, err


@pytest.mark.parametrize("command", [*LM_COMMANDS, "bilinear"])
def test_commands_that_run_a_model_refuse_weights_only_files_in_one_line(cli, network, command, tmp_path):
    args = ["-t", "layers.0"] if command == "decompose" else []
    for fmt in ("state_dict.pt", "arrays.npz", "whole_module.pt"):
        code, _, err = cli(command, network[fmt], *args, "--out", tmp_path)
        assert code == Exit.BAD_INPUT and one_line(err), (command, fmt, err)
        assert "holds weights only" in err and network[fmt].name in err, (command, fmt, err)


@pytest.fixture(scope="module")
def language_models(lm_folder, tmp_path_factory):
    """The tiny Llama as a Hugging Face folder (single, sharded, pytorch_model.bin), and a TransformerLens GPT-2
    state dict with its config (no tokenizer: read through token ids)."""
    from paramlens.core.resolve import resolve

    root = tmp_path_factory.mktemp("lms")
    model = resolve(lm_folder).module
    out = {"hf": lm_folder}
    for name, kwargs in {"hf-sharded": {"max_shard_size": "50KB"}, "hf-bin": {"safe_serialization": False}}.items():
        shutil.copytree(lm_folder, root / name, ignore=shutil.ignore_patterns("model.safetensors", "training"))
        model.save_pretrained(root / name, **kwargs)
        out[name] = root / name
    for suffix in (".pt", ".config.json"):
        shutil.copy(f"tests/data/lens/gpt2_ln{suffix}", root / f"lens{suffix}")
    out["lens"] = root / "lens.pt"
    torch.save(torch.randint(0, 40, (16, 12)), root / "ids.pt")  # the TransformerLens model has 12 positions
    return out, root / "ids.pt"


@pytest.mark.parametrize("fmt", ["hf", "hf-sharded", "hf-bin", "lens"])
@pytest.mark.parametrize("command", list(LM_COMMANDS))
def test_every_language_model_command_runs_every_runnable_format(cli, language_models, fmt, command, tmp_path):
    models, ids = language_models
    args = list(LM_COMMANDS[command])
    if fmt == "lens":
        args += ["--token-ids", ids]
    if command == "decompose":
        args += ["-t", TARGETS["lens" if fmt == "lens" else "hf"]]
    if command == "information":
        args += ["-t", TARGETS["lens" if fmt == "lens" else "hf"]]
    code, out, err = cli(command, models[fmt], *args, "--out", tmp_path)
    assert code == 0, (command, fmt, err)
    assert "report:" in out or command == "rotation"


def test_a_model_without_tokenizer_needs_token_ids(cli, language_models, tmp_path):
    models, _ = language_models
    code, _, err = cli("geometry", models["lens"], "--out", tmp_path)
    assert code == Exit.BAD_INPUT and one_line(err) and "--token-ids FILE" in err


@pytest.mark.parametrize("payload_format", ["zip", "legacy", "wrapped", "module", "lens"])
def test_planted_payloads_never_run_in_any_command(cli, network, payload_format, tmp_path):
    marker = tmp_path / "pwned"
    sd = torch.load(network["state_dict.pt"], weights_only=True)
    if payload_format == "lens":
        sd = torch.load("tests/data/lens/gpt2_ln.pt", weights_only=True)
    obj = {"zip": {**sd, "x": Payload(marker)}, "legacy": {**sd, "x": Payload(marker)},
           "wrapped": {"state_dict": sd, "hook": Payload(marker)}, "module": [Payload(marker), sd],
           "lens": {**sd, "x": Payload(marker)}}[payload_format]
    path = tmp_path / "evil.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=payload_format != "legacy")
    for args in (["inspect", path], ["reverse", "scan", path, "--out", tmp_path], ["geometry", path],
                 ["decompose", path, "-t", "layers.0"]):
        code, _, err = cli(*args)
        assert "Traceback" not in err and code in (0, Exit.BAD_INPUT), (args, err)
    assert not marker.exists(), "pickled code ran"


def test_damaged_files_are_one_line_naming_the_file(cli, network, tmp_path):
    for name, path in malformed_files(network, tmp_path / "bad").items():
        for args in (["inspect", path], ["reverse", "scan", path, "--out", tmp_path], ["geometry", path]):
            code, _, err = cli(*args)
            assert code == Exit.BAD_INPUT and one_line(err) and name in err, (name, args, err)


def test_non_finite_weights_are_counted_by_inspect_and_refused_by_name_where_the_model_runs(cli, lm_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    shutil.copytree(lm_folder, tmp_path / "nan", ignore=shutil.ignore_patterns("training"))
    tensors = load_file(tmp_path / "nan" / "model.safetensors")
    tensors["model.layers.1.mlp.up_proj.weight"][0, 0] = float("inf")
    save_file(tensors, tmp_path / "nan" / "model.safetensors", metadata={"format": "pt"})
    code, out, err = cli("inspect", tmp_path / "nan" / "model.safetensors", "--json")
    assert code == 0 and '"nonfinite": 1' in out
    code, _, err = cli("geometry", tmp_path / "nan", "--out", tmp_path)
    assert code == Exit.BAD_INPUT and one_line(err) and "model.layers.1.mlp.up_proj.weight" in err
