"""Layer-update geometry and first-layer rotation on a tiny in-project LM and on SmolLM2-135M.

Claims checked (and reported next to the papers' numbers, not tuned toward them):
- "On the Geometric Structure of Layer Updates" (2026): the update D is almost perfectly aligned with its
  tokenwise part T, the residual R much less; R has larger angular deviation and less energy in T's
  dominant subspace; Spearman(approximation error, output perturbation) often > 0.7, up to 0.95.
- Rotation (Chang & Bergen 2025, GPT-2 large, full model): layer 0 reads 0 degrees toward the input; layer 1
  reads 70.5 degrees toward the output.
- Speed: collecting SmolLM2's activations over 4,096 tokens takes under 2 minutes on 2 cores; the table
  gives the time per 1,000 tokens against one plain forward pass over the same tokens (the baseline).

Usage: python benchmarks/geometry_lm.py [--tokens 4096] [--threads 2] [--skip-smollm2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.core.resolve import resolve  # noqa: E402
from paramlens.core.streams import stream_batches  # noqa: E402
from paramlens.core.text import corpus_windows  # noqa: E402
from paramlens.geometry.layer_updates import GeometryConfig, layer_geometry  # noqa: E402
from paramlens.geometry.rotation import rotation  # noqa: E402
from paramlens.models.lm.tiny import TinyLMConfig, train_tiny_lm  # noqa: E402


def analyse(name: str, model, tokenizer, n_tokens: int, context: int) -> None:
    ids = corpus_windows(tokenizer, "fortunes", n_tokens, context)  # (n, T), with the tokenizer's special tokens
    with torch.no_grad():
        _, forward = timed(lambda: [model(input_ids=w) for w in ids.split(8)])
    _, collect = timed(lambda: sum(h.shape[2] for _, h in stream_batches(model, ids, 8)))
    print_table(f"{name}: activation collection over {ids.numel()} tokens", [{
        "streams s": collect, "plain forward s": forward, "ratio": collect / forward,
        "s per 1k tokens": 1000 * collect / ids.numel()}])
    g, seconds = timed(lambda: layer_geometry(model, ids, GeometryConfig(), name=name, progress=False))
    for cls in g.classes:
        rows = [{"layer": r["layer"], "cos(D,T)": r["cos_DT"], "cos(D,R)": r["cos_DR"], "angle(D,T)": r["angle_DT"],
                 "angle(D,R)": r["angle_DR"], "top-k energy D": r["energy_D_topk"], "top-k energy R": r["energy_R_topk"],
                 "EV": r["explained_variance"], "KL if replaced": g.kl[r["layer"]] if cls == g.primary else float("nan")}
                for r in g.rows(cls)]
        print_table(f"{name}: tokenwise class '{cls}'", rows)
    print(f"{name}: Spearman(|R|/|D|, KL) over layers x tokens = {g.spearman:.3f} (paper: often > 0.7, up to 0.95); "
          f"geometry took {seconds:.1f} s", flush=True)
    rot = rotation(model, ids, name=name)
    print_table(f"{name}: rotation (degrees); paper (GPT-2 large): layer 0 -> input 0, layer 1 -> output 70.5",
                [{"layer": i, "to input": a, "to output": b} for i, (a, b) in enumerate(zip(rot.to_input, rot.to_output))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-smollm2", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TinyLMConfig(mlp="swiglu", n_layers=4, d_model=128, d_mlp=512, context=64, n_steps=1500)
        model, tokenizer, history = train_tiny_lm(cfg, folder=Path(tmp) / "tiny", progress=False)
        print(f"tiny LM: 4 layers, d=128, loss {history[0]['loss']:.2f} -> {history[-1]['loss']:.2f}", flush=True)
        analyse("tiny LM", model, tokenizer, args.tokens, 64)
    if not args.skip_smollm2:
        loaded = resolve("smollm2")
        analyse(loaded.name, loaded.module, loaded.tokenizer, args.tokens, 128)


if __name__ == "__main__":
    main()
