"""Geometry of a transformer's layer updates: how much of each update is a function of the current token alone,
and how far each layer's hidden states are rotated toward the input embeddings and the output.

>>> from paramlens.geometry import layer_geometry, GeometryConfig, rotation
"""

from paramlens.geometry.layer_updates import GeometryConfig, LayerGeometry, layer_geometry
from paramlens.geometry.ridge import RidgeSums
from paramlens.geometry.rotation import Rotation, map_rotation, rotation

__all__ = ["layer_geometry", "GeometryConfig", "LayerGeometry", "rotation", "Rotation", "map_rotation", "RidgeSums"]
