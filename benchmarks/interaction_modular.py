"""Interaction basis on a modular-addition MLP: edges needed to keep accuracy, Fourier structure, speed.

Claims: the LIB needs fewer edges than PCA (and the neuron basis) to keep accuracy within 0.1% of the full
network's (reference: about 795 vs 865 edges on the reference code's transformer); the LIB's top input
directions are Fourier modes of a and b (share of each direction's power in its strongest frequency);
basis + edges take seconds; the basis against every layer's M from one backward pass per output, same run.

Usage: python benchmarks/interaction_modular.py [--p 59] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.interaction.basis import augmented_activations, interaction_basis, segments_of  # noqa: E402
from paramlens.interaction.edges import edges, edges_needed  # noqa: E402
from paramlens.interaction.modularity import modules  # noqa: E402
from paramlens.models.toy.modular_addition import ModularConfig, all_pairs, train_modular  # noqa: E402


def fourier_share(vectors: torch.Tensor, p: int, k: int) -> list[float]:
    """For the top ``k`` input directions: share of the power of its ``a`` part in its strongest frequency."""
    out = []
    for j in range(k):
        a = vectors[:p, j]
        power = torch.fft.rfft(a - a.mean()).abs() ** 2
        out.append(float(power.max() / power.sum().clamp_min(1e-300)))
    return out


def one_backward_per_output(segments, bases, x) -> list[torch.Tensor]:
    """The baseline: every layer's M = E[J^T J] from one autograd pass per output coordinate (batched over
    rows), with the same whitening and next-layer bases."""
    acts = augmented_activations(segments, x)
    out_m = []
    for layer, seg in enumerate(segments):
        b, nxt = bases[layer], bases[layer + 1]
        y = b.coordinates(acts[layer]).requires_grad_(True)
        out = seg(b.rebuild(y)) @ nxt.coords
        m = torch.zeros(b.size, b.size, dtype=torch.float64)
        for i in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, i].sum(), y, retain_graph=True)
            m += g.T @ g
        out_m.append(m / len(x))
    return out_m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=int, default=59)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ModularConfig(p=args.p)
    model, acc = train_modular(cfg, progress=False)
    print(f"modular addition p={cfg.p}: train acc {acc['train_acc']:.4f}, test acc {acc['test_acc']:.4f}", flush=True)
    x, y = all_pairs(cfg.p)
    segs = segments_of(model.layers())
    rows = []
    for kind in ("lib", "pca", "neuron"):
        (bases, weights), seconds = timed(lambda kind=kind: (lambda b: (b, edges(segs, b, x)))(interaction_basis(segs, x, kind)))
        needed, total, reached = edges_needed(segs, bases, x, y, weights)
        mods = modules(weights, "sqrt")
        rows.append({"basis": kind, "edges needed": needed, "of": total, "accuracy kept": reached,
                     "basis + edges s": seconds, "modules": mods.n_communities, "Q (sqrt)": mods.q})
        print(rows[-1], flush=True)
    print_table("Edges needed to keep accuracy within 0.1% (all p^2 pairs); reference: ~795 (LIB) vs ~865 (PCA)", rows)
    lib = interaction_basis(segs, x, "lib")
    shares = fourier_share(lib[0].vectors, cfg.p, 8)
    pca = interaction_basis(segs, x, "pca")
    print_table("Fourier structure: power share of the strongest frequency in the top-8 input directions",
                [{"basis": "lib", **{f"dir {i}": s for i, s in enumerate(shares)}},
                 {"basis": "pca", **{f"dir {i}": s for i, s in enumerate(fourier_share(pca[0].vectors, cfg.p, 8))}}])
    _, fast = timed(lambda: interaction_basis(segs, x, "lib"))
    slow_m, slow = timed(lambda: one_backward_per_output(segs, lib, x))
    agree = max(float((m - torch.diag(b.importance)).abs().max() / b.importance[0]) for m, b in zip(slow_m, lib))
    print_table("Speed: whole LIB (closed-form M from activation slopes) vs every layer's M by one backward pass "
                "per output", [{"LIB s": fast, "one backward per output s": slow, "speed-up": slow / fast,
                                "max relative disagreement of M": agree}])


if __name__ == "__main__":
    main()
