import pytest
import torch

from paramlens.errors import ParamLensError
from paramlens.models.lm.tiny import TinyLMConfig, corpus_tokens, train_tiny_lm
from paramlens.subnetwork.bigram import BigramConfig, BigramModel, BigramSubnetwork, bigram_subnetwork


def test_bigram_model_matches_counting_by_hand():
    tokens = torch.tensor([0, 1, 2, 1, 2, 0, 1, 1])  # after 1: 2, 2, 1 -> P(2|1) = 2/3, P(1|1) = 1/3
    b = BigramModel(tokens[None], vocab=3, k=1e-9)  # one window
    assert b.probs(torch.tensor([1]))[0].tolist() == pytest.approx([0, 1 / 3, 2 / 3], abs=1e-6)
    assert b.surprisal(torch.tensor([1]), torch.tensor([2])).item() == pytest.approx(-torch.log(torch.tensor(2 / 3)).item())
    assert torch.allclose(b.probs(torch.tensor([[0, 2]])).sum(1), torch.ones(2))


@pytest.fixture(scope="module")
def trained():
    cfg = TinyLMConfig(max_chars=200_000, vocab_size=512, d_model=64, n_layers=2, n_heads=2, d_mlp=256, context=32,
                       n_steps=400, batch_size=32, mlp="swiglu")
    model, tok, _ = train_tiny_lm(cfg, progress=False)
    return model, corpus_tokens(cfg, tok)[:40_000].view(-1, 32)


def test_bigram_subnetwork_behaves_like_the_bigram_model(trained, tmp_path):
    model, tokens = trained
    r = bigram_subnetwork(model, tokens, BigramConfig(max_steps=1200), progress=False)
    assert r.pearson > r.pearson_full and r.pearson > 0.6  # closer to bigram statistics than the full model
    assert r.loss_without > r.loss_without_random  # removing it hurts more than removing random weights
    assert 0 < r.active < 0.5 * r.total
    assert r.active == sum(int(m.sum()) for m in r.masks.values()) == sum(row["active"] for row in r.per_matrix)
    r.save(tmp_path)
    back = BigramSubnetwork.load(tmp_path)
    assert back.summary() == r.summary() and all(torch.equal(back.masks[k], r.masks[k]) for k in r.masks)


def test_tokens_outside_the_vocabulary_are_a_clear_error(trained):
    model, tokens = trained
    with pytest.raises(ParamLensError, match="vocabulary"):
        bigram_subnetwork(model, tokens + 10_000, progress=False)


def test_bigram_then_rotation_of_the_subnetwork_from_the_cli(tmp_path):
    from typer.testing import CliRunner

    from paramlens.cli import app
    from paramlens.geometry.rotation import Rotation

    cfg = TinyLMConfig(max_chars=40_000, vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_mlp=64, context=16,
                       n_steps=40, batch_size=16, mlp="swiglu")
    train_tiny_lm(cfg, folder=tmp_path / "lm", progress=False)
    runner = CliRunner()
    res = runner.invoke(app, ["bigram", str(tmp_path / "lm"), "--tokens", "4000", "--steps", "60", "--context", "16",
                              "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    run = next((tmp_path / "b").iterdir())
    assert BigramSubnetwork.load(run).steps <= 60
    res = runner.invoke(app, ["rotation", str(tmp_path / "lm"), "--tokens", "512", "--context", "16", "--subnetwork",
                              str(run), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    folder = next((tmp_path / "r").iterdir())
    full, sub = Rotation.load(folder / "rotation_0"), Rotation.load(folder / "rotation_1")
    assert "subnetwork" in sub.model and len(full.to_input) == len(sub.to_input) == 3
    assert (folder / "index.html").is_file()
