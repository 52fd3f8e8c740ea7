"""Information in the weights of a small MLP trained on real vs shuffled labels (Achille & Soatto 2018).

Claim: a network that memorises shuffled labels stores measurably more information in its weights per
training sample than the same network fitted to the real labels; the ordering across layers is reported.
Model: 64 -> 128 -> 10 ReLU MLP on 1,000 scikit-learn digits (8 x 8), trained to fit its training set.

Usage: python benchmarks/information_labels.py [--samples 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.core.images import load_images  # noqa: E402
from paramlens.core.weights import select  # noqa: E402
from paramlens.information.weights_info import InformationConfig, weight_information  # noqa: E402


def fit(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_images("digits")
    x, y_real = data.x_train[: args.samples], data.y_train[: args.samples]
    y_shuffled = y_real[torch.randperm(len(y_real), generator=torch.Generator().manual_seed(0))]
    rows = []
    for name, y in (("real labels", y_real), ("shuffled labels", y_shuffled)):
        net = fit(x, y, 3000, 0)
        acc = float((net(x).argmax(-1) == y).float().mean())
        targets = select(net, ["0", "2"])
        r, seconds = timed(lambda net=net, y=y, targets=targets: weight_information(
            net, targets, lambda run, step: F.cross_entropy(run(x), y), InformationConfig(beta=1e-4, steps=1500),
            progress=False))
        rows.append({"labels": name, "train acc": acc, "loss clean": r.loss_clean, "loss noisy": r.loss_noisy,
                     "info layer 0 (nats)": r.info["0"], "info layer 2 (nats)": r.info["2"],
                     "total per sample": r.total / len(x), "bound layer 0": r.bound["0"], "bound layer 2": r.bound["2"],
                     "seconds": seconds})
        print(rows[-1], flush=True)
    print_table("Information in the weights: real vs shuffled labels (differences are meaningful, not the constant)", rows)
    print(f"shuffled - real, per sample: {rows[1]['total per sample'] - rows[0]['total per sample']:.3f} nats")


if __name__ == "__main__":
    main()
