"""Reverse engineering: read what an undocumented network computes from its weights.

>>> result = scan("model.safetensors")  # per-layer statistics, repeating structure, readout
>>> print(result.summary())
>>> reading = read_circuit("model.safetensors")  # an integer ReLU network over 0/1 inputs as named gates
>>> found = invert_file("model.safetensors", "1,0,1")  # an input that gives this output (SAT or MILP)
>>> assembled = reassemble("pieces/", "rows.csv")  # shuffled residual blocks paired and ordered
>>> named = identify("model.safetensors")  # units named from a catalogue (md5, crc32, input bits, ...)

The lower-level steps are public too: :func:`lift` and :func:`simplify` (network to circuit),
:func:`invert_circuit` and :func:`invert_relu`, :func:`order_blocks` (the block order that reproduces given rows).
"""

from __future__ import annotations

from paramlens.reverse.block_order import Blocks, OrderSearch, order_blocks
from paramlens.reverse.catalogue import Catalogue, register
from paramlens.reverse.circuit import Lifted, lift, simplify
from paramlens.reverse.identify import Identification, identify
from paramlens.reverse.invert import Inversion, invert_circuit, invert_file, invert_relu
from paramlens.reverse.read_circuit import CircuitReading, read_circuit
from paramlens.reverse.reassemble import Reassembly, reassemble
from paramlens.reverse.scan import Scan, scan

__all__ = [
    "Blocks",
    "Catalogue",
    "CircuitReading",
    "Identification",
    "Inversion",
    "Lifted",
    "OrderSearch",
    "Reassembly",
    "Scan",
    "identify",
    "invert_circuit",
    "invert_file",
    "invert_relu",
    "lift",
    "order_blocks",
    "read_circuit",
    "reassemble",
    "register",
    "scan",
    "simplify",
]
