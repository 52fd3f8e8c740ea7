"""Bilinear classifiers on Fashion-MNIST, read from their weights.

Model (as in the paper): pixels -> linear embedding (128) -> bilinear layer (512 products) -> 10 logits.

Claims:
- test accuracy of the classifier trained with weight decay (aim >= 88%);
- keeping only the top-k eigenvectors per class (k = 1, 2, 5, 10, 20): top-10 keeps >= 97% of the accuracy;
- adversarial masks built from eigenvectors flip far more images to their target class than same-norm
  random noise on an unregularised model (no weight decay, no noise), less so on one trained with input
  noise; both side by side;
- top eigenvectors agree across two training seeds (baseline: an untrained model).

Usage: python benchmarks/bilinear_fashion.py [--steps 16000] [--weight-decay 0.6] [--noise 0.3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.bilinear.class_forms import class_forms  # noqa: E402
from paramlens.bilinear.result import analyse  # noqa: E402
from paramlens.bilinear.truncation import eigenvector_similarity  # noqa: E402
from paramlens.core.images import load_images  # noqa: E402
from paramlens.models.bilinear_nets import BilinearClassifier, ClassifierConfig, train_classifier  # noqa: E402

KS = (1, 2, 5, 10, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--steps", type=int, default=16_000)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--d-hidden", type=int, default=512)
    parser.add_argument("--weight-decay", type=float, default=0.6, help="weight decay of the main classifier")
    parser.add_argument("--noise", type=float, default=0.3, help="input-noise std of the noise-regularised model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_images(args.dataset)
    base = ClassifierConfig(dataset=data.name, d_input=data.n_pixels, n_classes=len(data.classes),
                            d_model=args.d_model, d_hidden=args.d_hidden, n_steps=args.steps)
    main_cfg = base.model_copy(update={"weight_decay": args.weight_decay})
    variants = {
        "weight decay": main_cfg,
        "unregularised": base,
        "input noise": base.model_copy(update={"input_noise": args.noise}),
        "weight decay, seed 1": main_cfg.model_copy(update={"seed": 1}),
    }
    models, analyses, acc_rows, attack_rows = {}, {}, [], []
    for name, cfg in variants.items():
        (model, _), seconds = timed(lambda: train_classifier(cfg, data, progress=False))
        models[name] = model
        if name == "weight decay, seed 1":
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
    forms = {n: class_forms(m) for n, m in models.items()}
    spectra = {n: f.spectra() for n, f in forms.items()}
    maps = {n: f.input_map for n, f in forms.items()}
    torch.manual_seed(0)  # the baseline's random weights, the same on every run
    untrained = class_forms(BilinearClassifier(variants["weight decay, seed 1"]))
    sim = eigenvector_similarity(spectra["weight decay"], spectra["weight decay, seed 1"], maps["weight decay"],
                                 maps["weight decay, seed 1"], top=5)
    chance = eigenvector_similarity(spectra["weight decay"], untrained.spectra(), maps["weight decay"],
                                    untrained.input_map, top=5)
    print_table("top eigenvectors across seeds: best |cos| with the other seed's top-5 of the same class",
                [{"eigenvector": f"#{i + 1}", "seed 0 vs seed 1": float(sim[:, i].mean()),
                  "vs untrained": float(chance[:, i].mean())} for i in range(5)])
    main_row = acc_rows[0]
    print(f"weight-decay classifier: accuracy {main_row['test accuracy']:.4f} (aim >= 0.88); top-10 keeps "
          f"{main_row['top-10 / full']:.1%} of it (bar >= 97%)")


if __name__ == "__main__":
    main()
