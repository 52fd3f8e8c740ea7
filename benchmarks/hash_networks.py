"""Full MD5, SHA-1 and SHA-256 as integer ReLU networks in two encodings, checked against hashlib.

Style (a), ``hash_circuit`` + ``compile_circuit``: the full circuit is checked by evaluating it. Compiled, it takes
about 55 (MD5) to 70 (SHA) dense int64 layers per step, thousands at full steps: full MD5 (16-byte messages) is
3,649 layers, 380 M parameters and about 3 GiB while compiling; SHA-1 and SHA-256 need several times that. Hashes
not in ``--compile-full`` are compiled at the two ``--compile-steps`` (checked against the reduced reference) and
extrapolated linearly to full steps (rows marked ``~``: low, since later steps are wider and SHA's schedule adders
start at step 16). Compiled networks are kept sparse once built.
Style (b), ``hash_network``: built in full, run exactly (sparse, int64) on the messages, and written as float32
safetensors (streamed one layer at a time) to measure the file, which is then deleted.

Usage: python benchmarks/hash_networks.py [--bytes 16] [--messages 4] [--compile-steps 2 4] [--compile-full md5]
       [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed

from paramlens.models.compiled import (
    REFERENCES,
    SparseNetwork,
    bits_to_bytes,
    compile_circuit,
    hash_circuit,
    hash_network,
    message_bits,
)
from paramlens.models.compiled.hashes import FULL_STEPS

MIB = 2**20


def circuit_row(name: str, msgs: list[bytes]) -> dict[str, Any]:
    """The full style (a) circuit, evaluated gate by gate."""
    circuit, seconds = timed(lambda: hash_circuit(name, len(msgs[0])))
    ok = bits_to_bytes(circuit.evaluate(message_bits(msgs))) == [hashlib.new(name, m).digest() for m in msgs]
    return {"hash": name, "style": "a circuit", "steps": FULL_STEPS[name], "layers": "-",
            "parameters": f"{len(circuit.gates)} gates", "max width": "-", "zero fraction": "-", "file MiB": "-",
            "build s": seconds, "matches": "hashlib" if ok else "WRONG"}


def network_row(name: str, style: str, steps: int, net: SparseNetwork, seconds: float, ok: bool,
                folder: Path) -> dict[str, Any]:
    """Sizes of ``net``, and its float32 safetensors file (written, measured, deleted)."""
    path = net.save(folder / f"{name}.safetensors", dtype=torch.float32)
    size = path.stat().st_size
    path.unlink()
    reference = "hashlib" if steps == FULL_STEPS[name] else f"reference ({steps} steps)"
    return {"hash": name, "style": style, "steps": steps, "layers": len(net.layers), "parameters": net.n_parameters,
            "max width": max(net.widths), "zero fraction": net.zero_fraction, "file MiB": size / MIB,
            "build s": seconds, "matches": reference if ok else "WRONG"}


def compiled(name: str, msgs: list[bytes], steps: int) -> tuple[SparseNetwork, float, bool]:
    """Style (a) compiled at ``steps`` steps (kept sparse from here on), its build time, and whether it matches."""
    net, seconds = timed(lambda: compile_circuit(hash_circuit(name, len(msgs[0]), steps)))
    ok = bits_to_bytes(net.forward(message_bits(msgs))) == [REFERENCES[name](m, steps) for m in msgs]
    return SparseNetwork.from_dense(net.weights, net.biases), seconds, ok


def compiled_rows(name: str, msgs: list[bytes], steps: list[int], full: bool, folder: Path) -> list[dict[str, Any]]:
    """Style (a) at full steps, or at the two ``steps`` and extrapolated linearly to full steps."""
    if full:
        return [network_row(name, "a compiled", FULL_STEPS[name], *compiled(name, msgs, None), folder)]
    rows = [network_row(name, "a compiled", s, *compiled(name, msgs, s), folder) for s in steps]
    (s1, s2), last = steps, FULL_STEPS[name]
    layers, params = (rows[1][k] + (last - s2) * (rows[1][k] - rows[0][k]) / (s2 - s1)
                      for k in ("layers", "parameters"))
    rows.append({"hash": name, "style": "a compiled", "steps": last, "layers": f"~{layers:.0f}",
                 "parameters": f"~{params:.3g}", "max width": "-", "zero fraction": "-",
                 "file MiB": f"~{4 * params / MIB:.0f}", "build s": "-", "matches": "(not built)"})
    return rows


def handwritten_row(name: str, msgs: list[bytes], folder: Path) -> dict[str, Any]:
    """The full style (b) network, run exactly on the messages."""
    net, seconds = timed(lambda: hash_network(name, len(msgs[0])))
    out = net.forward(torch.tensor([list(m) for m in msgs]))
    ok = bits_to_bytes(out) == [hashlib.new(name, m).digest() for m in msgs]
    return network_row(name, "b handwritten", FULL_STEPS[name], net, seconds, ok, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=16, help="message length (1..55)")
    parser.add_argument("--messages", type=int, default=4, help="random messages checked per network")
    parser.add_argument("--compile-steps", type=int, nargs=2, default=[2, 4], help="the two step counts compiled in "
                        "style (a)")
    parser.add_argument("--compile-full", nargs="*", default=["md5"], choices=list(FULL_STEPS),
                        help="hashes compiled at full steps in style (a) (MD5: about 3 GiB of memory; SHA-1 and "
                        "SHA-256 several times that)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(set(args.compile_steps)) != 2:
        parser.error("--compile-steps takes two different step counts")
    rng = random.Random(args.seed)
    msgs = [bytes(rng.randrange(256) for _ in range(args.bytes)) for _ in range(args.messages)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in FULL_STEPS:
            rows.append(circuit_row(name, msgs))
            rows += compiled_rows(name, msgs, sorted(args.compile_steps), name in args.compile_full, Path(tmp))
            rows.append(handwritten_row(name, msgs, Path(tmp)))
    print_table(f"Hash networks, {args.bytes}-byte messages, {args.messages} random messages each", rows)


if __name__ == "__main__":
    main()
