import pytest

from paramlens.models.lm.tiny import TinyLMConfig, train_tiny_lm
from paramlens.models.transformers.induction import InductionConfig, train_induction


@pytest.fixture(scope="session")
def lm_folder(tmp_path_factory):
    """A tiny SwiGLU Llama trained for a few steps, saved as a Hugging Face folder with its tokenizer."""
    folder = tmp_path_factory.mktemp("lm") / "tiny"
    cfg = TinyLMConfig(max_chars=40_000, vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_mlp=64, context=16,
                       n_steps=60, batch_size=16, mlp="swiglu")
    train_tiny_lm(cfg, folder=folder, progress=False)
    return folder


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``paramlens ARGS`` in this process: ``cli(*args) -> (exit status, stdout, stderr)``."""
    import sys

    from paramlens import cli as module

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["paramlens", *map(str, args)])
        module._state["debug"] = False
        capsys.readouterr()
        with pytest.raises(SystemExit) as ended:
            module.main()
        captured = capsys.readouterr()
        return ended.value.code, captured.out, captured.err

    return run


INDUCTION = InductionConfig(vocab_size=32, length=24, d_model=32, n_heads=2, seed=0)


@pytest.fixture(scope="session")
def induction_model():
    """The induction model with ``INDUCTION``'s settings, trained once per session (~10-100 s on one core)."""
    return train_induction(INDUCTION, progress=False)[0]
