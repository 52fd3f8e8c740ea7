"""Solving hash-lock networks from their weights alone: scan -> identify -> invert, next to the truth.

The networks are hand-written (``hash_network``, style (b): byte-code inputs, bit extraction, constants as biases of
weightless rows, carry-chain adders, equality readout with the digest as negated biases) at full steps over a
16-byte message, output 1 iff the hash of the (zero-padded) input equals the stored digest. The digest is that of a
phrase of two lowercase words drawn (``--seed``) from the 1,000 most frequent words of the default ranked word list
(wamerican, ranked by frequency in the fortunes texts), joined by a space. Variants: MD5 and SHA-256 saved as float32
safetensors, and MD5 disguised (rows permuted in every layer, 2 dead and 2 duplicated rows per layer) saved as a
``torch.save`` state dict. Each command runs in its own process (its time and peak resident memory are its own);
``invert`` identifies the network again before searching. The truth column comes from how the networks are written.

Usage: python benchmarks/reverse_hash.py [--seed 0] [--variants md5 sha256 md5-disguised]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import in_fresh_process, print_table

N_BYTES = 16
COMMON = 1000
TRUTH = {  # block, start, repeats, varying positions, the constant per step
    "md5": (9, 7, 64, "0 (T[k], round function), 1 (message word), 5.. (rotation)", "MD5 T[0..63]"),
    "sha256": (5, 7, 64, "0 (K[k], schedule), 1..4 (widths)", "SHA-256 K[0..63]")}
VARIANTS = {"md5": ("md5", False, "safetensors"), "sha256": ("sha256", False, "safetensors"),
            "md5-disguised": ("md5", True, "pt")}


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def phrase(seed: int) -> bytes:
    from paramlens.reverse.candidates import load_words

    words = load_words().words[:COMMON]
    rng = random.Random(seed)
    return f"{rng.choice(words)} {rng.choice(words)}".encode()


def build_worker(variant: str, path: str, message: bytes, queue: Any) -> None:
    from paramlens.models.compiled import Nuisance, disguise, hash_network
    from paramlens.models.compiled.hashes import REFERENCES

    name, disguised, _ = VARIANTS[variant]
    start = time.perf_counter()
    digest = REFERENCES[name](message.ljust(N_BYTES, b"\0"))
    net = hash_network(name, N_BYTES, target=digest)
    if disguised:
        net = disguise(net, Nuisance(permute=True, dead=2, duplicate=2, seed=1))
    net.save(path, torch.float32)
    queue.put({"digest": digest.hex(), "layers": len(net.layers), "parameters": net.n_parameters,
               "seconds": time.perf_counter() - start})


def scan_worker(path: str, queue: Any) -> None:
    from paramlens.reverse.scan import scan

    start = time.perf_counter()
    r = scan(path, progress=False)
    constants = sorted({c.split(": ", 1)[1].split(" (entry")[0] for d in r.differing for c in d["constants"]})
    queue.put({"block": r.period, "start": r.block_start, "repeats": r.n_repeats,
               "varying": " ".join(str(d["position"]) for d in r.differing), "constants": "; ".join(constants),
               "digest": r.compared, "seconds": time.perf_counter() - start, "peak GiB": _peak()})


def identify_worker(path: str, queue: Any) -> None:
    from paramlens.reverse.identify import identify

    start = time.perf_counter()
    r = identify(path, samples=64, progress=False)
    found = r.found()
    lock = [s.line() for s in found if s.kind == "equality" and s.output]
    digest = [s for s in found if s.kind == "units" and s.entry != "input" and s.view == "bits"]
    queue.put({"statements": len(found), "lock": lock[0] if lock else "none",
               "digest bits": (f"layer {digest[-1].first}: {digest[-1].claim}, {digest[-1].order}" if digest
                               else "none"), "inputs": r.domain, "seconds": time.perf_counter() - start,
               "peak GiB": _peak()})


def invert_worker(path: str, state_dir: str, queue: Any) -> None:
    from paramlens.reverse.invert import invert_file

    start = time.perf_counter()
    r = invert_file(path, "1", state_dir=Path(state_dir), max_seconds=600, progress=False)
    searched = r.tried.rsplit("; ", 1)[-1]
    queue.put({"found": r.message.decode() if r.message else "none", "search": searched,
               "seconds": time.perf_counter() - start, "peak GiB": _peak()})


def run_variant(variant: str, message: bytes, tmp: Path) -> list[dict]:
    name, _, suffix = VARIANTS[variant]
    path = str(tmp / f"{variant}.{suffix}")
    built = in_fresh_process(build_worker, variant, path, message)
    scanned = in_fresh_process(scan_worker, path)
    named = in_fresh_process(identify_worker, path)
    opened = in_fresh_process(invert_worker, path, str(tmp / "searches" / variant))  # no search reused
    Path(path).unlink()
    block, start, repeats, varying, constant = TRUTH[name]
    total = scanned["seconds"] + named["seconds"] + opened["seconds"]
    return [
        {"network": variant, "step": "truth", "found": f"block {block} from layer {start} x {repeats}; varying "
         f"{varying}; {constant}; digest {built['digest']}; preimage {message.decode()!r}", "seconds": "", "peak GiB": ""},
        {"network": variant, "step": "built", "found": f"{built['layers']} layers, {built['parameters'] / 1e6:.0f} M "
         "parameters (float32)", "seconds": built["seconds"], "peak GiB": ""},
        {"network": variant, "step": "scan", "found": f"block {scanned['block']} from layer {scanned['start']} x "
         f"{scanned['repeats']}; varying {scanned['varying']}; {scanned['constants']}; digest {scanned['digest']} "
         f"(right: {scanned['digest'] == built['digest']})", "seconds": scanned["seconds"],
         "peak GiB": scanned["peak GiB"]},
        {"network": variant, "step": "identify", "found": f"inputs {named['inputs']}; {named['statements']} statements;"
         f" {named['digest bits']}; {named['lock']}", "seconds": named["seconds"], "peak GiB": named["peak GiB"]},
        {"network": variant, "step": "invert", "found": f"{opened['found']!r} (right: "
         f"{opened['found'].encode() == message}); {opened['search']}", "seconds": opened["seconds"],
         "peak GiB": opened["peak GiB"]},
        {"network": variant, "step": "scan+identify+invert", "found": f"under 10 minutes: {total < 600}",
         "seconds": total, "peak GiB": ""},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    message = phrase(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            rows += run_variant(variant, message, Path(tmp))
            print_table(f"hash locks over {N_BYTES} bytes, solved from the weights", rows)


if __name__ == "__main__":
    main()
