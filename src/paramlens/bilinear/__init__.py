"""Bilinear MLPs read from their weights: interaction matrices, eigendecomposition, output features, truncation,
adversarial inputs from eigenvectors, class logits as quadratic forms, and gated MLPs made bilinear.

>>> from paramlens.bilinear import analyse, interaction_matrix, eigen
"""

from paramlens.bilinear.adversarial import AttackRates, adversarial_masks, attack
from paramlens.bilinear.bilinearise import Blend, anneal_to_bilinear, bilinearise, gated_mlps
from paramlens.bilinear.class_forms import ClassForms, class_forms
from paramlens.bilinear.lm import TokenInteractions, token_interactions
from paramlens.bilinear.result import ClassifierAnalysis, analyse
from paramlens.bilinear.spectra import (
    Eigen,
    OutputFeatures,
    QuadraticForm,
    bilinear_tensor,
    effective_rank,
    eigen,
    interaction_matrix,
    output_features,
    quadratic_form,
)
from paramlens.bilinear.truncation import TruncationCurve, eigenvector_similarity, truncated_logits, truncation_curve

__all__ = ["analyse", "ClassifierAnalysis", "interaction_matrix", "bilinear_tensor", "eigen", "Eigen",
           "effective_rank", "quadratic_form", "QuadraticForm", "output_features", "OutputFeatures", "class_forms",
           "ClassForms", "truncation_curve", "truncated_logits", "TruncationCurve", "eigenvector_similarity",
           "adversarial_masks", "attack", "AttackRates", "bilinearise", "anneal_to_bilinear", "gated_mlps", "Blend",
           "token_interactions", "TokenInteractions"]
