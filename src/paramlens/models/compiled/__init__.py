"""Boolean circuits compiled into integer ReLU networks, and hash functions written as such networks by hand:
ground truth for reverse engineering."""

from paramlens.core.circuits import Circuit, Gate
from paramlens.models.compiled.compile import CompiledNetwork, compile_circuit
from paramlens.models.compiled.emitter import Emitter, Form, parallel
from paramlens.models.compiled.handwritten import hash_network
from paramlens.models.compiled.hashes import (
    REFERENCES,
    bits_to_bytes,
    hash_circuit,
    md5_reference,
    message_bits,
    sha1_reference,
    sha256_reference,
)
from paramlens.models.compiled.nuisance import Nuisance, disguise
from paramlens.models.compiled.sparse_network import SparseLayer, SparseNetwork

__all__ = ["REFERENCES", "Circuit", "CompiledNetwork", "Emitter", "Form", "Gate", "Nuisance", "SparseLayer",
           "SparseNetwork", "bits_to_bytes", "compile_circuit", "disguise", "hash_circuit", "hash_network",
           "md5_reference", "message_bits", "parallel", "sha1_reference", "sha256_reference"]
