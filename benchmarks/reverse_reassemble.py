"""Re-assembling a residual network cut into shuffled pieces.

Claim: for 48 blocks (97 pieces) of width 48/96 and 10,000 rows, `paramlens reverse reassemble` pairs the
pieces from their weights, orders the blocks with the data and reproduces the outputs exactly (MSE ~ 0) in
under 60 s on 2 cores. The table shows, per generated network (seed), whether the pairing and the order
match the ground truth, the error, the number of candidate orders scored and run, and the time. Speed
baseline, same run: one search round's candidate moves scored by running each moved network from its
cached prefix (a plain loop), against the batched first-order scoring the search uses.

Usage: python benchmarks/reverse_reassemble.py [--seeds 0,1,2] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.models.shuffled import PiecesConfig, make_shuffled  # noqa: E402
from paramlens.reverse.block_order import moves, predicted_changes, seed_orders  # noqa: E402
from paramlens.reverse.reassemble import load_pieces, load_rows, pair_pieces, reassemble, stack_blocks  # noqa: E402


def scoring_speed(folder: Path) -> dict:
    """Seconds to score every move of one round: plain loop vs batched first-order model."""
    pieces = load_pieces(folder)
    pairing = pair_pieces(pieces)
    blocks = stack_blocks(pieces, pairing).to(torch.float32)
    x, _ = load_rows(folder / "data.csv", blocks.expand.shape[2], blocks.readout.shape[0])
    x = x[:256].float()
    order = next(iter(seed_orders(blocks, x).values()))
    h = blocks.streams(order, x)
    g = blocks.output_jacobians(order, h)
    cands = moves(order, blocks.n)
    _, batched = timed(lambda: predicted_changes(blocks, cands, h, g, chunk=512))

    def loop():
        for m in cands:
            z = h[m.lo]
            for b in m.apply(order)[m.lo:]:
                z = z + blocks.update(b, z)
            blocks.output(z)

    _, plain = timed(loop)
    return {"moves per round": len(cands), "plain loop s": plain, "batched s": batched, "speed-up": plain / batched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, speed = [], None
    for seed in map(int, args.seeds.split(",")):
        shuffled = make_shuffled(PiecesConfig(seed=seed))
        with tempfile.TemporaryDirectory() as tmp:
            folder = shuffled.save(Path(tmp) / "pieces")
            truth = {(shuffled.order[2 * k], shuffled.order[2 * k + 1]) for k in range(48)}
            pairing = pair_pieces(load_pieces(folder))
            r = reassemble(folder, folder / "data.csv", progress=False)
            if speed is None:
                speed = scoring_speed(folder)
        rows.append({"seed": seed, "start": r.seed, "pairs right": f"{len(truth & set(pairing.blocks))}/48",
                     "pairing margin": pairing.margin, "order right": r.order == shuffled.order, "exact": r.exact,
                     "MSE": r.mse, "rounds": r.rounds, "orders scored": r.candidates_scored,
                     "orders run": r.candidates_run, "seconds": r.seconds})
        print(rows[-1], flush=True)
    print_table("Re-assembly of 48 blocks (97 pieces, width 48/96, 10,000 rows)", rows)
    print_table("Scoring one round of moves: plain loop vs batched first-order model", [speed])


if __name__ == "__main__":
    main()
