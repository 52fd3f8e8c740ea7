"""Bigram subnetworks of a tiny in-project LM (CPU), and the first-layer rotation with and without it.

Paper (Chang & Bergen 2025): subnetwork surprisals correlate with bigram surprisals at r = 0.95-0.99; the
subnetwork is a small share of the parameters with a plurality in the first MLP; removing it hurts far more
than removing a random subnetwork of the same per-matrix sizes; in GPT-2 large, layer 1's rotation toward
the output falls from 70.5 to 46.3 degrees and toward the input rises from 0 to 56.2 in the subnetwork.
SmolLM2-135M's subnetwork needs a GPU (a mask logit and Adam state per block weight, 100 M weights); this
script runs on the tiny LM and says so.

Usage: python benchmarks/bigram_subnetwork.py [--steps 3000] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.geometry.rotation import rotation  # noqa: E402
from paramlens.models.lm.tiny import TinyLMConfig, corpus_tokens, train_tiny_lm  # noqa: E402
from paramlens.subnetwork.bigram import BigramConfig, bigram_subnetwork  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TinyLMConfig(mlp="swiglu", n_layers=4, d_model=128, d_mlp=512, context=64, n_steps=1500)
    model, tok, history = train_tiny_lm(cfg, progress=False)
    tokens = corpus_tokens(cfg, tok)[:300_000]
    windows = tokens[: len(tokens) // 64 * 64].view(-1, 64)  # whole windows of 64 tokens
    print(f"tiny LM (4 layers, d=128, SwiGLU) on fortunes: loss {history[0]['loss']:.2f} -> {history[-1]['loss']:.2f}; "
          f"{len(tokens)} tokens; device: CPU (no GPU here, so SmolLM2's subnetwork is not run)", flush=True)
    r, seconds = timed(lambda: bigram_subnetwork(model, windows, BigramConfig(max_steps=args.steps), name="tiny LM",
                                                 progress=False))
    print(r.summary(), flush=True)
    print_table("Bigram subnetwork (tiny LM) vs paper", [
        {"measure": "Pearson r, subnetwork vs bigram surprisal", "ours": r.pearson, "paper": "0.95-0.99"},
        {"measure": "Pearson r, full model vs bigram surprisal", "ours": r.pearson_full, "paper": "-"},
        {"measure": "active share of block parameters", "ours": r.active / r.total, "paper": "small"},
        {"measure": "loss full / subnetwork alone (nats)", "ours": f"{r.loss_full:.3f} / {r.loss_subnetwork:.3f}", "paper": "-"},
        {"measure": "loss without it / without random (nats)", "ours": f"{r.loss_without:.3f} / {r.loss_without_random:.3f}",
         "paper": "without it >> without random"},
        {"measure": "steps, undecided masks", "ours": f"{r.steps}, {r.undecided:.2%}", "paper": "< 1% undecided"},
        {"measure": "seconds", "ours": seconds, "paper": "-"}])
    print_table("Active parameters per layer and matrix (share of the subnetwork)",
                [{k: row[k] for k in ("target", "active", "share")} for row in r.per_matrix])
    masked = r.weights(model)
    ids = windows[-128:]
    full, sub = rotation(model, ids), rotation(model, ids, weights=masked)
    print_table("Rotation (degrees): full model vs bigram subnetwork; paper GPT-2 large layer 1: to output 70.5 -> 46.3, "
                "to input 0 -> 56.2", [{"layer": i, "full to input": a, "full to output": b, "subnetwork to input": c,
                                         "subnetwork to output": e}
                                        for i, (a, b, c, e) in enumerate(zip(full.to_input, full.to_output,
                                                                             sub.to_input, sub.to_output))])


if __name__ == "__main__":
    main()
