"""A tiny Llama-style language model trained in-project on a local corpus, with its own BPE tokenizer.

It is a real ``transformers.LlamaForCausalLM``, saved as a Hugging Face folder (weights, config and
tokenizer), so every analysis that accepts a Hugging Face model runs on it. ``mlp="bilinear"`` makes every
MLP bilinear (``hidden_act="linear"``: ``down(gate(x) * up(x))``); ``mlp="swiglu"`` is the usual SiLU gate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from paramlens.core.data import TokenRows, TokenWindows
from paramlens.core.text import load_corpus, wrap_windows
from paramlens.models.lm.tokenizer import train_tokenizer
from paramlens.models.train import TrainConfig, seeded, train

ACTIVATIONS = {"bilinear": "linear", "swiglu": "silu"}


class TinyLMConfig(TrainConfig):
    kind: Literal["tiny_lm"] = "tiny_lm"
    corpus: str = Field("fortunes", description="a corpus name (paramlens.core.text) or a text file")
    max_chars: int | None = Field(None, ge=1000, description="use only the first characters of the corpus")
    vocab_size: int = Field(1024, ge=260)
    d_model: int = Field(128, ge=8)
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(4, ge=1)
    d_mlp: int = Field(512, ge=1)
    mlp: Literal["bilinear", "swiglu"] = "bilinear"
    bos: bool = Field(False, description="the tokenizer starts every text with a BOS token, and training windows "
                      "start with it (as Llama-family models are trained)")
    context: int = Field(64, ge=2)
    n_steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1


def build_tiny_lm(cfg: TinyLMConfig) -> nn.Module:
    """An untrained ``LlamaForCausalLM`` of the configured size (untied unembedding)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.context, hidden_act=ACTIVATIONS[cfg.mlp], tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return LlamaForCausalLM(config)


def corpus_tokens(cfg: TinyLMConfig, tokenizer: Any) -> Tensor:
    """The configured corpus as one ``(n_tokens,)`` stream of ``tokenizer`` ids (no special tokens)."""
    text = load_corpus(cfg.corpus, cfg.max_chars)
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def train_tiny_lm(cfg: TinyLMConfig, folder: str | Path | None = None, **kwargs) -> tuple[nn.Module, Any, list[dict]]:
    """Train tokenizer and model; with ``folder``, save both there as a Hugging Face folder.
    ``kwargs`` go to :func:`paramlens.models.train.train`. Returns ``(model, tokenizer, loss log)``."""
    tokenizer = train_tokenizer(load_corpus(cfg.corpus, cfg.max_chars), cfg.vocab_size, bos=cfg.bos)
    ids = corpus_tokens(cfg, tokenizer)
    windows = TokenRows(wrap_windows(ids, tokenizer, cfg.context)) if cfg.bos else TokenWindows(ids, cfg.context)
    model = seeded(lambda: build_tiny_lm(cfg), cfg.seed)

    def loss_fn(m: nn.Module, x: Tensor) -> Tensor:
        return m(input_ids=x, labels=x).loss

    history = train(model, windows, loss_fn, cfg, folder=Path(folder) / "training" if folder else None, **kwargs)
    model.eval()
    if folder is not None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return model, tokenizer, history
