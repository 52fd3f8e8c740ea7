"""Data-parallel decomposition: 2 CPU processes (torchrun, gloo) match one process on the same global batch, with
the whole decomposition in each process (ddp) or sharded over them (fsdp), and a sharded run resumes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paramlens.models.toy import save_model
from paramlens.models.toy.tms import TMSConfig, train_tms

ARGS = ["-t", "linear1", "-t", "linear2", "--batch-size", "64", "--set", "lr=0.01"]
SINGLE = [sys.executable, "-m", "paramlens"]
TWO = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2", "-m", "paramlens"]
FSDP = ["--set", "parallel=fsdp"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model, _ = train_tms(TMSConfig(n_steps=300), progress=False)
    folder = tmp_path_factory.mktemp("tms") / "model"
    save_model(folder, model, model.cfg)
    return folder


def decompose(prefix, out, *args):
    """Run ``paramlens decompose`` (one process or two) into a new run folder under ``out`` (None: resume); the
    new folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    where = ["--out", str(out)] if out is not None else []
    r = subprocess.run([*prefix, "decompose", *map(str, args), *where], capture_output=True, text=True, env=env,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "terminate called" not in r.stderr
    if out is not None:
        (folder,) = Path(out).iterdir()
        return folder


def params(folder):
    tensors = load_file(folder / "tensors.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("params/")}


def assert_same(single, multi):
    assert single and set(single) == set(multi)
    moved = 0.0
    for k in single:
        assert torch.allclose(single[k], multi[k], atol=1e-5, rtol=1e-4), k
        moved += float((single[k] - single[k].mean()).abs().sum())
    assert moved > 0


@pytest.mark.parametrize("method, options", [
    ("spd", []),
    ("apd", []),  # APD: batch top-k over the global batch
    ("spd", [*FSDP, "--set", "grad_accum_steps=2"]),
    ("apd", FSDP),
], ids=["spd-ddp", "apd-ddp", "spd-fsdp-accum", "apd-fsdp"])
def test_two_processes_match_one(tmp_path, model_dir, method, options):
    common = [model_dir, *ARGS, "--steps", 30, "--method", method]
    single = decompose(SINGLE, tmp_path / "single", *common)
    multi = decompose(TWO, tmp_path / "multi", *common, *options)
    assert_same(params(single), params(multi))
    assert json.loads((multi / "config.json").read_text())["parallel"] == ("fsdp" if options else "ddp")


def test_a_sharded_run_resumes_to_the_result_of_one_uninterrupted_process(tmp_path, model_dir):
    common = [model_dir, *ARGS, "--set", "lr_schedule=constant"]  # the schedule does not depend on the steps
    reference = decompose(SINGLE, tmp_path / "single", *common, "--steps", 20)
    sharded = decompose(TWO, tmp_path / "multi", *common, *FSDP, "--steps", 10)
    first = params(sharded)
    decompose(TWO, None, "--resume", sharded, "--steps", 20, "--override", "steps")
    assert_same(params(reference), params(sharded))
    assert any(not torch.equal(first[k], v) for k, v in params(sharded).items())
