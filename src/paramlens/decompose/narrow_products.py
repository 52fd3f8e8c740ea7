"""A ``torch.compile`` graph pass for matrix products with a narrow result, as toy models make them.

On CPU, float32 ``A @ B`` whose result has 2 to 8 columns and many more rows, such as ``(4096, 20) @ (20, 2)`` in an SPD
of TMS 5-2 or the weight gradient ``(20, 4096) @ (4096, 2)`` of its backward pass, runs 2-5x slower in the BLAS
PyTorch calls than the same product transposed, ``(B^T @ A^T)^T``, whose result is wide. The pass rewrites every
such ``mm`` and ``addmm`` of a compiled graph (forward and backward) into the transposed product; the values are the
same products summed in another order. Each rewrite adds one to ``torch._dynamo.utils.counters["inductor"]
["narrow_products"]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch._dynamo.utils import counters
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

aten = torch.ops.aten

#: result widths (columns) the pass transposes, and the fewest rows the result must have
NARROW = range(2, 9)
MIN_ROWS = 16


def narrow(node: torch.fx.Node) -> bool:
    """Whether ``node`` is a float32 CPU ``mm`` / plain ``addmm`` whose ``(rows, columns)`` result is narrow."""
    if node.op != "call_function" or node.target not in (aten.mm.default, aten.addmm.default) or node.kwargs:
        return False
    out = node.meta.get("val")
    return (out is not None and out.device.type == "cpu" and out.dtype == torch.float32 and out.dim() == 2
            and out.shape[1] in NARROW and out.shape[0] >= MIN_ROWS)


class NarrowProducts(CustomGraphPass):
    """Rewrites narrow products ``A @ B`` (+ bias) as ``(B^T @ A^T)^T`` (+ bias); see the module docstring."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        for node in [n for n in graph.nodes if narrow(n)]:
            *bias, a, b = node.args
            with graph.inserting_before(node):
                swapped = graph.call_function(aten.mm.default, (transposed(graph, b), transposed(graph, a)))
                out = transposed(graph, swapped)
                if bias:
                    out = graph.call_function(aten.add.Tensor, (bias[0], out))
            node.replace_all_uses_with(out)
            graph.erase_node(node)
            counters["inductor"]["narrow_products"] += 1

    def uuid(self) -> Any:
        return get_hash_for_files((__file__,))


def transposed(graph: torch.fx.Graph, node: Any) -> torch.fx.Node:
    return graph.call_function(aten.permute.default, (node, [1, 0]))
