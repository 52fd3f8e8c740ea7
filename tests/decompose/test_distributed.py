"""Data-parallel decomposition: 2 CPU processes (torchrun, gloo) match one process on the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paramlens.models.toy import save_model
from paramlens.models.toy.tms import TMSConfig, train_tms

ARGS = ["-t", "linear1", "-t", "linear2", "--steps", "30", "--batch-size", "64", "--set", "lr=0.01"]


def run(prefix, model_dir, out, method):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([*prefix, "decompose", str(model_dir), *ARGS, "--method", method, "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (folder,) = Path(out).iterdir()
    return load_file(folder / "tensors.safetensors")


@pytest.mark.parametrize("method", ["spd", "apd"])  # APD: batch top-k over the global batch
def test_two_processes_match_one(tmp_path, method):
    model, _ = train_tms(TMSConfig(n_steps=300), progress=False)
    save_model(tmp_path / "model", model, model.cfg)
    torchrun = Path(sys.executable).with_name("torchrun")
    single = run([sys.executable, "-m", "paramlens"], tmp_path / "model", tmp_path / "single", method)
    multi = run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "paramlens"], tmp_path / "model",
                tmp_path / "multi", method)
    params = [k for k in single if k.startswith("params/")]
    assert params and set(single) == set(multi)
    moved = 0.0
    for k in params:
        assert torch.allclose(single[k], multi[k], atol=1e-5, rtol=1e-4), k
        moved += float((single[k] - single[k].mean()).abs().sum())
    assert moved > 0
