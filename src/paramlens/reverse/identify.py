"""``paramlens reverse identify``: name what a network's layers compute, from a catalogue of functions of the input.

The network (every layer ``Linear`` + ReLU, the last one too; one layer in memory at a time) runs exactly (float64)
on random inputs from its input domain: bytes or bits, declared (``bytes:N``, ``bits:N``) or read from the first
layer (:mod:`~paramlens.reverse.identify_domain`). Every unit of every layer is matched with the columns of the
catalogue (:mod:`~paramlens.reverse.catalogue`: md5, sha1, sha256, crc32, the input, popcount, byte sum, and
your own) evaluated on the same inputs: bits and their negations, integers up to an offset ``relu(±(v - c))``
(:mod:`~paramlens.reverse.identify_match`). Matched units are grouped into statements with their encoding
(:mod:`~paramlens.reverse.identify_statements`), equality tests are read from the weights
(:mod:`~paramlens.reverse.identify_equality`), and each statement says on how many inputs it held and the first one
where it did not.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from paramlens.core.progress import track
from paramlens.core.runs import Result
from paramlens.core.threads import one_thread
from paramlens.errors import ParamLensError, UsageError
from paramlens.reverse.catalogue import CATALOGUE, Catalogue
from paramlens.reverse.chain import LayerRef, TensorStore, find_chain, iter_layers
from paramlens.reverse.identify_columns import evaluate
from paramlens.reverse.identify_domain import Domain, choose_domain, draw, parse_input
from paramlens.reverse.identify_equality import Equalities
from paramlens.reverse.identify_match import BLOCK, Lookup
from paramlens.reverse.identify_order import ranges
from paramlens.reverse.identify_statements import Statement, accepted, layer_statements, merge_runs
from paramlens.reverse.values import layer_problem

MAX_SAMPLES = 4096
SPARSE = 0.1  # layers with fewer nonzero weights than this are multiplied as sparse matrices
SHOWN = 60  # statements in the summary (all are in the table)


@dataclasses.dataclass
class Identification(Result):
    """What ``identify`` found in the network at ``path``: the input ``domain`` (``bytes:N`` / ``bits:N``) and how
    it was decided, the ``samples`` random inputs drawn with ``seed`` (``every_input``: how many distinct inputs
    there are when that is no more than ``samples``, so all of them were run; else 0), the ``catalogue`` names
    compared, and the ``statements`` (:class:`~paramlens.reverse.identify_statements.Statement` as dicts) in layer
    order."""

    kind = "reverse_identify"
    path: str
    domain: str
    domain_why: str
    samples: int
    seed: int
    every_input: int
    n_layers: int
    catalogue: list[str]
    statements: list[dict]
    seconds: float

    def found(self) -> list[Statement]:
        return [Statement(**s) for s in self.statements]

    def summary(self) -> str:
        found = self.found()
        drawn = (f"all {self.every_input} inputs" if self.every_input
                 else f"{self.samples} random inputs (seed {self.seed})")
        lines = [(f"{self.path}: {_count(self.n_layers, 'layer')}; inputs {self.domain} ({self.domain_why}); "
                  f"{drawn}; {self.seconds:.1f} s")]
        if not found:
            lines.append(f"no unit matched the catalogue ({', '.join(self.catalogue)}) on these inputs")
            return "\n".join(lines)
        whole = sum(s.confirmed == s.samples for s in found)
        lines.append(f"{_count(len(found), 'statement')}, {whole} confirmed on every input:")
        lines += [f"  {s.line()}" for s in found[:SHOWN]]
        if len(found) > SHOWN:
            lines.append(f"  ... {len(found) - SHOWN} more in the table")
        return "\n".join(lines)

    def table(self) -> list[dict]:
        return [{"layers": str(s.first) if s.first == s.last else f"{s.first}..{s.last}", "units": ranges(s.units),
                 "claim": s.claim, "order": s.order, "units per layer": "..".join(map(str, sorted(set(s.sizes)))),
                 "duplicated": s.duplicated, "confirmed": f"{s.confirmed}/{s.samples}",
                 "counterexample": s.counterexample_text()} for s in self.found()]

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        return []


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def identify(path: str | Path, domain: str = "auto", samples: int = 256, seed: int = 0,
             catalogue: Catalogue | None = None, progress: bool = True) -> Identification:
    """Run the network at ``path`` on ``samples`` random inputs (``domain``: "auto", "bytes:N" or "bits:N") and
    name its units from ``catalogue`` (default: :data:`~paramlens.reverse.catalogue.CATALOGUE`).

    Runs on one thread: per layer the work is small tensor operations, which threads slow down on a busy machine.

    Raises:
        UsageError: ``domain`` or ``samples`` malformed or out of range.
        ParamLensError: an unreadable file, layers that do not chain, non-finite weights, real-valued inputs
            without a declaration, or a catalogue entry that fails.
    """
    if not BLOCK <= samples <= MAX_SAMPLES:
        raise UsageError(f"samples must be {BLOCK}..{MAX_SAMPLES}; got {samples}")
    declared = parse_input(domain)
    catalogue = catalogue or CATALOGUE
    if not catalogue.names():
        raise ParamLensError("the catalogue is empty: register at least one function of the input")
    with one_thread():
        return _identify(str(path), declared, samples, seed, catalogue, progress)


def _identify(path: str, declared: tuple[str, int] | None, samples: int, seed: int, catalogue: Catalogue,
              progress: bool) -> Identification:
    """Read the chain and the first layer, settle the input domain, then stream the layers."""
    start = time.perf_counter()
    store = TensorStore(path)
    layers, notes = find_chain(store)
    breaks = [n for n in notes if n.startswith("size break")]
    if breaks:
        raise ParamLensError(f"{path}: the layers do not form one chain ({breaks[0]})")
    first = layers[0]
    W, b = store.get(first.weight), store.get(first.bias) if first.bias else None
    _check_values(path, first, W, b)
    domain = choose_domain(declared, W, b)
    statements = _run(store, layers, domain, samples, seed, catalogue, progress)
    return Identification(path=path, domain=domain.spec, domain_why=domain.why, samples=samples, seed=seed,
                          every_input=domain.count if domain.count <= samples else 0, n_layers=len(layers),
                          catalogue=catalogue.names(), statements=[dataclasses.asdict(s) for s in statements],
                          seconds=time.perf_counter() - start)


def _check_values(path: str, ref: LayerRef, W: Tensor, b: Tensor | None) -> None:
    """One line naming the layer's tensors when they hold NaN or infinities."""
    if all(t is None or not t.is_floating_point() or bool(t.isfinite().all()) for t in (W, b)):
        return
    problem = layer_problem(W, b, (ref.weight, ref.bias))
    if problem:
        raise ParamLensError(f"{path}: layer {ref.index}: {problem}; identify needs finite weights and biases")


def _run(store: TensorStore, layers: list[LayerRef], domain: Domain, samples: int, seed: int, catalogue: Catalogue,
         progress: bool) -> list[Statement]:
    """Stream the layers over the random inputs; every layer's statements, runs merged."""
    x, messages = draw(domain, samples, np.random.default_rng(seed))
    inputs = [m.hex() for m in messages[domain.spellings[0]]]
    columns = evaluate(catalogue, messages, max(4, samples // 8))
    lookup = Lookup(columns, seed)
    equalities = Equalities(columns.sizes, inputs)
    before = x.astype(np.float64)
    before_matches = accepted(lookup.match(before, before), samples)
    h = torch.from_numpy(before)
    found: list[Statement] = []
    items = iter_layers(store, layers)
    if progress:
        items = track(items, total=len(layers), description="identifying layers", transient=True)
    for ref, weight, b in items:
        W = weight.double()
        bias = b.double() if b is not None else torch.zeros(W.shape[0], dtype=torch.float64)
        h = _affine(h, W, bias)
        pre = h.numpy().copy()
        if not np.isfinite(pre).all():  # non-finite weights always show here (NaN * 0 is NaN)
            _check_values(store.path, ref, weight, b)
            raise ParamLensError(f"{store.path}: layer {ref.index}: activations overflow float64 on random inputs")
        h = h.clamp_min_(0)
        post = h.numpy()
        matches = accepted(lookup.match(pre, post), samples)
        last = ref.index == len(layers) - 1
        found += equalities.step(ref.index, W, bias, before, before_matches, post, last)
        found += layer_statements(ref.index, matches, inputs, last)
        before, before_matches = post, matches
    return merge_runs(found)


def _affine(h: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """``h @ W.T + b`` in float64 ``(samples, out)`` (``W``, ``b`` float64); sparse layers as sparse matrices."""
    if float((W != 0).double().mean()) < SPARSE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return (W.to_sparse_csr() @ h.T).T + b
    return h @ W.T + b
