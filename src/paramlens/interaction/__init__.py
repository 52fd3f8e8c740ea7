"""The local interaction basis and degeneracy: bases of MLPs and residual streams, interaction graphs and their
modules, the three kinds of degenerate parameters, and the local learning coefficient.

>>> from paramlens.interaction import interaction_basis, segments_of, edges, modules, degeneracy
"""

from paramlens.interaction.basis import LayerBasis, Segment, interaction_basis, segments_of
from paramlens.interaction.degeneracy import Degeneracy, degeneracy, residual_degeneracy
from paramlens.interaction.edges import direction_curve, edge_curve, edges, edges_needed
from paramlens.interaction.llc import LLCConfig, local_learning_coefficient
from paramlens.interaction.lm_summary import LMInteraction, lm_interaction
from paramlens.interaction.modular import ModularInteraction, modular_degeneracy, modular_interaction, modular_llc
from paramlens.interaction.modularity import Modules, modules
from paramlens.interaction.residual import residual_basis, residual_edges, stream_ablation_curve

__all__ = ["interaction_basis", "segments_of", "Segment", "LayerBasis", "edges", "edge_curve", "direction_curve",
           "edges_needed", "modules", "Modules", "degeneracy", "residual_degeneracy", "Degeneracy",
           "local_learning_coefficient", "LLCConfig", "residual_basis", "residual_edges", "stream_ablation_curve",
           "lm_interaction", "LMInteraction", "modular_interaction", "modular_degeneracy", "modular_llc",
           "ModularInteraction"]
