import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paramlens.core.weights import select
from paramlens.errors import Interrupted, ParamLensError
from paramlens.subnetwork.sparsify import SparseMask, SparsifyConfig, sparsify


def test_sparsification_keeps_exactly_the_weights_the_task_needs():
    """y = W x with inputs 4..7 always zero: the weights reading them are useless, as are the zero weights
    of W; the mask must keep exactly the non-zero weights on inputs 0..3."""
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(8, 3, bias=False)
    with torch.no_grad():
        w = torch.randn(3, 8, generator=g)
        model.weight.copy_(w.sign() * (0.5 + w.abs()))  # every planted weight matters (|w| >= 0.5)
        model.weight[:, 1] = 0.0
    needed = model.weight.detach().abs() > 0
    needed[:, 4:] = False
    targets = select(model, "*")

    def task(run, step):
        x = torch.randn(64, 8, generator=g)
        x[:, 4:] = 0
        return F.mse_loss(run(x), model(x).detach())

    mask = sparsify(model, targets, task, SparsifyConfig(lam=0.1, lr=0.1, temp_growth=1.005, max_steps=3000),
                    progress=False)
    assert torch.equal(mask.masks[targets[0].name], needed)
    assert mask.undecided < 0.01 and mask.active == int(needed.sum())
    assert model.weight.requires_grad  # the model can still be trained


def test_masks_for_another_models_matrices_are_a_clear_error():
    mask = SparseMask({"0": torch.ones(3, 8, dtype=torch.bool)}, 1, 0.0, [])
    kept = mask.weights(nn.Sequential(nn.Linear(8, 3)))
    assert [t.name for t in kept] == ["0"]
    with pytest.raises(ParamLensError, match="another model"):
        mask.weights(nn.Sequential(nn.Linear(4, 3)))


@pytest.mark.parametrize("undecided, steps", [(0.3, 28), (0.1, 60)])  # stops early; runs to max_steps
def test_an_interrupted_sparsification_resumes_to_the_uninterrupted_masks(tmp_path, undecided, steps):
    """Ctrl-C during step 12; the batches come from torch's global generator, which the checkpoint keeps too."""
    cfg = SparsifyConfig(lam=0.1, lr=0.1, temp_growth=1.05, max_steps=60, check_every=7, undecided=undecided)
    calls = []

    def run(interrupt_at=None, **where):
        torch.manual_seed(1)
        model = nn.Linear(8, 3, bias=False)

        def task(run, step):
            calls.append(step)
            if step == interrupt_at:
                signal.raise_signal(signal.SIGINT)
            x = torch.randn(16, 8)
            x[:, 4:] = 0
            return F.mse_loss(run(x), model(x).detach())

        return sparsify(model, select(model, "*"), task, cfg, progress=False, **where)

    reference = run()
    assert reference.steps == steps and len(reference.history) == -(-steps // 7)
    with pytest.raises(Interrupted, match="interrupted after step 12 of 60"):
        run(interrupt_at=12, folder=tmp_path)
    calls.clear()
    resumed = run(folder=tmp_path, resume=True)
    assert calls == list(range(13, steps + 1))
    assert resumed.history == reference.history and (resumed.steps, resumed.undecided) == (steps, reference.undecided)
    assert all(torch.equal(resumed.masks[k], m) for k, m in reference.masks.items())
    calls.clear()
    again = run(folder=tmp_path, resume=True)  # a finished run (stopped early or not) takes no more steps
    assert not calls and again.history == reference.history
