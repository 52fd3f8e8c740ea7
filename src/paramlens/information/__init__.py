"""Information stored in weights: learned log-normal noise per weight, with the curvature bound.

>>> from paramlens.information import weight_information, InformationConfig
"""

from paramlens.information.weights_info import (
    InformationConfig,
    WeightInformation,
    hessian_diagonal,
    weight_information,
)

__all__ = ["weight_information", "InformationConfig", "WeightInformation", "hessian_diagonal"]
