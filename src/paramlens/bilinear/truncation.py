"""Keep only the top-k eigenvectors of every class's interaction matrix and see what accuracy is left.

Logit ``c`` becomes ``sum_{i<k} lambda_i (v_i . z)^2 + linear_c . z + constant_c`` with eigenvalues ranked
by ``|lambda|``; ``k = d`` is the full model exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from paramlens.bilinear.class_forms import ClassForms
from paramlens.bilinear.spectra import Eigen


@dataclass
class TruncationCurve:
    """Accuracy in ``[0, 1]`` of the top-``k`` model for each ``k`` in ``ks``, and of the full model."""

    ks: list[int]
    accuracy: list[float]
    full_accuracy: float

    def at(self, k: int) -> float:
        return self.accuracy[self.ks.index(k)]


def truncated_logits(forms: ClassForms, spectra: Sequence[Eigen], x: Tensor, ks: Sequence[int]) -> Tensor:
    """``(len(ks), n, n_classes)`` logits of the top-``k`` models for images ``x`` ``(n, d_input)``."""
    z = forms.inputs(x)
    k_max = max(ks)
    out = torch.zeros(len(ks), len(x), len(forms.forms), dtype=torch.float64)
    for c, (form, eig) in enumerate(zip(forms.forms, spectra)):
        top = eig.top(k_max)
        terms = (z @ top.vectors.T) ** 2 * top.values  # (n, k_max)
        cumulative = torch.cat([terms.new_zeros(len(x), 1), terms.cumsum(-1)], dim=-1)
        base = z @ form.linear + form.constant
        for j, k in enumerate(ks):
            out[j, :, c] = cumulative[:, min(k, top.values.numel())] + base
    return out


def truncation_curve(forms: ClassForms, x: Tensor, y: Tensor, ks: Sequence[int] = range(31)) -> TruncationCurve:
    """Accuracy of the top-``k`` models on images ``x`` ``(n, d_input)`` with labels ``y`` ``(n,)``."""
    ks = list(ks)
    spectra = forms.spectra()
    logits = truncated_logits(forms, spectra, x, ks)
    acc = (logits.argmax(-1) == y).double().mean(-1)
    full = float((forms.logits(x).argmax(-1) == y).double().mean())
    return TruncationCurve(ks, acc.tolist(), full)


def eigenvector_similarity(a: Sequence[Eigen], b: Sequence[Eigen], input_map_a: Tensor | None = None,
                           input_map_b: Tensor | None = None, top: int = 20) -> Tensor:
    """``(n_classes, top)``: for each of model a's top eigenvectors per class (input space, unit norm),
    the best ``|cos|`` with any of model b's top eigenvectors of the same class."""
    rows = []
    for ea, eb in zip(a, b):
        va = F.normalize(ea.top(top).mapped(input_map_a), dim=-1)
        vb = F.normalize(eb.top(top).mapped(input_map_b), dim=-1)
        rows.append((va @ vb.T).abs().max(dim=1).values)
    return torch.stack(rows)
