import signal

import pytest
import torch
from torch import nn

from paramlens.core.weights import select
from paramlens.errors import Interrupted, ParamLensError
from paramlens.interaction.llc import LLCConfig, local_learning_coefficient


def regression(d: int, dead: int, n: int = 2000):
    """Least-squares linear model with ``dead`` input features that are always 0: its LLC is (d - dead) / 2."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    x[:, :dead] = 0
    y = x @ torch.randn(d, 1, generator=g) + torch.randn(n, 1, generator=g)
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight[:, :dead] = 0.7  # any value: the loss does not see these weights
        model.weight[:, dead:] = torch.linalg.lstsq(x[:, dead:], y).solution.T
    return model, lambda run, step: 0.5 * ((run(x) - y) ** 2).mean(), n  # Gaussian NLL up to a constant


@pytest.mark.parametrize("dead", [0, 2])
def test_llc_of_a_regular_model_is_half_its_live_parameters(dead):
    model, loss, n = regression(6, dead)
    cfg = LLCConfig(steps=3000, burn_in=300, chains=4, eps=2e-4, gamma=1.0)
    before = model.weight.detach().clone()
    llc, err = local_learning_coefficient(model, select(model, "*"), loss, n, cfg)
    assert llc == pytest.approx((6 - dead) / 2, rel=0.15), (llc, err)
    assert torch.equal(model.weight, before)  # the model itself is not moved
    assert model.weight.requires_grad  # and can still be trained


def test_bad_settings_are_clear_errors():
    model, loss, n = regression(2, 0)
    with pytest.raises(ParamLensError, match="burn_in"):
        local_learning_coefficient(model, select(model, "*"), loss, n, LLCConfig(steps=10, burn_in=10))
    with pytest.raises(ParamLensError, match="lower eps"):
        local_learning_coefficient(model, select(model, "*"), loss, n, LLCConfig(steps=50, burn_in=0, eps=10.0))


def test_an_interrupted_estimate_resumes_to_the_uninterrupted_one(tmp_path):
    """Ctrl-C during step 7 of the second of two 20-step chains; the batches come from torch's global generator,
    which the checkpoint keeps with the SGLD noise generator and the first chain's mean loss."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.randn(3, 2, generator=g) + 0.1 * torch.randn(64, 2, generator=g)
    model = nn.Linear(3, 2, bias=False)
    cfg = LLCConfig(steps=20, burn_in=5, chains=2, eps=1e-3, gamma=10.0)
    calls = []

    def run(interrupt_at=None, **where):
        def loss(run, step):
            if step < 0:
                return 0.5 * ((run(x) - y) ** 2).mean()
            calls.append(step)
            if len(calls) == interrupt_at:
                signal.raise_signal(signal.SIGINT)
            idx = torch.randint(0, 64, (16,))
            return 0.5 * ((run(x[idx]) - y[idx]) ** 2).mean()

        calls.clear()
        torch.manual_seed(0)
        return local_learning_coefficient(model, select(model, "*"), loss, 64, cfg, **where)

    reference = run()
    with pytest.raises(Interrupted, match="interrupted after step 27 of 40"):
        run(interrupt_at=27, folder=tmp_path)
    assert run(folder=tmp_path, resume=True) == reference
    assert calls == list(range(7, 20))
