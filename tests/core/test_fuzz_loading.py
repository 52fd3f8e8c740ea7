"""Fuzzing the loader: valid safetensors, torch archives (zip and legacy), .npz and GGUF files, mutated byte by byte,
go through ``load`` and ``read_archive``. Every outcome must be a result or one ParamLensError line, within a time
and memory bound. Each example is read in a fresh child of a fork server that has ParamLens and transformers
imported, so its peak memory is measured on its own."""

import io
import multiprocessing
import os
import resource
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from tests.core.test_gguf import gguf_bytes

MEMORY_MB, SECONDS = 400, 20


def bases() -> dict[str, bytes]:
    torch.manual_seed(0)
    sd = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).state_dict()
    zipped, legacy, npz = io.BytesIO(), io.BytesIO(), io.BytesIO()
    torch.save(sd, zipped)
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    np.savez(npz, **{k: v.numpy() for k, v in sd.items()})
    return {"w.safetensors": save(dict(sd)), "w.pt": zipped.getvalue(), "legacy.pt": legacy.getvalue(),
            "w.npz": npz.getvalue(), "w.gguf": gguf_bytes()}


BASES = bases()


def read(path: str) -> dict:
    """In the child: read ``path`` with every entry point; what happened, the time and the memory growth."""
    from paramlens.core.archive import read_archive
    from paramlens.core.loading import load
    from paramlens.errors import ParamLensError

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, outcomes = time.perf_counter(), []
    for reader in (lambda: load(path, check_finite=False), lambda: read_archive(path)):
        try:
            reader()
            outcomes.append("ok")
        except ParamLensError as e:
            outcomes.append("error" if "\n" not in str(e) and str(e).startswith(path) else f"bad message: {e!r}")
        except Exception as e:  # noqa: BLE001 - anything else is what the test looks for
            outcomes.append(f"{type(e).__name__}: {e}")
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"outcomes": outcomes, "seconds": time.perf_counter() - start, "growth_mb": growth}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    saved = os.environ.get("PARAMLENS_CACHE")
    os.environ["PARAMLENS_CACHE"] = str(folder / "cache")  # the children's GGUF caches stay in tmp
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["paramlens.core.loading", "paramlens.core.hf", "paramlens.core.archive",
                                "transformers"])
    try:
        with ctx.Pool(1, maxtasksperchild=1) as workers:
            yield workers, folder
    finally:
        if saved is None:
            del os.environ["PARAMLENS_CACHE"]
        else:
            os.environ["PARAMLENS_CACHE"] = saved


MUTATION = st.tuples(st.sampled_from(["flip", "overwrite", "truncate", "insert"]), st.floats(0, 1),
                     st.binary(min_size=1, max_size=8))


def mutate(raw: bytes, mutations: list) -> bytes:
    for kind, where, value in mutations:
        at = int(where * max(len(raw) - 1, 0))
        if kind == "flip":
            raw = raw[:at] + bytes([raw[at] ^ (1 << (value[0] % 8))]) + raw[at + 1:] if raw else raw
        elif kind == "overwrite":
            raw = raw[:at] + value + raw[at + len(value):]
        elif kind == "truncate":
            raw = raw[:at]
        else:
            raw = raw[:at] + value + raw[at:]
    return raw


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(sorted(BASES)), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_files_read_or_fail_in_one_line_within_bounds(pool, base, mutations):
    workers, folder = pool
    path = Path(folder) / base
    path.write_bytes(mutate(BASES[base], mutations))
    report = workers.apply_async(read, (str(path),)).get(timeout=120)
    assert all(o in ("ok", "error") for o in report["outcomes"]), (base, mutations, report)
    assert report["seconds"] < SECONDS and report["growth_mb"] < MEMORY_MB, (base, mutations, report)
