import pytest

from paramlens.models.lm.tiny import TinyLMConfig, train_tiny_lm


@pytest.fixture(scope="session")
def lm_folder(tmp_path_factory):
    """A tiny SwiGLU Llama trained for a few steps, saved as a Hugging Face folder with its tokenizer."""
    folder = tmp_path_factory.mktemp("lm") / "tiny"
    cfg = TinyLMConfig(max_chars=40_000, vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_mlp=64, context=16,
                       n_steps=60, batch_size=16, mlp="swiglu")
    train_tiny_lm(cfg, folder=folder, progress=False)
    return folder
