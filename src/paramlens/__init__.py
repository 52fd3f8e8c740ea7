"""ParamLens: parameter-space interpretability for PyTorch.

Read what a network computes from its weights: select weight matrices, run the model with some of them
replaced, decompose them, and compare the result with models whose mechanisms are known.
"""

from paramlens.errors import ParamLensError

__all__ = ["ParamLensError", "__version__"]
__version__ = "0.1.0"
