"""Attribution graph of an SPD decomposition: how much each subcomponent feeds each subcomponent of a later target,
and the output.

The model runs as the decomposition with every subcomponent scaled by its importance on the input (the
importance-masked model SPD trains to match the output). Subcomponent ``i`` of target ``A`` feeds subcomponent ``j`` of
a later target ``B`` by gradient x activation on its mask: ``sum_p' | sum_p d a_j(p) / d m_i(p') | m_i(p')``, ``a_j``:
``j``'s component activation ``V_j . input``, ``m_i``: ``i``'s mask (its importance), ``p``, ``p'``: the positions of
an input (tokens; one for a toy input), summed over the data. To the output: the same for the output (each output of
a toy model; a language model's log-probability of the actual next token). The graph is pruned to the largest edges
that together keep a share ``keep`` of all attribution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
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


@dataclasses.dataclass
class Graph(Result):
    """Summed attribution between subcomponents.

    Attributes:
        targets: the targets in model order; C: subcomponents per target; outputs: names of the output nodes.
        edges: ``{"A->B": (C, C)}`` for every target ``A`` before ``B`` (rows: ``A``'s subcomponents), and
            ``{"A->output": (C, n_outputs)}``; non-negative, summed over ``positions`` positions.
    """

    kind = "graph"
    targets: list[str]
    C: int
    outputs: list[str]
    positions: int
    edges: dict[str, Tensor]

    def pruned(self, keep: float = 0.9) -> list[dict[str, Any]]:
        """The largest edges that together hold a share ``keep`` of all attribution, largest first:
        ``{"source", "target", "weight"}`` with nodes named ``target:index`` (and the output nodes)."""
        rows = []
        for key, m in self.edges.items():
            a, b = key.split("->")
            names = self.outputs if b == OUTPUT else [f"{b}:{j}" for j in range(m.shape[1])]
            nz = m.nonzero()
            rows += [(float(m[i, j]), f"{a}:{int(i)}", names[int(j)]) for i, j in nz]
        rows.sort(key=lambda r: -r[0])
        total, kept, out = sum(r[0] for r in rows), 0.0, []
        for weight, source, target in rows:
            if total and kept >= keep * total:
                break
            out.append({"source": source, "target": target, "weight": weight})
            kept += weight
        return out

    def summary(self) -> str:
        edges = self.pruned()
        lines = [f"attribution graph over {self.positions} positions: {len(edges)} edges keep 90 % of it"]
        lines += [f"  {e['source']} -> {e['target']}: {e['weight']:.4g}" for e in edges[:5]]
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
    """What the output edges end at, summed over positions: a toy model's outputs ``(n_out,)``, a language model's
    total log-probability of each actual next token ``(1,)``."""
    if x.is_floating_point():
        return out.reshape(-1, out.shape[-1]).sum(0)
    logp = F.log_softmax(out[:, :-1].float(), dim=-1)
    return logp.gather(-1, x[:, 1:, None]).sum().reshape(1)


def _attribute(quantities: Tensor, masks: list[Tensor]) -> list[Tensor]:
    """For each ``quantities[j]`` (scalars), ``sum_p' |d q_j / d m(p')| m(p')`` for every mask ``(..., C)``: a list of
    ``(n_quantities, C)``, one per mask."""
    rows = [[] for _ in masks]
    for j in range(len(quantities)):
        grads = torch.autograd.grad(quantities[j], masks, retain_graph=True, allow_unused=True)
        for k, (g, m) in enumerate(zip(grads, masks)):
            g = torch.zeros_like(m) if g is None else g
            rows[k].append((g * m).abs().reshape(-1, m.shape[-1]).sum(0))
    return [torch.stack(r) for r in rows]


def attribution_graph(method: Method, dec: nn.Module, model: nn.Module, targets: list[Target],
                      batches: Iterable[Tensor], progress: bool = True) -> Graph:
    """The summed :class:`Graph` of SPD decomposition ``dec`` of ``model`` over ``batches`` (token windows ``(B, T)``
    or inputs ``(B, d)``)."""
    if method.name != "spd":
        raise ParamLensError(f"the attribution graph reads SPD subcomponents; this run is {method.name.upper()}")
    edges: dict[str, Tensor] = {}
    positions, outputs = 0, []
    for x in track(list(batches), "attribution graph", disable=not progress, transient=True):
        _, inputs = capture(model, targets, x)
        with torch.no_grad():
            g = method.importance(dec, model, x, inputs)
        masks = {t.name: g[t.name].detach().clone().requires_grad_() for t in targets}
        with torch.enable_grad():
            out, acts = _traced_run(dec, model, targets, x, masks)
            readouts = _readouts(out, x)
            outputs = [f"{OUTPUT}:{k}" for k in range(len(readouts))] if x.is_floating_point() else [OUTPUT]
            for b, later in enumerate(targets):
                earlier = targets[:b]
                if earlier:
                    found = _attribute(acts[later.name].reshape(-1, acts[later.name].shape[-1]).sum(0),
                                       [masks[t.name] for t in earlier])
                    for t, m in zip(earlier, found):
                        key = f"{t.name}->{later.name}"
                        edges[key] = edges.get(key, 0) + m.T.detach()
            for t, m in zip(targets, _attribute(readouts, [masks[t.name] for t in targets])):
                key = f"{t.name}->{OUTPUT}"
                edges[key] = edges.get(key, 0) + m.T.detach()
        positions += int(x.numel() if not x.is_floating_point() else len(x))
    C = next(iter(masks.values())).shape[-1]
    return Graph(targets=[t.name for t in targets], C=C, outputs=outputs, positions=positions, edges=edges)
