"""One way to reach the parts of a Hugging Face causal LM that weight-based analyses read.

Supported: Llama-style models (Llama, Mistral, Qwen2, SmolLM2, and the in-project tiny LM): token
embedding, per-layer MLP with its input RMSNorm, final RMSNorm and unembedding.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from paramlens.errors import ParamLensError
from paramlens.core.streams import token_embeddings, unembedding


@dataclass
class Block:
    """Layer ``index``: its MLP module and the gain ``(d_model,)`` of the RMSNorm in front of it."""

    index: int
    mlp: nn.Module
    mlp_norm_gain: Tensor


class LMParts:
    """Views (no copies) of a Llama-style causal LM's weights."""

    def __init__(self, model: nn.Module):
        inner = getattr(model, "model", None)
        if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
            raise ParamLensError(f"{type(model).__name__} is not a Llama-style causal LM (model.layers, lm_head)")
        self.model, self.inner = model, inner

    @property
    def n_layers(self) -> int:
        return len(self.inner.layers)

    def embedding(self) -> Tensor:
        """``(vocab, d_model)`` token embeddings."""
        return token_embeddings(self.model)

    def unembedding(self) -> Tensor:
        """``(vocab, d_model)`` unembedding with the final RMSNorm gain folded in (logit = row . h / rms(h))."""
        return unembedding(self.model) * self.inner.norm.weight.detach()

    def block(self, index: int) -> Block:
        if not 0 <= index < self.n_layers:
            raise ParamLensError(f"layer {index} does not exist; the model has {self.n_layers} layers")
        layer = self.inner.layers[index]
        return Block(index, layer.mlp, layer.post_attention_layernorm.weight.detach())
