"""Transformers whose mechanisms are known: small transformers compiled from RASP-style programs (every weight
block's mechanism known), each with ``ground_truth()`` (which weights implement which mechanism, which inputs
exercise it).

>>> model = reverse_model()  # output i = token length - 1 - i, for 1..5 tokens of a, b, c after a BOS
>>> model.predict(model.encode([["a", "b", "c"]]))  # [["c", "b", "a"]]
>>> truth = model.ground_truth()  # per weight: (n_mechanisms, d_out, d_in) parts; truth.needed(name, ids)
"""

from __future__ import annotations

from paramlens.models.transformers.compile import compile_program
from paramlens.models.transformers.compiled import BOS, CompiledTransformer
from paramlens.models.transformers.mechanisms import Block, Mechanism
from paramlens.models.transformers.model import Transformer, TransformerShape
from paramlens.models.transformers.programs import (
    PROGRAMS,
    frac_prevs_model,
    histogram_model,
    make_frac_prevs,
    make_histogram,
    make_length,
    make_reverse,
    make_sort,
    reverse_model,
    sort_model,
)
from paramlens.models.transformers.rasp import (
    EQ,
    GEQ,
    GT,
    LEQ,
    LT,
    NEQ,
    TRUE,
    Aggregate,
    Map,
    Predicate,
    Select,
    SelectorWidth,
    SequenceMap,
    SOp,
    indices,
    tokens,
)
from paramlens.models.transformers.truth import ProgramGroundTruth

__all__ = [
    "BOS", "EQ", "GEQ", "GT", "LEQ", "LT", "NEQ", "PROGRAMS", "TRUE", "Aggregate", "Block", "CompiledTransformer",
    "Map", "Mechanism", "Predicate", "ProgramGroundTruth", "SOp", "Select", "SelectorWidth", "SequenceMap",
    "Transformer", "TransformerShape", "compile_program", "frac_prevs_model", "histogram_model", "indices",
    "make_frac_prevs", "make_histogram", "make_length", "make_reverse", "make_sort", "reverse_model", "sort_model",
    "tokens",
]
