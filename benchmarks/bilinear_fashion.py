"""Bilinear classifiers on Fashion-MNIST, read from their weights.

Claims:
- test accuracy of a 784 -> 512 -> 10 bilinear classifier (aim >= 88%);
- keeping only the top-k eigenvectors per class (k = 1, 2, 5, 10, 20): top-10 keeps >= 97% of the accuracy;
- adversarial masks built from eigenvectors flip far more images to their target class than same-norm
  random noise, less so on a model trained with input noise; both models side by side;
- top eigenvectors agree across two training seeds (baseline: an untrained model).

Usage: python benchmarks/bilinear_fashion.py [--steps 6000] [--noise 0.3] [--dataset fashion-mnist]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.bilinear.classifier import class_forms  # noqa: E402
from paramlens.bilinear.result import analyse  # noqa: E402
from paramlens.bilinear.truncation import eigenvector_similarity  # noqa: E402
from paramlens.core.images import load_images  # noqa: E402
from paramlens.models.bilinear import BilinearClassifier, ClassifierConfig, train_classifier  # noqa: E402

KS = (1, 2, 5, 10, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--d-hidden", type=int, default=512)
    parser.add_argument("--noise", type=float, default=0.3, help="input-noise std of the regularised model")
    parser.add_argument("--weight-decay", type=float, default=0.1, help="weight decay of the regularised model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_images(args.dataset)
    base = ClassifierConfig(dataset=data.name, d_input=data.n_pixels, n_classes=len(data.classes),
                            d_hidden=args.d_hidden, n_steps=args.steps)
    variants = {
        "unregularised": base,
        "regularised": base.model_copy(update={"input_noise": args.noise, "weight_decay": args.weight_decay}),
        "regularised, seed 1": base.model_copy(update={"input_noise": args.noise, "weight_decay": args.weight_decay,
                                                        "seed": 1}),
    }
    models, analyses, acc_rows, attack_rows = {}, {}, [], []
    for name, cfg in variants.items():
        (model, _), seconds = timed(lambda: train_classifier(cfg, data, progress=False))
        models[name] = model
        if name.endswith("seed 1"):
            continue
        a = analyses[name] = analyse(model, data)
        t = dict(zip(a.truncation["ks"], a.truncation["accuracy"]))
        acc_rows.append({"model": name, "train s": seconds, "test accuracy": a.accuracy,
                         **{f"top-{k}": t[k] for k in KS}, "top-10 / full": t[10] / a.accuracy,
                         "mean effective rank": sum(a.effective_ranks) / len(a.effective_ranks)})
        for norm, hit, noise in zip(a.attack["norms"], a.attack["mask"], a.attack["noise"]):
            attack_rows.append({"model": name, "norm": norm, "mask success": hit, "noise success": noise,
                                "ratio": hit / max(noise, 1e-4)})
    print_table(f"{data.name}: accuracy of the full and top-k truncated models", acc_rows)
    print_table("adversarial masks from eigenvectors vs same-norm Gaussian noise (share flipped to the target)",
                attack_rows)
    spectra = {n: class_forms(m).spectra() for n, m in models.items()}
    untrained = class_forms(BilinearClassifier(variants["regularised, seed 1"])).spectra()
    sim = eigenvector_similarity(spectra["regularised"], spectra["regularised, seed 1"], top=5)
    chance = eigenvector_similarity(spectra["regularised"], untrained, top=5)
    print_table("top eigenvectors across seeds: best |cos| with the other seed's top-5 of the same class",
                [{"eigenvector": f"#{i + 1}", "seed 0 vs seed 1": float(sim[:, i].mean()),
                  "vs untrained": float(chance[:, i].mean())} for i in range(5)])
    ok = acc_rows[0]["top-10 / full"] >= 0.97 and acc_rows[1]["top-10 / full"] >= 0.97
    print(f"top-10 keeps >= 97% of full accuracy: {ok}")


if __name__ == "__main__":
    main()
