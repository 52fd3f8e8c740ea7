"""Boolean circuits compiled into integer ReLU networks: ground truth for reverse engineering."""

from paramlens.core.circuits import Circuit, Gate
from paramlens.models.compiled.compile import CompiledNetwork, compile_circuit

__all__ = ["Circuit", "CompiledNetwork", "Gate", "compile_circuit"]
