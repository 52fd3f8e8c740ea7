"""SPD speed on 2 CPU cores: steps/s against a plain loop-over-subcomponents implementation, and the wall
time to reach the TMS 5-2 ground-truth bar (MMCS >= 0.999, ML2R in [0.98, 1.02] on W).

The baseline is SPD written the direct way: one small MLP module per subcomponent called in a Python
loop, and each masked layer summed one rank-one subcomponent at a time. Both compute the same four
losses on the same batches (batch 4096, C = 20).

Usage: python benchmarks/decompose_speed.py [--steps 60] [--bar-steps 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import TMS_5_2_SPD, print_table  # noqa: E402

from paramlens.core.weights import select  # noqa: E402
from paramlens.decompose import decompose  # noqa: E402
from paramlens.decompose.components import lower_leaky_hard_sigmoid, upper_leaky_hard_sigmoid  # noqa: E402
from paramlens.decompose.forward import capture, run_maps  # noqa: E402
from paramlens.decompose.spd import SPDConfig, SPDMethod, spd_losses  # noqa: E402
from paramlens.models.toy.tms import TMSConfig, train_tms  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="steps timed per implementation")
    parser.add_argument("--bar-steps", type=int, default=10_000, help="step budget for the time-to-bar run")
    args = parser.parse_args()
    torch.set_num_threads(2)
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

    rows = []
    cfg = SPDConfig()
    loop = LoopSPD(targets, cfg.C)
    loop_rate = steps_per_second(make_step(lambda x, o, i: loop.losses(model, x, o, i, cfg), loop.parameters()),
                                 args.steps)
    rows.append({"implementation": "loop over subcomponents (baseline)", "steps/s": loop_rate, "speed-up": 1.0})
    for compiled in (False, True):
        c = cfg.model_copy(update={"compile": compiled})
        spd = SPDMethod.build(model, targets, c)

        def loss(x, o, i, spd=spd, c=c):
            noise = [{t.name: torch.rand(4096, c.C, generator=gen) for t in targets}]
            return spd_losses(spd, model, x, o, i, c, noise)["total"]

        rate = steps_per_second(make_step(loss, spd.parameters()), args.steps)
        label = "ParamLens, gates compiled" if compiled else "ParamLens, eager"
        rows.append({"implementation": label, "steps/s": rate, "speed-up": rate / loop_rate})
    print_table("SPD steps per second, TMS 5-2, batch 4096, C = 20, 2 CPU threads", rows)

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
        "published code, 40k steps at 13 steps/s (s)": 40_000 / 13.0,
    }])


if __name__ == "__main__":
    main()
