"""Re-assembling a residual network cut into shuffled pieces, against the simple script.

Claim: for 48 blocks (97 pieces) of width 48/96 and 10,000 rows, `paramlens reverse reassemble` pairs the
pieces from their weights, orders the blocks with the data and reproduces the outputs exactly (MSE ~ 0) in
under 12 s on 2 cores, at least 3x faster than the simple script (:func:`simple_script`: Hungarian pairing on
|trace(W_out W_in)|, blocks sorted by ||W_out||, then swaps of neighbours while one lowers the error on all rows).
Both run side by side in this process on the same generated networks, saved the way public puzzles are: one
``torch.save`` state dict per piece (``piece_<i>.pth``) and a CSV of inputs, the network's output ``pred`` and
the label ``true`` it was trained on. Times include reading the files. The simple script stops at
``--simple-limit`` seconds, or when no swap of neighbours lowers the error; a ratio marked ">=" (the script stopped
before reaching the exact order) is then a lower bound.

Usage: python benchmarks/reverse_reassemble.py [--seeds 0,1,2] [--threads 2] [--simple-limit 1800]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.models.shuffled import PiecesConfig, make_shuffled  # noqa: E402
from paramlens.reverse.reassemble import reassemble  # noqa: E402


def simple_script(folder: Path, limit: float) -> tuple[list[int], bool, bool]:
    """The plain way (numpy, and scipy's Hungarian method): pair blocks by |trace(W_out W_in)|, start from the
    blocks sorted by ||W_out|| (ascending or descending, whichever fits better), then sweep over neighbours and
    swap any two whose swap lowers the mean squared error on all rows, until a sweep changes nothing or
    ``limit`` seconds have passed. Returns the piece order, whether it is exact, and whether it stopped early."""
    start = time.perf_counter()
    files = sorted(folder.glob("piece_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    pieces = [{k: v.double().numpy() for k, v in torch.load(f, weights_only=True).items()} for f in files]
    header = (folder / "data.csv").open().readline().strip().split(",")
    data = np.loadtxt(folder / "data.csv", delimiter=",", skiprows=1)
    x = data[:, [i for i, name in enumerate(header) if name.startswith("x")]]
    y = data[:, [header.index("pred")]]
    d = x.shape[1]
    w_in = [i for i, p in enumerate(pieces) if p["weight"].shape[1] == d and p["weight"].shape[0] > d]
    w_out = [i for i, p in enumerate(pieces) if p["weight"].shape[0] == d]
    last = next(i for i, p in enumerate(pieces) if p["weight"].shape[0] < d)
    trace = np.abs(np.einsum("ahd,bdh->ab", np.stack([pieces[i]["weight"] for i in w_in]),
                             np.stack([pieces[i]["weight"] for i in w_out])))
    rows, cols = linear_sum_assignment(-trace)
    blocks = [(w_in[r], w_out[c]) for r, c in zip(rows, cols)]

    def error(order: list[int]) -> float:
        h = x
        for b in order:
            e, c = pieces[blocks[b][0]], pieces[blocks[b][1]]
            h = h + np.maximum(h @ e["weight"].T + e["bias"], 0) @ c["weight"].T + c["bias"]
        return float(np.mean((h @ pieces[last]["weight"].T + pieces[last]["bias"] - y) ** 2))

    by_norm = np.argsort([np.linalg.norm(pieces[c]["weight"]) for _, c in blocks]).tolist()
    order = min(by_norm, by_norm[::-1], key=error)
    best, improved, stopped = error(order), True, False
    while improved and not stopped:
        improved = False
        for i in range(len(order) - 1):
            candidate = order[:i] + [order[i + 1], order[i]] + order[i + 2:]
            if (e := error(candidate)) < best:
                order, best, improved = candidate, e, True
            if time.perf_counter() - start > limit:
                stopped = True
                break
    exact = best <= 1e-10 * float(np.mean(y**2)) + 1e-12
    return [p for b in order for p in blocks[b]] + [last], exact, stopped


def compare(seed: int, limit: float) -> dict:
    """Both methods on one generated network (seed); times include reading the files."""
    shuffled = make_shuffled(PiecesConfig(seed=seed))
    with tempfile.TemporaryDirectory() as tmp:
        folder = shuffled.save(Path(tmp) / "pieces", fmt="pth", output="pred", label="true")
        (simple, simple_exact, stopped), simple_s = timed(lambda: simple_script(folder, limit))
        r = reassemble(folder, folder / "data.csv", progress=False)
    return {"seed": seed, "simple s": simple_s, "simple exact": simple_exact,
            "simple order right": simple == shuffled.order, "reassemble s": r.seconds, "reassemble exact": r.exact,
            "reassemble order right": r.order == shuffled.order, "speed-up": f"{'>=' if stopped or not simple_exact else ''}"
            f"{simple_s / r.seconds:.1f}x", "MSE": r.mse, "start": r.seed, "steps": r.steps,
            "orders run": r.orders_run, "target": ",".join(r.targets), "not used": ",".join(r.unused_columns)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (reassemble itself runs on one)")
    parser.add_argument("--simple-limit", type=float, default=1800.0, help="seconds the simple script may run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for seed in map(int, args.seeds.split(",")):
        rows.append(compare(seed, args.simple_limit))
        print(rows[-1], flush=True)
    print_table("Re-assembly of 48 blocks (97 .pth pieces, width 48/96, 10,000 rows): simple script vs reassemble",
                rows)


if __name__ == "__main__":
    main()
