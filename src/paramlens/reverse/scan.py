"""``paramlens reverse scan``: describe an undocumented network from its weights alone.

Streams the layer chain one layer at a time (memory: one layer; :mod:`paramlens.reverse.stream`), undoes the
disguises that leave its function unchanged (:mod:`paramlens.reverse.canonical`), and reports per-layer
statistics, the repeating block found with tolerance and how its repeats differ
(:mod:`paramlens.reverse.structure`), known constants in every layer and one per repeat
(:mod:`paramlens.reverse.constant_search`), and what the output tests, with the compared constant, checked
against known functions where the constants name one (:mod:`paramlens.reverse.readout`,
:mod:`paramlens.reverse.reference`). Checkpoints whose matrices do not form one chain (attention, embeddings,
residual streams) get per-tensor findings only (:mod:`paramlens.reverse.sequential`). Layers holding NaN or
infinities are of kind ``non-finite``, named in the summary with how many of each value their tensors hold.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import Tensor

from paramlens.core.progress import track
from paramlens.core.runs import Result
from paramlens.core.threads import one_thread
from paramlens.reverse.chain import TensorStore, find_chain
from paramlens.reverse.findings import chain_findings, tensor_findings
from paramlens.reverse.scan_text import PROBLEM, figures, summary_lines, table_rows

__all__ = ["PROBLEM", "Scan", "scan"]


@dataclasses.dataclass
class Scan(Result):
    """A network described from its weights.

    Attributes:
        path: the scanned file. notes: what did not fit the chain. architecture: why the matrices are not
            one sequential chain (empty when they are; then ``layers`` holds one row per tensor and no
            chain-level field is filled).
        widths: ``[d_in, d_1, ..., d_L]``. layers: per-layer rows (shape, kind, sparsity, fan-in/out,
            top row signatures, bias values). n_params: total. undone: stored rows dropped as always 0,
            merged as copies, and split constants joined, before reading the structure.
        period, block_start, n_repeats: the repeating block (0: none). differing: block positions whose
            fingerprints change between repeats (what varies, its pattern, constants one entry per repeat).
        constants: known constants found in single layers.
        output: the last layer read backwards. compared_layer, compared: the layer whose values the output
            compares and the constants it compares them with (hex bytes, in the order found); checked: the
            known function those values were checked to be (the constants then in its output order).
            constant: an AND test's constant bits as one number (hex), and constant_matches its readings.
        value_counts: how often each weight value occurs (integer networks; ``{"real": n}`` otherwise).
        similarity: ``(n, n)`` 1 where two layers have the same common row kinds, for the figure.
    """

    kind = "reverse_scan"
    path: str
    notes: list[str]
    architecture: list[str]
    widths: list[int]
    layers: list[dict]
    n_params: int
    undone: dict[str, int]
    period: int
    block_start: int
    n_repeats: int
    differing: list[dict]
    constants: list[str]
    output: list[str]
    compared_layer: int | None
    compared: str | None
    checked: str | None
    constant: str | None
    constant_matches: list[str]
    value_counts: dict[str, int]
    similarity: Tensor

    def summary(self) -> str:
        return "\n".join(summary_lines(self))

    def table(self) -> list[dict]:
        return table_rows(self.layers)

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        return figures(self, Path(folder), prefix)


def scan(path: str | Path, progress: bool = True, max_similarity: int = 400) -> Scan:
    """Scan the checkpoint at ``path`` (safetensors, or a torch archive read without running its code).

    Runs on one thread (:func:`paramlens.core.threads.one_thread`): each layer's work is a few small tensor
    operations, for which thread start-up costs more than it saves (about 50x on a busy 2-core machine).
    """
    with one_thread():
        store = TensorStore(path)
        layers, notes = find_chain(store)
        bar = (lambda items, total: track(items, total=total, description="scanning", transient=True)) \
            if progress else None
        found = tensor_findings(store, layers, notes, bar) or chain_findings(store, layers, notes, bar, max_similarity)
        return Scan(path=str(path), notes=notes, **found)
