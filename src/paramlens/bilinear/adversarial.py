"""Adversarial masks read from the weights: steer a bilinear classifier toward a class without gradients.

Take each class's top positive eigenvector (input space) as a row of ``E`` ``(n_classes, d_input)``. Column
``c`` of the pseudo-inverse ``E^+`` is a pattern that excites class ``c``'s top eigenvector and is
orthogonal to every other class's. Added to an image at a given norm, it should flip predictions to ``c``
far more often than random noise of the same norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from paramlens.bilinear.class_forms import ClassForms
from paramlens.errors import ParamLensError


def adversarial_masks(forms: ClassForms) -> Tensor:
    """``(n_classes, d_input)`` unit-norm masks, one per target class."""
    rows = []
    for eig in forms.spectra():
        positive = (eig.values > 0).nonzero()
        if not len(positive):
            raise ParamLensError("a class has no positive eigenvalue: nothing to excite")
        rows.append(eig.mapped(forms.input_map)[positive[0, 0]])
    masks = torch.linalg.pinv(torch.stack(rows)).T  # (n_classes, d_input)
    return F.normalize(masks, dim=-1)


@dataclass
class AttackRates:
    """Success rates in ``[0, 1]`` per mask norm: images not of the target class that are predicted as the
    target after adding the mask (``mask``) or same-norm Gaussian noise (``noise``), mean over targets."""

    norms: list[float]
    mask: list[float]
    noise: list[float]


def attack(forms: ClassForms, x: Tensor, y: Tensor, norms: Sequence[float], seed: int = 0) -> AttackRates:
    """Add each class's mask, scaled to each norm in ``norms`` (pixel units), to images ``x`` ``(n, d_input)``."""
    masks = adversarial_masks(forms)
    gen = torch.Generator().manual_seed(seed)
    mask_rates, noise_rates = [], []
    for norm in norms:
        hits_mask, hits_noise, total = 0, 0, 0
        for c, mask in enumerate(masks):
            others = x[y != c].double()
            noise = F.normalize(torch.randn(others.shape, generator=gen, dtype=torch.float64), dim=-1)
            hits_mask += int((forms.logits(others + norm * mask).argmax(-1) == c).sum())
            hits_noise += int((forms.logits(others + norm * noise).argmax(-1) == c).sum())
            total += len(others)
        mask_rates.append(hits_mask / total)
        noise_rates.append(hits_noise / total)
    return AttackRates(list(norms), mask_rates, noise_rates)
