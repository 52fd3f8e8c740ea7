"""SPD speed: steps/s against the paper's reference code and a plain loop-over-subcomponents implementation,
run in this script on the same TMS 5-2 target, and the wall time to reach the TMS 5-2 ground-truth bar (MMCS >=
0.999, ML2R in [0.98, 1.02] on W).

The reference is the SPD paper's code (``--reference``, default ``../shared/anchors/spd-v1``: its ``setup.sh``
builds a private venv once, its ``tms.py`` trains the target with the reference's own trainer and times the
reference's own decomposition loop, C = 20, batch 4096, steps 100..N+100 after warm-up). ParamLens and the loop
baseline then decompose that same target (loaded into ParamLens's TMS model), same C and batch, same threads.
Without the reference folder the column is skipped (said in the output) and the target is trained by ParamLens.
The loop baseline is SPD written the direct way: one small MLP module per subcomponent called in a Python loop,
and each masked layer summed one rank-one subcomponent at a time; it computes the same four losses.

Time to the bar: for each seed the reference's trainer makes a target; the reference decomposes it with its own
TMS 5-2 schedule (40k-step cosine, checkpoints every ``--every`` steps, scored here as ParamLens scores its own
runs), and ParamLens with ``BAR_SPD``; each is stopped at its step budget and timed to the first evaluation that
meets the bar.

Usage: python benchmarks/decompose_speed.py [--steps 200] [--threads 1] [--reference DIR] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import TMS_5_2_SPD, print_table
from spd_reference import REFERENCE, Reference, as_paramlens, checkpoint_scores

from paramlens.core.weights import select
from paramlens.decompose import decompose
from paramlens.decompose.components import lower_leaky_hard_sigmoid, upper_leaky_hard_sigmoid
from paramlens.decompose.forward import capture, run_maps
from paramlens.decompose.spd import SPDConfig, SPDMethod, spd_losses
from paramlens.models.toy.tms import TMSConfig, train_tms

#: ParamLens's schedule for the time-to-bar race (the paper's C = 20)
BAR_SPD = {**TMS_5_2_SPD, "C": 20}


class LoopSPD(nn.Module):
    """SPD with one gate module per subcomponent and rank-one terms summed in Python loops."""

    def __init__(self, targets, C: int):
        super().__init__()
        self.targets, self.C = targets, C
        self.V = nn.ParameterList(nn.Parameter(torch.randn(t.shape[1], C) / t.shape[1] ** 0.5) for t in targets)
        self.U = nn.ParameterList(nn.Parameter(torch.randn(C, t.shape[0]) / C**0.5) for t in targets)
        self.gates = nn.ModuleList(
            nn.ModuleList(nn.Sequential(nn.Linear(1, 16), nn.GELU(), nn.Linear(16, 1)) for _ in range(C)) for _ in targets
        )

    def pre(self, k: int, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.gates[k][c]((a @ self.V[k][:, c]).unsqueeze(-1)) for c in range(self.C)], dim=-1)

    def layer(self, k: int, mask: torch.Tensor):
        def fn(a: torch.Tensor) -> torch.Tensor:
            out = 0
            for c in range(self.C):
                out = out + (mask[:, c] * (a @ self.V[k][:, c])).unsqueeze(-1) * self.U[k][c]
            return out

        return fn

    def losses(self, model, x, target_out, inputs, cfg):
        pre = [self.pre(k, inputs[t.name]) for k, t in enumerate(self.targets)]
        faith = sum(((t.matrix(model) - (self.V[k] @ self.U[k]).T) ** 2).sum() for k, t in enumerate(self.targets))
        faith = faith / sum(t.shape[0] * t.shape[1] for t in self.targets)
        masks = []
        for p in pre:
            g = lower_leaky_hard_sigmoid(p)
            masks.append(g + (1 - g) * torch.rand_like(g))
        maps = {t: self.layer(k, masks[k]) for k, t in enumerate(self.targets)}
        stoch = F.mse_loss(run_maps(model, maps, x), target_out)
        layerwise = sum(F.mse_loss(run_maps(model, {t: maps[t]}, x), target_out) for t in self.targets) / len(self.targets)
        minimality = sum(upper_leaky_hard_sigmoid(p).sum(-1).mean() for p in pre)
        return faith + stoch + layerwise + cfg.importance_minimality_coeff * minimality


def steps_per_second(step, n: int) -> float:
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - start)


def time_to_bar(history: list[dict[str, float]]) -> tuple[int | None, float]:
    """``(step, seconds)`` of the first evaluation meeting the bar in a ParamLens history (None, NaN: never)."""
    for h in history:
        if "mmcs/linear1" in h and bar(h["mmcs/linear1"], h["ml2r/linear1"]):
            return int(h["step"]), h["seconds"]
    return None, float("nan")


def bar(mmcs: float, ml2r: float) -> bool:
    """The TMS 5-2 ground-truth bar on ``W``."""
    return mmcs >= 0.999 and 0.98 <= ml2r <= 1.02


def bar_rows(ref: Reference | None, seeds: list[int], ref_steps: int, settings: dict, every: int) -> list[dict]:
    """Per seed: the target trained by the reference's trainer (ParamLens's without a reference), the reference's
    own schedule and ParamLens's ``settings`` run on it, each to the first evaluation meeting the bar. The
    reference's seconds are its steps over its own measured steps/s (start-up left out)."""
    rows = []
    for seed in seeds:
        row: dict = {"seed": seed}
        with tempfile.TemporaryDirectory() as tmp:
            if ref is not None:
                target = ref.train(seed, Path(tmp))
                rec = ref.decompose(target, ref_steps, Path(tmp) / "ref.json", save_every=every)
                model = as_paramlens(target)
                hit = next(((s, m, r) for s, m, r in checkpoint_scores(Path(rec["checkpoints"]),
                                                                       model.linear1.weight.detach()) if bar(m, r)), None)
                row["reference steps"] = hit[0] if hit else f"> {ref_steps}"
                row["reference s"] = hit[0] / rec["steps_per_s"] if hit else float("nan")
            else:
                model, _ = train_tms(TMSConfig(seed=seed), progress=False)
        for p in model.parameters():
            p.requires_grad_(False)
        r = decompose(model, model.source(), ["linear1", "linear2"], ground_truth=model.ground_truth(),
                      eval_every=every, progress=False, **settings)
        step, seconds = time_to_bar(r.history)
        row.update({"ParamLens steps": step if step is not None else f"> {settings['steps']}", "ParamLens s": seconds})
        if ref is not None:
            row["ratio (reference s / ParamLens s)"] = row["reference s"] / seconds
        rows.append(row)
        print(f"  seed {seed}: {row}", flush=True)
    return rows


def rate_rows(ref: Reference | None, steps: int, threads: int) -> list[dict]:
    """Steps/s of the reference (its own loop, on its own seed-4 target), the loop baseline and ParamLens (eager,
    compiled), all on that target (ParamLens's TMS 5-2 without a reference)."""
    rows, ref_rate = [], None
    if ref is not None:
        with tempfile.TemporaryDirectory() as tmp:
            target = ref.train(4, Path(tmp))
            ref_rate = ref.decompose(target, steps + 101, Path(tmp) / "ref.json", b=steps + 100)["steps_per_s"]
            model = as_paramlens(target)
        rows.append({"implementation": "SPD paper code (reference, its own loop)", "steps/s": ref_rate})
    else:
        model, _ = train_tms(TMSConfig(), progress=False)
    for p in model.parameters():
        p.requires_grad_(False)
    targets = select(model, ["linear1", "linear2"])
    source, gen = model.source(), torch.Generator().manual_seed(0)

    def make_step(loss_fn, params):
        opt = torch.optim.Adam(params, lr=1e-3)

        def step():
            x = source.sample(4096, gen)
            target_out, inputs = capture(model, targets, x)
            loss = loss_fn(x, target_out, inputs)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    cfg = SPDConfig()
    loop = LoopSPD(targets, cfg.C)
    rows.append({"implementation": "loop over subcomponents", "steps/s": steps_per_second(
        make_step(lambda x, o, i: loop.losses(model, x, o, i, cfg), loop.parameters()), steps)})
    for compiled in (False, True):
        c = cfg.model_copy(update={"compile": compiled})
        spd = SPDMethod.build(model, targets, c)

        def loss(x, o, i, spd=spd, c=c):
            noise = [{t.name: torch.rand(4096, c.C, generator=gen) for t in targets}]
            return spd_losses(spd, model, x, o, i, c, noise)["total"]

        rows.append({"implementation": "ParamLens, compiled" if compiled else "ParamLens, eager (fused gate kernel when a C compiler is present)",
                     "steps/s": steps_per_second(make_step(loss, spd.parameters()), steps)})
    base = ref_rate or rows[0]["steps/s"]
    for row in rows:
        row["ratio to " + ("reference" if ref_rate else "loop")] = row["steps/s"] / base
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps timed per implementation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, every implementation")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="the reference SPD folder (with setup.sh)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4], help="targets of the bar race (none: no race)")
    parser.add_argument("--bar-steps", type=int, default=BAR_SPD["steps"], help="ParamLens's step budget to the bar")
    parser.add_argument("--ref-bar-steps", type=int, default=12_000, help="the reference's step budget to the bar")
    parser.add_argument("--every", type=int, default=250, help="steps between evaluations / reference checkpoints")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ref = Reference(args.reference, args.threads) if (args.reference / "setup.sh").is_file() else None
    if ref is None:
        print(f"no reference at {args.reference}: its columns are skipped; targets are trained by ParamLens")
    print_table(f"SPD steps per second, TMS 5-2, batch 4096, C = 20, {args.threads} thread(s), same target",
                rate_rows(ref, args.steps, args.threads))
    if not args.seeds:
        return
    settings = {**BAR_SPD, "steps": args.bar_steps}
    rows = bar_rows(ref, args.seeds, args.ref_bar_steps, settings, args.every)
    shown = {k: v for k, v in settings.items() if k != "tied"}
    print_table(f"time to the TMS 5-2 bar (MMCS >= 0.999, ML2R in [0.98, 1.02] on W): the reference's own schedule "
                f"against ParamLens {shown}, on targets trained by the reference's trainer", rows)


if __name__ == "__main__":
    main()
