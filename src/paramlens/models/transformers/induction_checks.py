"""Measured evidence for the induction circuit of a 2-layer attention model: attention scores per head, and accuracy
with single heads ablated.

The functions take any module with ``run(tokens) -> (logits, patterns)`` (patterns: one ``(batch, n_heads, T, T)``
per layer), a ``cfg`` with ``n_heads``, a ``source()`` of repeated-segment sequences, and attention output
projections ``blocks.{l}.attn.o`` (heads are column slices), as
:class:`~paramlens.models.transformers.induction.InductionTransformer` has.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from paramlens.core.weights import run_with
from paramlens.errors import ParamLensError
from paramlens.models.transformers.induction_data import earlier_occurrence, induction_positions


def head_slice(weight: Tensor, head: int, n_heads: int, output: bool = False) -> Tensor:
    """``weight`` ``(d_out, d_in)`` with everything but head ``head`` zeroed: its rows for ``q``/``k``/``v``,
    its columns for the output projection ``o`` (``output=True``)."""
    d_head = (weight.shape[1] if output else weight.shape[0]) // n_heads
    part = torch.zeros_like(weight)
    cut = slice(head * d_head, (head + 1) * d_head)
    if output:
        part[:, cut] = weight[:, cut]
    else:
        part[cut] = weight[cut]
    return part


def head_norms(model: nn.Module) -> Tensor:
    """``(2, n_heads)``: Frobenius norm of each head's weights (its rows of ``q``, ``k``, ``v``, columns of ``o``)."""
    n_heads = model.cfg.n_heads
    norms = []
    for block in model.blocks:
        rows = torch.cat([m.weight for m in (block.attn.q, block.attn.k, block.attn.v)] + [block.attn.o.weight.T], 1)
        norms.append(rearrange(rows, "(h e) d -> h (e d)", h=n_heads).norm(dim=1))
    return torch.stack(norms)


def sample_tokens(model: nn.Module, n: int = 256, seed: int = 0) -> Tensor:
    """``(n, length)`` repeated-segment sequences from ``model.source()``, seeded."""
    return model.source().sample(n, torch.Generator().manual_seed(seed))


@torch.no_grad()
def previous_token_scores(model: nn.Module, tokens: Tensor) -> Tensor:
    """``(n_layers, n_heads)``: mean attention (a probability in [0, 1]) from position ``t`` to ``t - 1``, over
    the sequences ``tokens`` ``(batch, T)`` and positions ``t >= 1``."""
    _, patterns = model.run(tokens)
    return torch.stack([p.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2)) for p in patterns])


@torch.no_grad()
def induction_scores(model: nn.Module, tokens: Tensor) -> Tensor:
    """``(n_layers, n_heads)``: mean attention (in [0, 1]) from a repeated token to the position right after its
    earlier occurrence, over every position of ``tokens`` ``(batch, T)`` whose token occurred before."""
    _, patterns = model.run(tokens)
    j = earlier_occurrence(tokens)
    b, t = torch.nonzero(j >= 0, as_tuple=True)
    _need_repeats(len(b))
    return torch.stack([p[b, :, t, j[b, t] + 1].mean(0) for p in patterns])


def _need_repeats(n_positions: int) -> None:
    if n_positions == 0:
        raise ParamLensError("no token of the given sequences repeats, so there is no induction position to score; "
                             "use repeated-segment sequences (induction_data.RepeatedSegments)")


def find_heads(model: nn.Module, tokens: Tensor | None = None) -> tuple[int, int]:
    """``(previous-token head in layer 0, induction head in layer 1)``: the best-scoring head of each layer on
    ``tokens`` (default: :func:`sample_tokens`)."""
    tokens = sample_tokens(model) if tokens is None else tokens
    prev = int(previous_token_scores(model, tokens)[0].argmax())
    induction = int(induction_scores(model, tokens)[1].argmax())
    return prev, induction


def ablated(model: nn.Module, layer: int, head: int) -> dict[str, Tensor]:
    """Replacement for :func:`~paramlens.core.weights.run_with` that zeroes head ``head`` of layer ``layer``
    (its columns of ``blocks.{layer}.attn.o``, so the head writes nothing to the residual stream)."""
    attn = model.blocks[layer].attn
    weight = attn.o.weight.detach()
    return {f"blocks.{layer}.attn.o": weight - head_slice(weight, head, model.cfg.n_heads, output=True)}


@torch.no_grad()
def induction_accuracy(model: nn.Module, tokens: Tensor, ablate: tuple[int, int] | None = None) -> float:
    """Share (in [0, 1]) of the induction positions of ``tokens`` ``(batch, T)`` where the most likely next
    token is right; ``ablate=(layer, head)`` runs with that head zeroed."""
    logits = model(tokens) if ablate is None else run_with(model, ablated(model, *ablate), tokens)
    mask = induction_positions(tokens)
    _need_repeats(int(mask.sum()))
    return float((logits.argmax(-1) == tokens.roll(-1, dims=1))[mask].float().mean())


def ablation_accuracies(model: nn.Module, tokens: Tensor | None = None) -> dict[str, float]:
    """``{"none": accuracy, "L{l}H{h}": accuracy with head h of layer l zeroed, ...}`` on the induction positions
    of ``tokens`` (default: :func:`sample_tokens`). Chance is about ``1 / vocab_size``."""
    tokens = sample_tokens(model) if tokens is None else tokens
    out = {"none": induction_accuracy(model, tokens)}
    for layer in range(len(model.blocks)):
        for head in range(model.cfg.n_heads):
            out[f"L{layer}H{head}"] = induction_accuracy(model, tokens, ablate=(layer, head))
    return out


def circuit_summary(model: nn.Module, tokens: Tensor | None = None) -> dict[str, float]:
    """The evidence in one dict of numbers, on ``tokens`` (default: :func:`sample_tokens`): the two heads' indices,
    their scores (attention probabilities), and induction accuracy (share of positions) intact, without the
    previous-token head, without the induction head, and the lowest with any other single head ablated."""
    tokens = sample_tokens(model) if tokens is None else tokens
    p, i = find_heads(model, tokens)
    acc = ablation_accuracies(model, tokens)
    others = [v for k, v in acc.items() if k not in ("none", f"L0H{p}", f"L1H{i}")]
    return {"previous_token_head": p, "induction_head": i,
            "previous_token_score": float(previous_token_scores(model, tokens)[0, p]),
            "induction_score": float(induction_scores(model, tokens)[1, i]),
            "accuracy": acc["none"], "accuracy_without_previous_token_head": acc[f"L0H{p}"],
            "accuracy_without_induction_head": acc[f"L1H{i}"],
            "accuracy_without_other_head": min(others, default=acc["none"])}
