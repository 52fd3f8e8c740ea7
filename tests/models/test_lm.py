import pytest
import torch

from paramlens.core.loading import load, load_tokenizer
from paramlens.core.text import load_corpus
from paramlens.errors import ParamLensError
from paramlens.models.lm.tiny import TinyLMConfig, train_tiny_lm


def test_corpora_load_offline():
    fortunes = load_corpus("fortunes")
    assert len(fortunes) > 1_000_000 and "%" not in fortunes[:2000].splitlines()
    bible = load_corpus("bible", max_chars=5000)
    assert bible.startswith("In the beginning God created the heaven and the earth.")
    with pytest.raises(ParamLensError, match="neither a corpus"):
        load_corpus("no-such-corpus")


def test_tiny_lm_learns_and_saves_as_a_hugging_face_folder(tmp_path):
    cfg = TinyLMConfig(max_chars=40_000, vocab_size=300, d_model=32, n_layers=1, n_heads=2, d_mlp=64, context=16,
                       n_steps=150, batch_size=16, lr=1e-2)
    model, tok, history = train_tiny_lm(cfg, folder=tmp_path / "lm", progress=False)
    first, last = history[0]["loss"], sum(h["loss"] for h in history[-10:]) / 10
    assert last < first - 1.0  # well below the unigram start
    loaded = load(tmp_path / "lm")
    assert loaded.format == "hf" and loaded.module.config.hidden_act == "linear"  # bilinear MLPs
    ids = load_tokenizer(tmp_path / "lm")("the fortune")["input_ids"]
    assert tok.decode(ids) == "the fortune"
    with torch.no_grad():
        assert torch.allclose(loaded.module(torch.tensor([ids])).logits, model(torch.tensor([ids])).logits, atol=1e-5)
