"""Class logits of a one-block bilinear classifier as quadratic forms of the image.

For a plain model (``embed? -> bilinear -> logits``) logit ``c`` is exactly ``z^T Q_c z + l_c . z + k_c``
with ``z = E x`` (``E`` the embedding, identity without one). For a residual model
(``E -> z + block(z) -> head``) the direct path adds ``head_c . z`` to the linear term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.bilinear.spectra import Eigen, QuadraticForm, quadratic_form
from paramlens.errors import ParamLensError
from paramlens.models.bilinear_nets.classifier import BilinearClassifier


@dataclass
class ClassForms:
    """One :class:`QuadraticForm` per class over ``z`` ``(d,)``; ``input_map`` ``(d, d_input)`` maps images
    to ``z`` (the embedding; None: ``z`` is the image)."""

    forms: list[QuadraticForm]
    input_map: Tensor | None

    def inputs(self, x: Tensor) -> Tensor:
        """``z`` ``(n, d)`` float64 for images ``x`` ``(n, d_input)``."""
        return x.double() if self.input_map is None else x.double() @ self.input_map.T

    def logits(self, x: Tensor) -> Tensor:
        """``(n, n_classes)``; equal to the model's logits."""
        z = self.inputs(x)
        return torch.stack([f(z) for f in self.forms], dim=-1)

    def spectra(self) -> list[Eigen]:
        return [f.eigen() for f in self.forms]


def class_forms(model: BilinearClassifier) -> ClassForms:
    """The exact quadratic form of every class logit; one bilinear block is required."""
    if len(model.blocks) != 1:
        raise ParamLensError(f"the model has {len(model.blocks)} bilinear blocks; class logits are quadratic forms "
                             "of the input only with one (analyse each block with quadratic_form and a direction)")
    block = model.blocks[0]
    input_map = model.embed.weight.detach().double() if model.embed is not None else None
    if model.head is None:
        forms = [quadratic_form(block, torch.eye(model.cfg.n_classes)[c]) for c in range(model.cfg.n_classes)]
    else:
        head = model.head.weight.detach().double()
        forms = [quadratic_form(block, head[c]) for c in range(len(head))]
        for f, h in zip(forms, head):
            f.linear = f.linear + h
    return ClassForms(forms, input_map)
