"""ParamLens: parameter-space interpretability for PyTorch.

Read what a network computes from its weights: select weight matrices, run the model with some of them
replaced, decompose them, and compare the result with models whose mechanisms are known.

>>> import paramlens
>>> loaded = paramlens.resolve("tms")                    # any model spec: file, folder, packaged or zoo name
>>> targets = paramlens.select(loaded.module, "linear*")  # weight matrices by name pattern
>>> result = paramlens.decompose(loaded.module, data, "linear*", C=20, steps=5000)
"""

from paramlens import models  # noqa: F401  (registers the zoo's built-in names with the resolver)
from paramlens.core.loading import load
from paramlens.core.resolve import resolve
from paramlens.core.streams import capture, patched, run_until
from paramlens.core.weights import run_with, select
from paramlens.decompose import decompose
from paramlens.errors import ParamLensError

__all__ = ["ParamLensError", "__version__", "capture", "decompose", "load", "patched", "resolve", "run_until", "run_with",
           "select"]
__version__ = "0.1.0"
