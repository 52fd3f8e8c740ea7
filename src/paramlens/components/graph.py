"""Attribution graph of an SPD decomposition: how much each subcomponent feeds each subcomponent of a later target,
how much each input feeds each subcomponent, and how much each subcomponent feeds the output.

The model runs as the decomposition with every subcomponent scaled by its importance on the input (the
importance-masked model SPD trains to match the output). Subcomponent ``i`` of target ``A`` feeds subcomponent ``j`` of
a later target ``B`` by gradient x activation on its mask: ``sum_p' | sum_p m_j(p) d a_j(p) / d m_i(p') | m_i(p')``,
``a_j``: ``j``'s component activation ``V_j . input``, ``m_i``: ``i``'s mask (its importance; ``m_j a_j`` is what
``j`` passes on, so a unit that is off receives nothing), ``p``, ``p'``: the positions of an input (tokens; one for a
toy input), summed over the data. To the output: the same for the output (each output of a toy model; a sequence
model's log-probability of its own top prediction at each position: the next token of a language model, the output of
a compiled program, whatever the output vocabulary). From the input: gradient x input, for a toy model's input feature
``k`` ``sum_n |m_j d a_j / d x_nk x_nk|``; for a language model's token ``t``, over the positions ``p'`` holding
``t``, ``sum |sum_p m_j(p) d a_j(p) / d e(p') . e(p')|`` with ``e`` the input embedding's output (none for a model
without an embedding module). Each kind of edge (from the input, between subcomponents, to the output) is pruned to
its largest edges that together keep a share ``keep`` of that kind's attribution.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.core.progress import track
from paramlens.core.runs import Result
from paramlens.core.weights import Target
from paramlens.decompose.fit import Method
from paramlens.decompose.forward import capture, run_maps
from paramlens.errors import ParamLensError

OUTPUT = "output"
"""The node name of the output (toy models: ``output:k`` for output ``k``)."""
INPUT = "input"
"""The node name prefix of the inputs: ``input:k`` for a toy model's input feature ``k`` or a language model's token
id ``k``."""


def is_input(node: str) -> bool:
    """Whether a graph node is an input node (``input:k``)."""
    return node.startswith(INPUT + ":")


@dataclasses.dataclass
class Graph(Result):
    """Summed attribution between subcomponents.

    Attributes:
        targets: the targets in model order; C: subcomponents per target; outputs: names of the output nodes;
        inputs: names of the input nodes.
        edges: ``{"A->B": (C, C)}`` for every target ``A`` before ``B`` (rows: ``A``'s subcomponents),
            ``{"A->output": (C, n_outputs)}`` and ``{"input->B": (n_inputs, C)}``; non-negative, summed over
            ``positions`` positions.
    """

    kind = "graph"
    targets: list[str]
    C: int
    outputs: list[str]
    inputs: list[str]
    positions: int
    edges: dict[str, Tensor]

    def pruned(self, keep: float = 0.9) -> list[dict[str, Any]]:
        """Of each kind of edge (from the input, between subcomponents, to the output), the largest that together
        hold a share ``keep`` of that kind's attribution, largest first: ``{"source", "target", "weight"}`` with
        nodes named ``target:index`` (and the input and output nodes)."""
        kinds: dict[str, list[tuple[float, str, str]]] = {}
        for key, m in self.edges.items():
            a, b = key.split("->")
            sources = self.inputs if a == INPUT else [f"{a}:{i}" for i in range(m.shape[0])]
            names = self.outputs if b == OUTPUT else [f"{b}:{j}" for j in range(m.shape[1])]
            kind = INPUT if a == INPUT else OUTPUT if b == OUTPUT else "units"
            kinds.setdefault(kind, []).extend((float(m[i, j]), sources[int(i)], names[int(j)]) for i, j in m.nonzero())
        out = []
        for rows in kinds.values():
            rows.sort(key=lambda r: -r[0])
            total, kept = sum(r[0] for r in rows), 0.0
            for weight, source, target in rows:
                if total and kept >= keep * total:
                    break
                out.append({"source": source, "target": target, "weight": weight})
                kept += weight
        return out

    def summary(self) -> str:
        edges = self.pruned()
        lines = [f"attribution graph over {self.positions} positions: {len(edges)} edges keep 90 % of each kind "
                 "(from the input, between subcomponents, to the output)"]
        between = [e for e in edges if not is_input(e["source"])] or edges
        lines += [f"  {e['source']} -> {e['target']}: {e['weight']:.4g}" for e in between[:5]]
        return "\n".join(lines)


def _traced_run(dec: nn.Module, model: nn.Module, targets: list[Target], x: Tensor,
                masks: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """``(output, {target: component activations (..., C)})`` of the model run as the decomposition with
    ``masks``."""
    seen: dict[str, Tensor] = {}
    maps = dec.maps(masks)

    def recording(t: Target) -> Any:
        def fn(inp: Tensor) -> Tensor:
            seen[t.name] = dec.component(t).inner(inp)
            return maps[t](inp)
        return fn

    out = run_maps(model, {t: recording(t) for t in targets}, x)
    return out, seen


def _readouts(out: Tensor, x: Tensor) -> Tensor:
    """What the output edges end at, summed over positions: a toy model's outputs ``(n_out,)``, a sequence model's
    total log-probability of its top prediction at each position ``(1,)``."""
    if x.is_floating_point():
        return out.reshape(-1, out.shape[-1]).sum(0)
    logp = F.log_softmax(out.float(), dim=-1)
    return logp.gather(-1, logp.detach().argmax(-1, keepdim=True)).sum().reshape(1)


def _per_column(gx: Tensor) -> Tensor:
    """``sum over positions of |gradient x value|`` per last-axis entry: ``(..., n) -> (n,)``."""
    return gx.abs().reshape(-1, gx.shape[-1]).sum(0)


def _attribute(quantities: Tensor, leaves: list[Tensor],
               reduce: list[Callable[[Tensor], Tensor]] | None = None) -> list[Tensor]:
    """For each ``quantities[j]`` (scalars) and each leaf, ``reduce(d q_j / d leaf * leaf)`` (default
    :func:`_per_column`: ``sum_p' |d q_j / d m(p')| m(p')`` for a mask ``(..., C)``): a list of ``(n_quantities, n)``,
    one per leaf."""
    reduce = reduce or [_per_column] * len(leaves)
    rows = [[] for _ in leaves]
    for j in range(len(quantities)):
        grads = torch.autograd.grad(quantities[j], leaves, retain_graph=True, allow_unused=True)
        for k, (g, m) in enumerate(zip(grads, leaves)):
            rows[k].append(reduce[k](torch.zeros_like(m) if g is None else g * m))
    return [torch.stack(r) for r in rows]


def _by_token(ids: Tensor, x: Tensor) -> Callable[[Tensor], Tensor]:
    """For token windows ``x``: ``(B, T, d) gradient x embedding -> (len(ids),)``, ``|sum over d|`` summed over the
    positions of each token of ``ids`` (sorted, holding every token of ``x``)."""
    rows = torch.searchsorted(ids, x.reshape(-1))
    return lambda ge: torch.zeros(len(ids), dtype=ge.dtype).index_add_(0, rows, ge.sum(-1).abs().reshape(-1))


def input_embedding(model: nn.Module) -> nn.Module | None:
    """A language model's token embedding: ``get_input_embeddings()``, else its first ``nn.Embedding``."""
    if hasattr(model, "get_input_embeddings"):
        return model.get_input_embeddings()
    return next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)


@contextlib.contextmanager
def _input_leaf(model: nn.Module, x: Tensor) -> Iterator[tuple[Tensor, list[Tensor]]]:
    """``(what to run the model on, [the input leaf])``: a toy model's inputs as a leaf that takes gradients; for
    tokens, the input embedding's output made a leaf while the context is open (an empty list until the model
    runs; it stays empty when the model has no embedding module)."""
    if x.is_floating_point():
        leaf = x.detach().clone().requires_grad_()
        yield leaf, [leaf]
        return
    found: list[Tensor] = []
    embed = input_embedding(model)

    def hook(_module: nn.Module, _args: Any, out: Tensor) -> Tensor:
        found.append(out.detach().requires_grad_())
        return found[-1]

    handle = embed.register_forward_hook(hook) if embed is not None else None
    try:
        yield x, found
    finally:
        if handle is not None:
            handle.remove()


def attribution_graph(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target],
                      batches: Iterable[Tensor], progress: bool = True) -> Graph:
    """The summed :class:`Graph` of SPD decomposition ``dec`` of ``model`` over ``batches`` (token windows ``(B, T)``
    or inputs ``(B, d)``)."""
    if method.name != "spd":
        raise ParamLensError(f"the attribution graph reads SPD subcomponents; this run is {method.name.upper()}")
    edges: dict[str, Tensor] = {}
    positions, outputs = 0, []
    batches = list(batches)
    if not batches:
        raise ParamLensError("the attribution graph needs at least one batch of data")
    tokens = not batches[0].is_floating_point()
    ids = torch.cat([b.reshape(-1) for b in batches]).unique() if tokens else None  # the token nodes, sorted
    inputs = [f"{INPUT}:{k}" for k in (ids.tolist() if tokens else range(batches[0].shape[-1]))]

    def add(key: str, m: Tensor) -> None:
        edges[key] = edges.get(key, 0) + m.detach()

    for x in track(batches, "attribution graph", disable=not progress, transient=True):
        _, captured = capture(model, targets, x)
        with torch.no_grad():
            g = method.importance(dec, model, x, captured)
        masks = {t.name: g[t.name].detach().clone().requires_grad_() for t in targets}
        with torch.enable_grad(), _input_leaf(model, x) as (run_on, leaf):
            out, acts = _traced_run(dec, model, targets, run_on, masks)
            readouts = _readouts(out, x)
            outputs = [f"{OUTPUT}:{k}" for k in range(len(readouts))] if not tokens else [OUTPUT]
            reduce_input = _by_token(ids, x) if tokens else _per_column
            for b, later in enumerate(targets):
                earlier = targets[:b]
                if not earlier and not leaf:  # the first target of a model with no input leaf: nothing feeds it
                    continue
                passed = acts[later.name] * masks[later.name].detach()  # what each of its units passes on
                found = _attribute(passed.reshape(-1, passed.shape[-1]).sum(0),
                                   [masks[t.name] for t in earlier] + leaf,
                                   [_per_column] * len(earlier) + [reduce_input] * len(leaf))
                for t, m in zip(earlier, found):
                    add(f"{t.name}->{later.name}", m.T)
                if leaf:
                    add(f"{INPUT}->{later.name}", found[-1].T)
            for t, m in zip(targets, _attribute(readouts, [masks[t.name] for t in targets])):
                add(f"{t.name}->{OUTPUT}", m.T)
        positions += int(x.numel() if tokens else len(x))
    C = next(iter(masks.values())).shape[-1]
    return Graph(targets=[t.name for t in targets], C=C, outputs=outputs, inputs=inputs, positions=positions,
                 edges=edges)
