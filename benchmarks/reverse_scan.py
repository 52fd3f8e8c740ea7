"""Structure scan of a long chain: 3,000 layers, 300 M parameters, in under a minute and 4 GiB.

The chain is generated: sparse ternary layers of width 316 in a repeating block of 5 layer types (copy
rows, NOT rows, ANDs, XOR rows, threshold rows), with one position (the NOT/copy layer) whose biases change per repeat.
Baseline in the same run: reading the whole file at once (``safetensors.load_file``) and scanning from memory.
Each path runs in its own process so its peak resident memory can be read.

Usage: python benchmarks/reverse_scan.py [--layers 3000] [--width 316]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from common import in_fresh_process, print_table  # noqa: E402


def make_chain(path: Path, n_layers: int, width: int, seed: int = 0) -> int:
    """Write the chain; returns its parameter count. Rows: a few +-1/-2 entries, integer biases."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    rows = torch.arange(width)
    for i in range(n_layers):
        kind = i % 5
        W = torch.zeros(width, width)
        cols = torch.randint(0, width, (width, 3), generator=gen)
        if kind == 0:  # copies
            W[rows, cols[:, 0]] = 1
            b = torch.zeros(width)
        elif kind == 1:  # NOTs and copies: a per-repeat constant in the biases
            bits = torch.randint(0, 2, (width,), generator=gen).float()
            W[rows, cols[:, 0]] = 1 - 2 * bits
            b = bits
        elif kind == 2:  # 2-input ANDs
            W[rows, cols[:, 0]] = 1
            W[rows, cols[:, 1]] += 1
            b = torch.full((width,), -1.0)
        elif kind == 3:  # XOR rows over a, b and their AND
            W[rows, cols[:, 0]] = 1
            W[rows, cols[:, 1]] += 1
            W[rows, cols[:, 2]] += -2
            b = torch.zeros(width)
        else:  # 3-input thresholds
            for j in range(3):
                W[rows, cols[:, j]] += 1
            b = torch.full((width,), -1.0)
        tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = W, b
    save_file(tensors, str(path))
    return n_layers * width * (width + 1)


def worker(path: str, streamed: bool, queue: Any) -> None:
    torch.set_num_threads(2)
    from paramlens.reverse.scan import scan

    start = time.perf_counter()
    if streamed:
        result = scan(path, progress=False)
    else:  # everything in memory first, then the same scan over an in-memory copy
        from safetensors.torch import load_file
        from safetensors.torch import save_file as save

        tensors = load_file(path)
        copy = Path(path).with_suffix(".copy.safetensors")
        save(tensors, str(copy))
        result = scan(copy, progress=False)
        copy.unlink()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GiB
    queue.put({"path": "streamed scan" if streamed else "load everything, then scan", "seconds": seconds,
               "peak GiB": peak, "period": result.period, "repeats": result.n_repeats,
               "differing positions": len(result.differing)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=3000)
    parser.add_argument("--width", type=int, default=316)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain.safetensors"
        n_params = make_chain(path, args.layers, args.width)
        rows = [in_fresh_process(worker, str(path), streamed) for streamed in (True, False)]
    rows[0]["time ratio"], rows[1]["time ratio"] = rows[0]["seconds"] / rows[1]["seconds"], 1.0
    rows[0]["memory ratio"], rows[1]["memory ratio"] = rows[0]["peak GiB"] / rows[1]["peak GiB"], 1.0
    print_table(f"scan of {args.layers} layers, {n_params / 1e6:.0f} M parameters (true period 5, "
                f"{args.layers // 5} repeats, 1 differing position)", rows)
    print(f"streamed scan under 60 s: {rows[0]['seconds'] < 60}; under 4 GiB: {rows[0]['peak GiB'] < 4}")


if __name__ == "__main__":
    main()
