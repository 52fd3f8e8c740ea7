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

Usage: python benchmarks/decompose_speed.py [--steps 60] [--threads 1] [--reference DIR] [--bar-steps 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import TMS_5_2_SPD, print_table

from paramlens.core.weights import select
from paramlens.decompose import decompose
from paramlens.decompose.components import lower_leaky_hard_sigmoid, upper_leaky_hard_sigmoid
from paramlens.decompose.forward import capture, run_maps
from paramlens.decompose.spd import SPDConfig, SPDMethod, spd_losses
from paramlens.models.toy.tms import TMS, TMSConfig, train_tms

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "spd-v1"


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


def reference_run(ref: Path, steps: int, threads: int, folder: Path) -> tuple[TMS, float]:
    """Train the TMS 5-2 target with the reference's trainer and time the reference's decomposition on it;
    returns the target as a ParamLens TMS model and the reference's steps/s (steps 100..steps+100)."""
    py = subprocess.run(["bash", str(ref / "setup.sh")], check=True, capture_output=True, text=True).stdout.strip()
    driver = [py, str(ref / "tms.py"), "--threads", str(threads)]
    subprocess.run([*driver, "train", "--seed", "4", "--out", str(folder)], check=True, capture_output=True)
    out = folder / "ref.json"
    subprocess.run([*driver, "decompose", "--model", str(folder / "tms.pth"), "--steps", str(steps + 101), "--a",
                    "100", "--b", str(steps + 100), "--json", str(out)], check=True, capture_output=True)
    state = torch.load(folder / "tms.pth", weights_only=True)
    model = TMS(TMSConfig())
    with torch.no_grad():
        model.linear1.weight.copy_(state["linear1.weight"])
        model.linear2.bias.copy_(state["linear2.bias"])
    model.tie()
    return model, json.loads(out.read_text())["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="steps timed per implementation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, every implementation")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="the reference SPD folder (with setup.sh)")
    parser.add_argument("--bar-steps", type=int, default=10_000, help="step budget for the time-to-bar run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, ref_rate = [], None
    if (args.reference / "setup.sh").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            model, ref_rate = reference_run(args.reference, max(args.steps, 200), args.threads, Path(tmp))
        rows.append({"implementation": "SPD paper code (reference, its own loop)", "steps/s": ref_rate})
    else:
        print(f"no reference at {args.reference}: its column is skipped; the target is trained by ParamLens")
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
        make_step(lambda x, o, i: loop.losses(model, x, o, i, cfg), loop.parameters()), args.steps)})
    for compiled in (False, True):
        c = cfg.model_copy(update={"compile": compiled})
        spd = SPDMethod.build(model, targets, c)

        def loss(x, o, i, spd=spd, c=c):
            noise = [{t.name: torch.rand(4096, c.C, generator=gen) for t in targets}]
            return spd_losses(spd, model, x, o, i, c, noise)["total"]

        rate = steps_per_second(make_step(loss, spd.parameters()), args.steps)
        rows.append({"implementation": "ParamLens, gates compiled" if compiled else "ParamLens, eager",
                     "steps/s": rate})
    base = ref_rate or rows[0]["steps/s"]
    for row in rows:
        row["ratio to " + ("reference" if ref_rate else "loop")] = row["steps/s"] / base
    print_table(f"SPD steps per second, TMS 5-2, batch 4096, C = 20, {args.threads} thread(s), same target", rows)

    started = time.perf_counter()
    model_fresh, _ = train_tms(TMSConfig(), progress=False)
    settings = {**TMS_5_2_SPD, "steps": args.bar_steps}
    r = decompose(model_fresh, model_fresh.source(), ["linear1", "linear2"], ground_truth=model_fresh.ground_truth(),
                  eval_every=250, progress=False, **settings)
    total = time.perf_counter() - started
    reached = [h for h in r.history if "mmcs/linear1" in h and h["mmcs/linear1"] >= 0.999
               and 0.98 <= h["ml2r/linear1"] <= 1.02]
    first = reached[0] if reached else None
    print_table(f"time to the TMS 5-2 bar (MMCS >= 0.999, ML2R in [0.98, 1.02] on W), fast toy schedule, tied, "
                f"C = {settings['C']}", [{
        "steps to bar": first["step"] if first else "not reached",
        "seconds to bar": first["seconds"] if first else float("nan"),
        "final MMCS W": r.metrics["mmcs/linear1"], "final ML2R W": r.metrics["ml2r/linear1"],
        "whole run s": total, "run steps": args.bar_steps,
    }])


if __name__ == "__main__":
    main()
