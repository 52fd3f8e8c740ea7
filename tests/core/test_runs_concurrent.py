"""core.runs with real processes: simultaneous run folders, concurrent checkpoint writers, the run folder lock.

The processes come from a fork server that has imported this module (and with it torch) once, so each start
costs a fork rather than a fresh interpreter.
"""

import multiprocessing
import os
import re
import time

import pytest
import torch
from torch import nn

from paramlens import ParamLensError
from paramlens.core.runs import CHECKPOINT, atomic_write, fit_loop, new_run_dir, run_lock

IN_USE = r"is in use by another paramlens process \(pid (\d+)\); wait for it or choose another folder"
WAIT = 120  # seconds any one wait may take before the test fails instead of hanging


def context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def start_all(ctx, target, args_of, n):
    procs = [ctx.Process(target=target, args=args_of(k)) for k in range(n)]
    for p in procs:
        p.start()
    return procs


def join_all(procs):
    for p in procs:
        p.join(WAIT)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


def make_run_dir(root, barrier, results):
    barrier.wait(WAIT)
    try:
        results.put(str(new_run_dir(root, "race")))
    except BaseException as e:  # reported to the test, which fails on it
        results.put(f"error {e!r}")


def test_simultaneous_run_folders_all_start_in_distinct_folders(tmp_path):
    n, ctx = 64, context()
    barrier, results = ctx.Barrier(n), ctx.Queue()
    began = time.perf_counter()
    procs = start_all(ctx, make_run_dir, lambda k: (str(tmp_path), barrier, results), n)
    got = [results.get(timeout=WAIT) for _ in range(n)]
    join_all(procs)
    print(f"{n} processes in {time.perf_counter() - began:.1f}s")
    assert not [g for g in got if g.startswith("error")]
    assert len(set(got)) == n and sorted(p.name for p in tmp_path.iterdir()) == sorted(os.path.basename(g) for g in got)


def write_checkpoints(path, writer, rounds):
    for i in range(rounds):
        value = float(writer * 1000 + i)
        atomic_write(path, lambda p: torch.save({"writer": writer, "i": i, "data": torch.full((1 << 18,), value)}, p))


def test_concurrent_checkpoint_writers_never_tear_the_file(tmp_path):
    path, ctx = tmp_path / CHECKPOINT, context()
    began = time.perf_counter()
    procs = start_all(ctx, write_checkpoints, lambda k: (path, k + 1, 40), 3)
    reads = set()
    while any(p.is_alive() for p in procs):
        if path.exists():  # every read sees one writer's whole file
            saved = torch.load(path, map_location="cpu", weights_only=True)
            assert torch.equal(saved["data"], torch.full((1 << 18,), float(saved["writer"] * 1000 + saved["i"])))
            reads.add((saved["writer"], saved["i"]))
    join_all(procs)
    print(f"3 writers x 40 checkpoints, {len(reads)} distinct reads, in {time.perf_counter() - began:.1f}s")
    assert torch.load(path, weights_only=True)["i"] == 39
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no temporary file left behind


def train_in(folder, barrier, refused, results):
    """Train a tiny model in ``folder``; the process that gets the folder keeps it until the other two are refused."""
    model, generator = nn.Linear(4, 3), torch.Generator().manual_seed(0)
    deadline = time.monotonic() + WAIT

    def step(i):  # plain gradient descent: a torch optimizer's first use costs seconds in a fresh process
        while i == 0 and refused.value < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        model.zero_grad()
        loss = model(torch.randn(8, 4, generator=generator)).square().mean()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.01 * p.grad
        return {"loss": loss.item()}

    barrier.wait(WAIT)
    try:
        fit_loop(20, step, {"model": model, "generator": generator}, folder=folder, checkpoint_every=1, progress=False)
        results.put(("done", os.getpid(), ""))
    except ParamLensError as e:
        with refused.get_lock():
            refused.value += 1
        results.put(("refused", os.getpid(), str(e)))


def test_three_runs_on_one_folder_one_trains_the_others_are_refused(tmp_path):
    ctx = context()
    barrier, refused, results = ctx.Barrier(3), ctx.Value("i", 0), ctx.Queue()
    began = time.perf_counter()
    procs = start_all(ctx, train_in, lambda k: (str(tmp_path), barrier, refused, results), 3)
    got = sorted(results.get(timeout=WAIT) for _ in range(3))
    join_all(procs)
    print(f"3 runs on one folder in {time.perf_counter() - began:.1f}s")
    (done, winner, _), *losers = got
    assert done == "done" and [kind for kind, _, _ in losers] == ["refused", "refused"]
    for _, _, message in losers:
        assert re.fullmatch(f"{re.escape(str(tmp_path))} {IN_USE}", message) and f"(pid {winner})" in message
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert saved["step"] == 20 and set(saved["states"]) == {"model", "generator"}


def hold_lock(folder, held, release):
    with run_lock(folder):
        held.set()
        release.wait(WAIT)


def test_a_run_on_a_folder_another_process_holds_is_refused_with_one_line(tmp_path):
    ctx = context()
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=hold_lock, args=(str(tmp_path), held, release))
    holder.start()
    try:
        assert held.wait(WAIT)
        model = nn.Linear(2, 2)
        with pytest.raises(ParamLensError) as refused:
            fit_loop(3, lambda i: {}, {"model": model}, folder=tmp_path, progress=False)
        assert str(refused.value) == (f"{tmp_path} is in use by another paramlens process (pid {holder.pid}); "
                                      "wait for it or choose another folder")
        assert not (tmp_path / CHECKPOINT).exists()
    finally:
        release.set()
        join_all([holder])
    fit_loop(3, lambda i: {}, {"model": model}, folder=tmp_path, progress=False)  # free again once the holder ends
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 3
