"""Core primitives every method stands on: resolving any model spec, weight targets and substitution, activations
at named sites, safe loading, data, run folders and ground truth.

>>> from paramlens.core import resolve, select, run_with
"""

from paramlens.core.ground_truth import GroundTruth
from paramlens.core.loading import Loaded, load
from paramlens.core.resolve import resolve, resolve_lm
from paramlens.core.runs import Result, fit_loop
from paramlens.core.weights import Target, matrices, run_with, select

__all__ = ["resolve", "resolve_lm", "load", "Loaded", "select", "run_with", "matrices", "Target", "Result",
           "fit_loop", "GroundTruth"]
