import pytest
import torch

from paramlens.bilinear.adversarial import adversarial_masks, attack
from paramlens.bilinear.class_forms import class_forms
from paramlens.bilinear.truncation import eigenvector_similarity, truncation_curve
from paramlens.core.images import load_images
from paramlens.errors import ParamLensError
from paramlens.models.bilinear_nets import BilinearClassifier, ClassifierConfig, accuracy, train_classifier


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


@pytest.fixture(scope="module")
def trained(digits):
    cfg = ClassifierConfig(d_input=64, d_hidden=48, n_steps=600, batch_size=128, lr=3e-3, weight_decay=0.1)
    model, _ = train_classifier(cfg, digits, progress=False)
    return model


def test_training_learns_the_digits(trained, digits):
    assert accuracy(trained, digits.x_test, digits.y_test) > 0.9


@pytest.mark.parametrize("shape", [{}, {"d_model": 20}, {"d_model": 20, "residual": True, "bias": True}])
def test_class_forms_are_the_model_exactly(shape):
    torch.manual_seed(0)
    model = BilinearClassifier(ClassifierConfig(d_input=30, d_hidden=16, n_classes=4, **shape))
    x = torch.rand(25, 30)
    with torch.no_grad():
        assert torch.allclose(class_forms(model).logits(x), model(x).double(), atol=1e-5)


def test_more_than_one_block_is_refused():
    with pytest.raises(ParamLensError, match="2 bilinear blocks"):
        class_forms(BilinearClassifier(ClassifierConfig(d_input=8, d_hidden=4, n_blocks=2)))


def test_truncation_to_every_eigenvector_is_the_full_model(trained, digits):
    curve = truncation_curve(class_forms(trained), digits.x_test, digits.y_test, ks=[0, 1, 5, 65])
    assert curve.at(65) == pytest.approx(curve.full_accuracy)
    assert curve.full_accuracy == pytest.approx(accuracy(trained, digits.x_test, digits.y_test), abs=0.01)
    assert curve.at(0) < 0.2 < curve.at(5)  # no eigenvector: every logit is 0; five already classify


def test_masks_excite_only_their_own_class(trained):
    forms = class_forms(trained)
    tops = torch.stack([e.vectors[(e.values > 0).nonzero()[0, 0]] for e in forms.spectra()])
    response = tops @ adversarial_masks(forms).T  # (class eigenvector, mask)
    off = response - torch.diag(response.diagonal())
    assert off.abs().max() < 1e-8 and (response.diagonal() > 0).all()


def test_masks_beat_same_norm_noise(trained, digits):
    norm = float(digits.x_test.norm(dim=1).mean())
    result = attack(class_forms(trained), digits.x_test, digits.y_test, norms=[norm])
    assert result.mask[0] > 0.3 and result.mask[0] > 5 * result.noise[0]


def test_eigenvectors_survive_a_permutation_of_hidden_units(trained):
    """Permuting hidden units leaves the function, hence every spectrum, unchanged."""
    twin = BilinearClassifier(trained.cfg)
    twin.load_state_dict(trained.state_dict())
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(0))
    block = twin.blocks[0]
    with torch.no_grad():
        block.w.weight.copy_(block.w.weight[perm])
        block.v.weight.copy_(block.v.weight[perm])
        block.p.weight.copy_(block.p.weight[:, perm])
    a, b = class_forms(trained).spectra(), class_forms(twin).spectra()
    assert torch.allclose(eigenvector_similarity(a, b, top=5), torch.ones(10, 5, dtype=torch.float64), atol=1e-6)
    fresh = BilinearClassifier(trained.cfg)  # an untrained model shares nothing beyond chance
    assert eigenvector_similarity(a, class_forms(fresh).spectra(), top=5).mean() < 0.7
