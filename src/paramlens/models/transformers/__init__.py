"""Transformers whose mechanisms are known: a two-layer attention-only model trained in-house on repeated segments
(a previous-token head and an induction head, found by score and checked by ablation), and small transformers
compiled from RASP-style programs (every weight block's mechanism known); each with ``ground_truth()`` (which
weights implement which mechanism; the inputs that exercise it: ``mechanism_inputs`` / ``truth.needed``).

>>> induction, _ = train_induction(InductionConfig())  # ~20 s on 2 cores
>>> circuit_summary(induction)  # head scores, accuracy with and without each head

>>> model = reverse_model()  # output i = token length - 1 - i, for 1..5 tokens of a, b, c after a BOS
>>> model.predict(model.encode([["a", "b", "c"]]))  # [["c", "b", "a"]]
>>> truth = model.ground_truth()  # per weight: (n_mechanisms, d_out, d_in) parts; truth.needed(name, ids)
"""

from __future__ import annotations

from paramlens.models.transformers.compile import compile_program
from paramlens.models.transformers.compiled import BOS, CompiledTransformer
from paramlens.models.transformers.induction import (
    MECHANISMS,
    InductionConfig,
    InductionTransformer,
    induction_loss,
    load_induction,
    train_induction,
)
from paramlens.models.transformers.induction_checks import (
    ablation_accuracies,
    circuit_summary,
    find_heads,
    induction_accuracy,
    induction_scores,
    previous_token_scores,
)
from paramlens.models.transformers.induction_data import NoRepeats, RepeatedSegments, mechanism_inputs
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
from paramlens.models.transformers.tasks import induction_task, program_task
from paramlens.models.transformers.truth import ProgramGroundTruth

__all__ = [
    "BOS",
    "EQ",
    "GEQ",
    "GT",
    "LEQ",
    "LT",
    "MECHANISMS",
    "NEQ",
    "PROGRAMS",
    "TRUE",
    "Aggregate",
    "Block",
    "CompiledTransformer",
    "InductionConfig",
    "InductionTransformer",
    "Map",
    "Mechanism",
    "NoRepeats",
    "Predicate",
    "ProgramGroundTruth",
    "RepeatedSegments",
    "SOp",
    "Select",
    "SelectorWidth",
    "SequenceMap",
    "Transformer",
    "TransformerShape",
    "ablation_accuracies",
    "circuit_summary",
    "compile_program",
    "find_heads",
    "frac_prevs_model",
    "histogram_model",
    "indices",
    "induction_accuracy",
    "induction_loss",
    "induction_scores",
    "induction_task",
    "load_induction",
    "make_frac_prevs",
    "make_histogram",
    "make_length",
    "make_reverse",
    "make_sort",
    "mechanism_inputs",
    "previous_token_scores",
    "program_task",
    "reverse_model",
    "sort_model",
    "tokens",
    "train_induction",
]
