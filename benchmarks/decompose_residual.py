"""SPD on the residual MLP doing compressed computation: does each feature get a W_in subcomponent of its own?

Claim: 1 layer (100 features, 50 neurons): each of the 100 features has its own alive ``mlp_in``
subcomponent whose read direction has |cosine| >= 0.9 with the feature's embedding direction. 2 and 3
layers are reported as measured. Chance: the same metrics at the decomposition's random initialisation.

Usage: python benchmarks/decompose_residual.py [--layers 1,2,3] [--steps 30000] [--batch-size 2048] [--threads 2]
       [--out runs/bench-residual] [--resume]
Each decomposition keeps a run folder (``OUT/layers-N``) with checkpoints and, every ``--eval-every`` steps,
the metrics in its history, so a long run can be watched and, if stopped, resumed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.decompose import decompose  # noqa: E402
from paramlens.models.toy.residual_mlp import ResidualMLPConfig, train_residual_mlp  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="1,2,3")
    parser.add_argument("--steps", type=int, default=30_000, help="the paper's step count")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-residual"))
    parser.add_argument("--resume", action="store_true", help="continue the run folders under --out")
    parser.add_argument("--eval-every", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for n_layers in map(int, args.layers.split(",")):
        cfg = ResidualMLPConfig(n_layers=n_layers, seed=args.seed, n_steps=10_000, batch_size=2048)
        model, _ = train_residual_mlp(cfg, progress=False)
        r, seconds = timed(lambda: decompose(
            model, model.source(), ["layers.*.mlp_in", "layers.*.mlp_out"], C=100 * n_layers, p=2.0,
            importance_minimality_coeff=1e-5, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
            lr_schedule="constant", ground_truth=model.ground_truth(), seed=args.seed, progress=True,
            folder=args.out / f"layers-{n_layers}", resume=args.resume, eval_every=args.eval_every))
        m, c = r.metrics, r.chance
        for k in range(n_layers):
            t = f"layers.{k}.mlp_in"
            rows.append({"layers": n_layers, "target": t, "steps": args.steps, "seconds": seconds,
                         "features with own subcomponent": m[f"directions_recovered/{t}"],
                         "chance": c[f"directions_recovered/{t}"], "mean best |cos|": m[f"direction_cos/{t}"],
                         "alive": m[f"alive/{t}"], "CI-L0": m[f"ci_l0/{t}"], "active features": m["active_features"],
                         "recon ci / zero": m["recon/ci"] / m["recon/zero"]})
            print(rows[-1], flush=True)
    print_table("SPD on the residual MLP: features with their own W_in subcomponent (|cos| >= 0.9)", rows)


if __name__ == "__main__":
    main()
