"""Residual streams of Hugging Face transformers, one way for every supported architecture.

Supported: Llama-style causal LMs (``model.model.layers``: Llama, Mistral, Qwen2, SmolLM2, the in-project
tiny LM), GPT-2 style (``model.transformer.h``) and BERT-style encoders (``encoder.layer``, e.g.
all-MiniLM-L6-v2). The stream before block ``l`` is captured with a forward pre-hook on the block, the
stream after the last block with a forward hook, so the values are the raw residual stream (no final norm).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from paramlens.core.weights import run_with
from paramlens.errors import ParamLensError

LAYER_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "encoder.layer", "bert.encoder.layer",
               "layers", "h")  # the last two: base models without a head (LlamaModel, GPT2Model)


def block_prefix(model: nn.Module) -> str:
    """The module name of the list of transformer blocks (``"model.layers"``, ``"transformer.h"``, ...)."""
    for path in LAYER_PATHS:
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return path
    raise ParamLensError(f"{type(model).__name__}: no transformer blocks found at {', '.join(LAYER_PATHS)}; "
                         "supported are Llama-, GPT-2- and BERT-style Hugging Face models")


def blocks_of(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks, in order."""
    return model.get_submodule(block_prefix(model))


def token_embeddings(model: nn.Module) -> Tensor:
    """``(vocab, d_model)`` input token embeddings (no positions), detached."""
    return model.get_input_embeddings().weight.detach()


def unembedding(model: nn.Module) -> Tensor:
    """``(vocab, d_model)`` unembedding (the LM head; the final norm is not folded in), detached."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ParamLensError(f"{type(model).__name__} has no unembedding (an encoder?); a causal LM is needed")
    return head.weight.detach()


def _first(out: object) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def residual_streams(model: nn.Module, input_ids: Tensor, weights: Mapping | None = None) -> Tensor:
    """``(L + 1, B, T, d)`` float32: the residual stream before each of the ``L`` blocks and after the last,
    for ``input_ids`` ``(B, T)``; with ``weights`` (``{target: (d_out, d_in) matrix}``) the model runs with
    those matrices substituted (:func:`paramlens.core.weights.run_with`)."""
    blocks = blocks_of(model)
    captured: list[Tensor] = []
    hooks = [b.register_forward_pre_hook(lambda _m, args, kwargs: captured.append(
        (args[0] if args else kwargs["hidden_states"]).detach().float()), with_kwargs=True) for b in blocks]
    hooks.append(blocks[-1].register_forward_hook(lambda _m, _a, out: captured.append(_first(out).detach().float())))
    try:
        if weights:
            run_with(model, weights, input_ids=input_ids)
        else:
            model(input_ids=input_ids)
    finally:
        for h in hooks:
            h.remove()
    if len(captured) != len(blocks) + 1:
        raise ParamLensError(f"captured {len(captured)} streams for {len(blocks)} blocks; the model skipped blocks")
    return torch.stack(captured)


def require_tokens(model: nn.Module, n_tokens: int, what: str) -> None:
    """Refuse fits of a ``d``-dimensional stream from ``n_tokens <= d`` tokens: their maps, bases and null spaces
    describe the sample, not the model (explained variance goes negative, every direction looks degenerate)."""
    d = model.get_input_embeddings().weight.shape[1]
    if n_tokens <= d:
        raise ParamLensError(f"{what} from {n_tokens} tokens of a {d}-dimensional residual stream: fewer tokens than "
                             f"dimensions; give more than {d} tokens (--tokens)")


def batches_of(windows: Tensor, batch: int = 8) -> Iterator[Tensor]:
    """``windows`` ``(n, T)`` token ids, ``batch`` rows ``(B, T)`` at a time."""
    if windows.dim() != 2 or len(windows) == 0:
        raise ParamLensError(f"token windows must be a non-empty (n, T) tensor, got {tuple(windows.shape)}")
    for s in range(0, len(windows), batch):
        yield windows[s: s + batch]


def stream_batches(model: nn.Module, windows: Tensor, batch: int = 8,
                   weights: Mapping | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """:func:`batches_of` with each batch's residual streams: ``(ids (B, T), streams (L + 1, B, T, d))``, so
    only one batch of activations is held; ``weights`` as in :func:`residual_streams`."""
    model.eval()
    for ids in batches_of(windows, batch):
        yield ids, residual_streams(model, ids, weights)
