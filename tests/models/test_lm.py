import pytest
import torch

from paramlens.core.loading import load
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
    ids = loaded.tokenizer("the fortune")["input_ids"]
    assert tok.decode(ids) == "the fortune"
    with torch.no_grad():
        assert torch.allclose(loaded.module(torch.tensor([ids])).logits, model(torch.tensor([ids])).logits, atol=1e-5)


def test_windows_follow_each_tokenizers_rule_for_the_bos_token(tmp_path):
    """A model trained with BOS at the start of every window (as Llama-family models are) predicts much worse
    without it; the windows every LM command reads start with BOS exactly when the tokenizer adds one."""
    import torch.nn.functional as F

    from paramlens.core.resolve import resolve
    from paramlens.core.text import TextOptions, lm_windows, special_tokens

    cfg = TinyLMConfig(max_chars=60_000, vocab_size=300, d_model=32, n_layers=1, n_heads=2, d_mlp=64, context=16,
                       n_steps=300, batch_size=32, lr=1e-2, bos=True)
    train_tiny_lm(cfg, folder=tmp_path / "lm", progress=False)
    loaded = resolve(tmp_path / "lm")
    bos = loaded.tokenizer.bos_token_id
    assert special_tokens(loaded.tokenizer) == ([bos], [])
    windows = lm_windows(loaded, TextOptions(tokens=16 * 64, context=16))
    assert windows.shape == (64, 16) and (windows[:, 0] == bos).all() and (windows[:, 1:] != bos).all()

    def first_loss(ids, at):  # loss of predicting the second text token from the first (at position `at`)
        with torch.no_grad():
            return float(F.cross_entropy(loaded.module(ids).logits[:, at], ids[:, at + 1]))

    with_bos, without_bos = first_loss(windows, 1), first_loss(windows[:, 1:], 0)
    assert without_bos > with_bos + 0.1, (with_bos, without_bos)
    gpt2_style = train_tiny_lm(cfg.model_copy(update={"bos": False, "n_steps": 1}), progress=False)[1]
    assert special_tokens(gpt2_style) == ([], [])
