"""The paramlens command: train, inspect, resume, and one-line errors with a non-zero exit."""

import subprocess
import sys


def paramlens(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "paramlens", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_help_lists_the_commands():
    r = paramlens("--help")
    assert r.returncode == 0
    for command in ("demo", "train-toy", "inspect"):
        assert command in r.stdout


def test_train_toy_then_inspect(tmp_path):
    r = paramlens("train-toy", "tms", "--features", 5, "--hidden", 2, "--steps", 300, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    (folder,) = tmp_path.iterdir()
    assert {"config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    r = paramlens("inspect", folder / "model.safetensors", "--json")
    assert r.returncode == 0 and '"linear1.weight"' in r.stdout and '"parameters": 25' in r.stdout


def test_resume_continues_a_run_folder(tmp_path):
    r = paramlens("train-toy", "tms", "--steps", 200, "--out", tmp_path)
    (folder,) = tmp_path.iterdir()
    before = (folder / "model.safetensors").read_bytes()
    r = paramlens("train-toy", "tms", "--resume", folder)
    assert r.returncode == 0, r.stderr
    assert (folder / "model.safetensors").read_bytes() == before  # finished run: resuming changes nothing


def test_errors_are_one_line_without_traceback(tmp_path):
    r = paramlens("inspect", tmp_path / "missing.safetensors")
    assert r.returncode == 1
    assert "no such file" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = paramlens("train-toy", "tms", "--layers", 2)
    assert r.returncode == 2 and "tms has no option n_layers" in r.stderr  # a usage mistake
    r = paramlens("--debug", "inspect", tmp_path / "missing.safetensors")
    assert r.returncode == 1 and "Traceback" in r.stderr
    r = paramlens("train-toy", "nonsense")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_resume_with_the_wrong_model_kind_is_a_clear_error(tmp_path):
    paramlens("train-toy", "tms", "--steps", 100, "--out", tmp_path)
    (folder,) = tmp_path.iterdir()
    r = paramlens("train-toy", "residual_mlp", "--resume", folder)
    assert r.returncode == 1 and "not a valid ResidualMLPConfig" in r.stderr and "Traceback" not in r.stderr


def test_decompose_a_toy_run_folder_writes_a_report(tmp_path):
    paramlens("train-toy", "tms", "--steps", 300, "--out", tmp_path / "models")
    (model,) = (tmp_path / "models").iterdir()
    r = paramlens("decompose", model, "-t", "linear1", "-t", "linear2", "--steps", 30, "--batch-size", 128,
                  "--set", "lr=0.01", "--out", tmp_path / "runs")
    assert r.returncode == 0, r.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    written = {p.name for p in folder.iterdir()}
    assert {"config.json", "result.json", "tensors.safetensors", "index.html", "losses.png", "ci_linear1.png"} <= written
    assert "mmcs" in r.stdout and "random init" in r.stdout
    r = paramlens("decompose", model, "-t", "linear1", "--set", "gamma=3", "--out", tmp_path / "runs")
    assert r.returncode == 2 and "spd has no setting gamma" in r.stderr


def test_decompose_a_language_model_without_tokenizer_needs_token_ids(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=11, n_positions=16)).save_pretrained(
        tmp_path / "gpt")
    r = paramlens("decompose", tmp_path / "gpt", "-t", "transformer.h.0.mlp.c_fc", "--out", tmp_path / "runs")
    assert r.returncode == 1 and "no tokenizer comes with this model" in r.stderr and "--token-ids FILE" in r.stderr


def test_bilinear_trains_analyses_and_reanalyses_a_saved_model(tmp_path):
    r = paramlens("bilinear", "digits", "--steps", 300, "--d-hidden", 24, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout and "adversarial masks" in r.stdout
    (folder,) = tmp_path.iterdir()
    names = {p.name for p in folder.iterdir()}
    assert {"index.html", "result.json", "spectra.png", "eigenvectors.png", "truncation.png", "adversarial.png"} <= names
    r = paramlens("bilinear", folder / "model", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    r = paramlens("bilinear", folder / "model", "--steps", 5, "--out", tmp_path)
    assert r.returncode == 2 and "only apply when training" in r.stderr
    r = paramlens("bilinear", "imagenet", "--out", tmp_path)
    assert r.returncode == 1 and "neither a model folder nor a dataset" in r.stderr


def test_reverse_scan_and_circuit_on_a_compiled_network(tmp_path):
    from paramlens.models.compiled import compile_circuit
    from paramlens.models.compiled.builders import arx_mixer

    path = compile_circuit(arx_mixer(3, bits=8, target=0xC0DE)).save(tmp_path / "net.safetensors")
    r = paramlens("reverse", "scan", path, "--out", tmp_path / "runs")
    assert r.returncode == 0, r.stderr
    assert "x 3 repeats" in r.stdout and "0xc0de" in r.stdout and "SHA-256 K[0..2]" in r.stdout
    r = paramlens("reverse", "circuit", path, "--out", tmp_path / "runs")
    assert r.returncode == 0, r.stderr
    assert "proven equal by SAT" in r.stdout
    (folder,) = (tmp_path / "runs").glob("circuit-*")
    assert {"circuit.json", "circuit.dot", "circuit.py", "index.html"} <= {p.name for p in folder.iterdir()}
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:100])
    r = paramlens("reverse", "scan", bad, "--out", tmp_path / "runs")
    assert r.returncode == 1 and "Traceback" not in r.stderr
