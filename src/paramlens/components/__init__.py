"""Reading a decomposition: where each unit (subcomponent or component) fires, what it does, what feeds it.

>>> h = harvest_model(SPDMethod, dec, model, targets, windows)
>>> print(h.summary())
"""

from paramlens.components.harvest import HarvestConfig, harvest_model
from paramlens.components.result import Harvest
from paramlens.components.units import Units, ablated

__all__ = ["Harvest", "HarvestConfig", "Units", "ablated", "harvest_model"]
