"""Reverse engineering: read what an undocumented network computes from its weights.

>>> result = scan("model.safetensors")  # per-layer statistics, repeating structure, readout
>>> print(result.summary())
>>> reading = read_circuit("model.safetensors")  # an integer ReLU network over 0/1 inputs as named gates
>>> found = invert_file("model.safetensors", "1,0,1")  # an input that gives this output (search, SAT or MILP)
>>> assembled = reassemble("pieces/", "rows.csv")  # shuffled residual blocks paired and ordered
>>> named = identify("model.safetensors")  # units named from a catalogue (md5, crc32, input bits, ...)

The lower-level steps are public too: :func:`lift` and :func:`simplify` (network to circuit),
:func:`invert_circuit` and :func:`invert_relu`, :func:`find_lock` and :func:`search_preimage` (a hash lock and a
candidate search for its preimage, words from :func:`load_words`), :func:`order_blocks` (the block order that
reproduces given rows).
"""

from __future__ import annotations

from paramlens.reverse.block_order import OrderSearch, order_blocks
from paramlens.reverse.candidates import Words, load_words
from paramlens.reverse.catalogue import Catalogue, register
from paramlens.reverse.circuit import Lifted, lift, simplify
from paramlens.reverse.identify import Identification, identify
from paramlens.reverse.invert import Inversion, invert_circuit, invert_file, invert_relu
from paramlens.reverse.preimage import Lock, find_lock, search_preimage
from paramlens.reverse.read_circuit import CircuitReading, read_circuit
from paramlens.reverse.reassemble import Reassembly, reassemble
from paramlens.reverse.residual_blocks import Blocks
from paramlens.reverse.scan import Scan, scan

__all__ = [
    "Blocks",
    "Catalogue",
    "CircuitReading",
    "Identification",
    "Inversion",
    "Lifted",
    "Lock",
    "OrderSearch",
    "Reassembly",
    "Scan",
    "Words",
    "find_lock",
    "identify",
    "invert_circuit",
    "invert_file",
    "invert_relu",
    "lift",
    "load_words",
    "order_blocks",
    "read_circuit",
    "reassemble",
    "register",
    "scan",
    "search_preimage",
    "simplify",
]
