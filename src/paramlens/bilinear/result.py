"""One call that reads a bilinear image classifier from its weights, and the result that reports it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from paramlens.bilinear.adversarial import adversarial_masks, attack
from paramlens.bilinear.class_forms import class_forms
from paramlens.bilinear.spectra import effective_rank
from paramlens.bilinear.truncation import truncation_curve
from paramlens.core.images import ImageSet
from paramlens.core.runs import Result
from paramlens.models.bilinear_nets.classifier import BilinearClassifier
from paramlens.report import plots

ATTACK_FRACTIONS = (0.25, 0.5, 1.0)


INTRO = ("Every class logit of a bilinear layer is a quadratic form of the image, so its eigenvectors, read from the "
         "weights alone, are the patterns the class responds to.")


@dataclasses.dataclass
class ClassifierAnalysis(Result):
    """What a one-block bilinear classifier computes, read from its weights.

    Attributes:
        dataset, classes, image_shape: the data it was evaluated on.
        accuracy: test accuracy of the full model, in ``[0, 1]``.
        eigenvalues: ``(n_classes, d)`` float64, each class's spectrum sorted by ``|lambda|``.
        top_vectors: ``(n_classes, n_top, d_input)`` the top eigenvectors in pixel space (unit norm, sign chosen
            so the pixels sum to > 0).
        effective_ranks: per class, ``(sum |lambda|)^2 / sum lambda^2``.
        terms: ``(n_classes, 3)`` mean ``|quadratic|``, ``|linear|``, ``|constant|`` part of each logit on
            the test images (linear and constant are 0 without biases or a residual path).
        truncation: ``{"ks", "accuracy", "full"}``: accuracy keeping the top-k eigenvectors per class.
        attack: ``{"norms", "mask", "noise"}``: success of the eigenvector masks vs same-norm noise.
        masks: ``(n_classes, d_input)`` unit-norm adversarial masks.
        examples: ``(n_classes, 2, d_input)`` one test image of another class and it with the class's mask
            added at the middle norm; ``example_predictions``: ``[[before, after]]`` class indices.
    """

    kind = "bilinear_classifier"
    dataset: str
    classes: list[str]
    image_shape: list[int]
    accuracy: float
    eigenvalues: Tensor
    top_vectors: Tensor
    effective_ranks: list[float]
    terms: Tensor
    truncation: dict
    attack: dict
    masks: Tensor
    examples: Tensor
    example_predictions: list[list[int]]

    def summary(self) -> str:
        t = self.truncation
        acc_at = dict(zip(t["ks"], t["accuracy"]))
        shown = [k for k in (1, 2, 5, 10, 20) if k in acc_at]
        mid = len(self.attack["norms"]) // 2
        return "\n".join([
            f"bilinear classifier on {self.dataset}: test accuracy {self.accuracy:.4f}",
            "  top-k eigenvectors per class: " + ", ".join(f"k={k}: {acc_at[k]:.4f}" for k in shown),
            f"  effective rank per class: mean {sum(self.effective_ranks) / len(self.effective_ranks):.1f}",
            f"  adversarial masks at norm {self.attack['norms'][mid]:.2f}: {self.attack['mask'][mid]:.1%} flipped to "
            f"the target vs {self.attack['noise'][mid]:.1%} for same-norm noise",
        ])

    def table(self) -> list[dict]:
        t = self.truncation
        return [{"k": k, "accuracy": a, "share of full": a / max(t["full"], 1e-12)} for k, a in zip(t["ks"], t["accuracy"])
                if k in (0, 1, 2, 5, 10, 20, 30)]

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        folder = Path(folder)
        h, w = self.image_shape
        n_top = self.top_vectors.shape[1]
        figs = [
            (plots.spectra(folder / f"{prefix}spectra.png", list(self.eigenvalues), self.classes,
                           "eigenvalues per class (top 30 by |λ|; red > 0, blue < 0)"),
             "each class logit is a sum of squared projections; a few eigenvalues dominate"),
            (plots.image_grid(folder / f"{prefix}eigenvectors.png", self.top_vectors.reshape(-1, n_top, h, w),
                              "top eigenvectors per class", self.classes,
                              [f"#{i + 1}" for i in range(n_top)]),
             "top eigenvectors by |λ| in pixel space (each flipped so its pixels sum to > 0; whether a pattern raises "
             "or lowers the logit is the sign of its eigenvalue in the spectra figure)"),
        ]
        t = self.truncation
        figs.append((plots.curves(folder / f"{prefix}truncation.png", {"top-k": list(zip(t["ks"], t["accuracy"]))},
                                  "accuracy keeping the top-k eigenvectors per class", "test accuracy", log=False,
                                  xlabel="k", reference=t["full"]),
                     "dashed: full model"))
        a = self.attack
        figs.append((plots.curves(folder / f"{prefix}attack.png",
                                  {"eigenvector mask": list(zip(a["norms"], a["mask"])),
                                   "random noise": list(zip(a["norms"], a["noise"]))},
                                  "predicted as the target class", "success rate", log=False, xlabel="perturbation norm"),
                     "share of test images of other classes pushed to the target class"))
        grid = torch.stack([F.normalize(self.masks, dim=-1) * self.examples.abs().max(), self.examples[:, 0],
                            self.examples[:, 1]], dim=1).reshape(len(self.classes), 3, h, w)
        labels = [f"→{c}: {self.classes[b]}→{self.classes[a_]}" for c, (b, a_) in zip(self.classes, self.example_predictions)]
        figs.append((plots.image_grid(folder / f"{prefix}adversarial.png", grid, "adversarial masks from the weights",
                                      labels, ["mask", "image", "image + mask"]),
                     "rows: target class; label: prediction before → after adding the mask"))
        return figs


def _signed(vectors: Tensor) -> Tensor:
    """Each eigenvector's sign is arbitrary; show it with its pixel sum positive (strokes in red)."""
    return vectors * torch.where(vectors.sum(-1, keepdim=True) < 0, -1.0, 1.0).to(vectors.dtype)


def analyse(model: BilinearClassifier, data: ImageSet, ks: Sequence[int] = range(31), n_top: int = 4,
            attack_norms: Sequence[float] | None = None, seed: int = 0) -> ClassifierAnalysis:
    """Spectra, truncation, bias split and adversarial masks of ``model`` on ``data``'s test split.

    ``attack_norms`` default to 0.25, 0.5 and 1 times the mean test-image norm.
    """
    forms = class_forms(model)
    x, y = data.x_test, data.y_test
    spectra = forms.spectra()
    curve = truncation_curve(forms, x, y, ks)
    z = forms.inputs(x)
    terms = torch.stack([f.terms(z).abs().mean(0) for f in forms.forms])
    mean_norm = float(x.norm(dim=-1).mean())
    norms = list(attack_norms) if attack_norms is not None else [f * mean_norm for f in ATTACK_FRACTIONS]
    result = attack(forms, x, y, norms, seed=seed)
    masks = adversarial_masks(forms)
    mid = norms[len(norms) // 2]
    examples, predictions = [], []
    for c, mask in enumerate(masks):
        image = x[y != c][0].double()
        pair = torch.stack([image, image + mid * mask])
        examples.append(pair)
        predictions.append(forms.logits(pair).argmax(-1).tolist())
    return ClassifierAnalysis(
        dataset=data.name, classes=list(data.classes), image_shape=list(data.image_shape), accuracy=curve.full_accuracy,
        eigenvalues=torch.stack([e.values for e in spectra]),
        top_vectors=torch.stack([_signed(F.normalize(e.top(n_top).mapped(forms.input_map), dim=-1)) for e in spectra]),
        effective_ranks=[effective_rank(e.values) for e in spectra], terms=terms,
        truncation={"ks": curve.ks, "accuracy": curve.accuracy, "full": curve.full_accuracy},
        attack={"norms": result.norms, "mask": result.mask, "noise": result.noise},
        masks=masks, examples=torch.stack(examples), example_predictions=predictions)
