"""Bilinear layers and models: image classifiers and a small bilinear transformer language model."""

from paramlens.models.bilinear_nets.classifier import (
    BilinearClassifier,
    ClassifierConfig,
    accuracy,
    load_classifier,
    train_classifier,
)
from paramlens.models.bilinear_nets.layers import Bilinear

__all__ = ["Bilinear", "BilinearClassifier", "ClassifierConfig", "accuracy", "load_classifier", "train_classifier"]
