import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paramlens.core.weights import select
from paramlens.errors import Interrupted, ParamLensError
from paramlens.information.weights_info import InformationConfig, WeightInformation, weight_information


def test_weights_the_task_never_reads_store_nothing(tmp_path):
    """y = W x with inputs 3..5 always zero: their weights tolerate any noise (large alpha, low information),
    the weights on inputs 0..2 do not."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 2, bias=False))
    with torch.no_grad():  # every weight on a used input matters (|w| >= 0.5); a near-zero one would not
        w = torch.randn(2, 6, generator=g)
        model[0].weight.copy_(w.sign() * (0.5 + w.abs()))
    x = torch.randn(256, 6, generator=g)
    x[:, 3:] = 0
    y = model(x).detach()
    targets = select(model, "*")

    def task(run, step):
        return F.mse_loss(run(x), y)

    r = weight_information(model, targets, task, InformationConfig(beta=1e-4, steps=400, lr=0.1), progress=False)
    la = r.log_alpha[targets[0].name]
    assert la[:, 3:].min() > la[:, :3].max() + 2  # unused weights learned far more noise
    assert r.loss_noisy < 0.1 * float((y**2).mean())  # the learned noise keeps the task working
    assert all(p.requires_grad for p in model.parameters())  # the model can still be trained
    r.save(tmp_path)
    back = WeightInformation.load(tmp_path)
    assert back.info == r.info and torch.equal(back.log_alpha[targets[0].name], la)


def test_hessian_diagonal_of_a_quadratic_is_exact():
    from paramlens.information.weights_info import hessian_diagonal

    model = nn.Linear(3, 1, bias=False)
    targets = select(model, "*")
    x = torch.randn(100, 3)
    w0 = {targets[0].name: torch.randn(1, 3)}

    def loss_of(ws):
        return ((x @ ws[targets[0]].T) ** 2).mean()

    diag = hessian_diagonal(loss_of, w0, targets, samples=1, generator=torch.Generator().manual_seed(0))
    # H = 2 E[x x^T]; Hutchinson with Rademacher v is exact on the diagonal only in expectation, so compare
    # the estimator's mean over many draws
    many = hessian_diagonal(loss_of, w0, targets, samples=4000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(many[targets[0].name][0], 2 * (x**2).mean(0), rtol=0.05)
    assert diag[targets[0].name].shape == (1, 3)


def test_no_targets_is_a_clear_error():
    with pytest.raises(ParamLensError, match="no target"):
        weight_information(nn.Linear(2, 2), [], lambda run, step: torch.zeros(()))


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    """Ctrl-C during step 12 of 30; the noise and the batches come from torch's global generator, which the
    checkpoint keeps too."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = x @ torch.randn(6, 2, generator=g)
    cfg = InformationConfig(steps=30, lr=0.1, hutchinson_samples=2)
    calls = []

    def run(interrupt_at=None, **where):
        model = nn.Sequential(nn.Linear(6, 2, bias=False))

        def task(run, step):
            if step < 0:
                return F.mse_loss(run(x), y)
            calls.append(step)
            if step == interrupt_at:
                signal.raise_signal(signal.SIGINT)
            idx = torch.randint(0, 64, (16,))
            return F.mse_loss(run(x[idx]), y[idx])

        return weight_information(model, select(model, "*"), task, cfg, progress=False, **where)

    torch.manual_seed(0)  # the model's initial weights
    reference = run()
    with pytest.raises(Interrupted, match="interrupted after step 12 of 30"):
        torch.manual_seed(0)
        run(interrupt_at=11, folder=tmp_path)
    calls.clear()
    torch.manual_seed(0)
    resumed = run(folder=tmp_path, resume=True)
    assert calls == list(range(12, 30))
    for field in ("info", "per_weight", "bound", "loss_clean", "loss_noisy"):
        assert getattr(resumed, field) == getattr(reference, field), field
    assert all(torch.equal(resumed.log_alpha[k], la) for k, la in reference.log_alpha.items())
