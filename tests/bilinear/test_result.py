import torch

from paramlens.bilinear.result import ClassifierAnalysis, analyse
from paramlens.core.images import load_images
from paramlens.models.bilinear_nets import ClassifierConfig, train_classifier


def test_analysis_saves_loads_and_draws(tmp_path):
    data = load_images("digits")
    model, _ = train_classifier(ClassifierConfig(d_input=64, d_hidden=16, n_steps=200, batch_size=128, lr=3e-3),
                                data, progress=False)
    result = analyse(model, data, ks=[0, 1, 2, 5, 10, 20, 30], n_top=3)
    assert result.eigenvalues.shape == (10, 64) and result.top_vectors.shape == (10, 3, 64)
    assert torch.allclose(result.top_vectors.norm(dim=-1), torch.ones(10, 3, dtype=torch.float64))
    assert result.terms[:, 1:].abs().max() == 0  # no biases: only the quadratic part
    loaded = ClassifierAnalysis.load(result.save(tmp_path))
    assert loaded.truncation == result.truncation and torch.equal(loaded.masks, result.masks)
    names = [name for name, _ in loaded.figures(tmp_path)]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
    assert "test accuracy" in loaded.summary()
