"""Structure scan of a long chain (3,000 layers, 300 M parameters: under 30 s and 2 GiB) and of full hand-written
MD5 and SHA-256 networks, each found structure next to the truth.

The long chain is generated: sparse ternary layers of width 316 in a repeating block of 5 layer types (copy rows,
NOT rows, ANDs, XOR rows, threshold rows) with random wiring; the NOT/copy layer's biases change per repeat.
Baseline in the same run: reading the whole file at once (``safetensors.load_file``) and scanning from memory.

The hash networks are ``hash_network(name, 16, target=digest)`` at full steps (``block=8``), float32 safetensors.
Their truth, from how they are written: 7 bit-extraction layers, then one block per step (MD5: a function layer and
two 4-layer adders, 9 layers; SHA-256: a function layer and one 4-layer adder, 5 layers) for 64 steps; the step's
constant (MD5 T[k], SHA-256 K[k]) as 32 weightless rows, lowest bit first, in the function layer (position 0); the
digest compared by the negated biases of the last hidden layer, read from the layer before it.
Each scan runs in its own process so its peak resident memory (the memory-mapped file's pages included) is its own.

Usage: python benchmarks/reverse_scan.py [--layers 3000] [--width 316] [--hashes md5 sha256]
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
from common import in_fresh_process, print_table

MESSAGE = b"the 16-byte msg!"
TRUTH = {  # block, start, repeats, what varies between steps, the constant per step
    "md5": (9, 7, 64, ("0 (T[k]; round function from steps 16, 32, 48; a constant padding word), 1 (message or "
                      "padding word read), 5.. (rotation)"), "MD5 T[0..63]"),
    "sha256": (5, 7, 64, ("0 (K[k]; message words consumed; schedule until step 48), 1..4 (widths: message words "
                         "consumed, schedule until step 48)"), "SHA-256 K[0..63]")}
COLUMNS = ("hash", "block", "start", "repeats", "varying positions", "constants per repeat", "checked", "seconds",
           "peak GiB")


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


def _scanned(checkpoint: str, queue: Any, **row: Any) -> None:
    """Scan ``checkpoint``, put the row with the time, the peak memory and what was found on ``queue``."""
    torch.set_num_threads(2)
    from paramlens.reverse.scan import scan

    start = time.perf_counter()
    result = scan(checkpoint, progress=False)
    row |= {"seconds": time.perf_counter() - start,
            "peak GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
            "block": result.period, "start": result.block_start, "repeats": result.n_repeats,
            "varying positions": " ".join(str(d["position"]) for d in result.differing),
            "constants per repeat": "; ".join(c.split(": ", 1)[1].split(" (entry")[0]
                                              for d in result.differing for c in d["constants"]),
            "digest": result.compared, "checked": result.checked}
    queue.put(row)


def chain_worker(path: str, streamed: bool, queue: Any) -> None:
    if streamed:
        _scanned(path, queue, path="streamed scan")
        return
    from safetensors.torch import load_file  # everything in memory first, then the same scan over a copy
    from safetensors.torch import save_file as save

    copy = Path(path).with_suffix(".copy.safetensors")
    save(load_file(path), str(copy))
    _scanned(str(copy), queue, path="load everything, then scan")
    copy.unlink()


def build_worker(name: str, path: str, queue: Any) -> None:
    """Write the full network (its own process: the scan's peak memory is the scan's)."""
    from paramlens.models.compiled import hash_network
    from paramlens.models.compiled.hashes import REFERENCES

    target = REFERENCES[name](MESSAGE)
    hash_network(name, len(MESSAGE), target=target).save(path, torch.float32)
    block, start, repeats, varying, constant = TRUTH[name]
    queue.put({"hash": f"{name} (truth)", "block": block, "start": start, "repeats": repeats,
               "varying positions": varying, "constants per repeat": f"{constant} at position 0",
               "digest": target.hex(), "checked": name, "seconds": "", "peak GiB": ""})


def hash_worker(name: str, path: str, queue: Any) -> None:
    _scanned(path, queue, hash=f"{name} (found)")


def chain_benchmark(n_layers: int, width: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain.safetensors"
        n_params = make_chain(path, n_layers, width)
        rows = [in_fresh_process(chain_worker, str(path), streamed) for streamed in (True, False)]
    rows[0]["time ratio"], rows[1]["time ratio"] = rows[0]["seconds"] / rows[1]["seconds"], 1.0
    rows[0]["memory ratio"], rows[1]["memory ratio"] = rows[0]["peak GiB"] / rows[1]["peak GiB"], 1.0
    for row in rows:
        del row["constants per repeat"], row["digest"], row["checked"]
    print_table(f"scan of {n_layers} layers, {n_params / 1e6:.0f} M parameters (truth: block 5 from layer 0, "
                f"{n_layers // 5} repeats; position 1 holds a per-repeat constant in its biases, and the random "
                "wiring makes every position differ in wiring)", rows)
    print(f"streamed scan under 30 s: {rows[0]['seconds'] < 30}; under 2 GiB: {rows[0]['peak GiB'] < 2}")


def hash_benchmark(names: list[str]) -> None:
    rows, digests = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = str(Path(tmp) / f"{name}.safetensors")
            truth = in_fresh_process(build_worker, name, path)
            found = in_fresh_process(hash_worker, name, path)
            Path(path).unlink()
            rows += [{k: truth[k] for k in COLUMNS}, {k: found[k] for k in COLUMNS}]
            digests.append(f"{name}: digest found {found['digest']}, target {truth['digest']}, equal: "
                           f"{found['digest'] == truth['digest']}")
    print_table(f"full hand-written hash networks, 16-byte message {MESSAGE!r}: found next to the truth", rows)
    print("\n".join(digests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=3000)
    parser.add_argument("--width", type=int, default=316)
    parser.add_argument("--hashes", nargs="*", default=["md5", "sha256"], choices=sorted(TRUTH))
    args = parser.parse_args()
    chain_benchmark(args.layers, args.width)
    hash_benchmark(args.hashes)


if __name__ == "__main__":
    main()
