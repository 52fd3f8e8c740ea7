"""A byte-level BPE tokenizer trained in seconds on a local corpus, usable as a transformers tokenizer."""

from __future__ import annotations

from typing import Any

EOS = "<|endoftext|>"
BOS = "<|startoftext|>"


def train_tokenizer(text: str, vocab_size: int = 1024, bos: bool = False) -> Any:
    """Train byte-level BPE on ``text``; returns a ``transformers.PreTrainedTokenizerFast`` with ``<|endoftext|>``
    as its end-of-sequence token (saved and loaded with the usual ``save_pretrained`` / ``from_pretrained``); with
    ``bos`` it also starts every text with ``<|startoftext|>``, as Llama-family tokenizers do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [EOS, BOS] if bos else [EOS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    chunk = 100_000
    tok.train_from_iterator((text[i:i + chunk] for i in range(0, len(text), chunk)), trainer=trainer)
    if not bos:
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=BOS)
