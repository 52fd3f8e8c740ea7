"""Speed and memory of reading a 784 -> 512 -> 10 bilinear classifier from its weights.

Claim: all 10 class spectra and the top-20 output features (of the 512 hidden products) take under 5 s on
2 cores, without materialising the third-order tensor B. Baseline, measured in the same run: the naive
path that builds B (d_out x 785 x 785 float64), contracts it for each class, and takes output features from
the SVD of B flattened. Each path runs in its own process so its peak memory can be read.

Usage: python benchmarks/bilinear_speed.py [--d-hidden 512] [--features 20]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import in_fresh_process, print_table  # noqa: E402

from paramlens.bilinear.class_forms import class_forms  # noqa: E402
from paramlens.bilinear.spectra import bilinear_tensor, eigen, output_features  # noqa: E402
from paramlens.models.bilinear_nets import BilinearClassifier, ClassifierConfig  # noqa: E402


def fast(model: BilinearClassifier, k: int) -> tuple[list, list]:
    spectra = class_forms(model).spectra()
    feats = output_features(model.blocks[0], k, readout=torch.eye(model.cfg.d_hidden))
    return [s.values for s in spectra], [s.values for s in feats.spectra]


def naive(model: BilinearClassifier, k: int) -> tuple[list, list]:
    layer = model.blocks[0]
    B = bilinear_tensor(layer)  # (10, 785, 785)
    spectra = [eigen(B[c, :-1, :-1]) for c in range(len(B))]
    del B
    W, V = layer.w.weight.detach().double(), layer.v.weight.detach().double()
    H = 0.5 * (torch.einsum("hi,hj->hij", W, V) + torch.einsum("hj,hi->hij", W, V))  # (512, 784, 784)
    flat = H.flatten(1)
    values, vectors = torch.linalg.eigh(flat @ flat.T)  # left singular vectors of the flattened tensor
    top = vectors[:, values.argsort(descending=True)[:k]].T
    feats = [eigen(torch.einsum("o,oij->ij", u, H)) for u in top]
    return [s.values for s in spectra], [s.values for s in feats]


def worker(path: str, d_hidden: int, k: int, queue: Any) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = BilinearClassifier(ClassifierConfig(d_hidden=d_hidden))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    classes, feats = (fast if path == "fast" else naive)(model, k)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB above the loaded model
    queue.put({"path": path, "seconds": seconds, "peak MiB above start": peak / 1024,
               "classes": torch.stack(classes)[:, :5].tolist(), "features": torch.stack(feats)[:, :5].tolist()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-hidden", type=int, default=512)
    parser.add_argument("--features", type=int, default=20)
    args = parser.parse_args()
    f, n = (in_fresh_process(worker, path, args.d_hidden, args.features) for path in ("fast", "naive"))
    fc, ff, nc, nf = (torch.tensor(r[k]) for r in (f, n) for k in ("classes", "features"))
    same = torch.allclose(fc, nc, atol=1e-8) and torch.allclose(ff.abs(), nf.abs(), rtol=1e-6)
    rows = [{k: v for k, v in r.items() if k not in ("classes", "features")} for r in (f, n)]
    rows[0]["speed-up"], rows[1]["speed-up"] = n["seconds"] / f["seconds"], 1.0
    rows[0]["memory ratio"], rows[1]["memory ratio"] = f["peak MiB above start"] / n["peak MiB above start"], 1.0
    print_table(f"10 class spectra + top-{args.features} output features, 784 -> {args.d_hidden} -> 10", rows)
    print(f"same top eigenvalues on both paths: {same}; fast path under 5 s: {f['seconds'] < 5}")


if __name__ == "__main__":
    main()
