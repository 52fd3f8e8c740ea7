"""Induction model: training reaches the accuracy, the circuit is one previous-token head and one induction head
(found by attention scores, confirmed by ablation), and ground_truth() slices exactly those heads' weights."""

import pytest
import torch
from pydantic import ValidationError

from paramlens.core.weights import run_with, select
from paramlens.errors import ParamLensError
from paramlens.models.train import save_model
from paramlens.models.transformers.induction import (
    MECHANISMS,
    InductionConfig,
    load_induction,
    train_induction,
)
from paramlens.models.transformers.induction_checks import (
    ablation_accuracies,
    circuit_summary,
    find_heads,
    head_norms,
    head_slice,
    induction_accuracy,
    induction_scores,
    previous_token_scores,
)
from paramlens.models.transformers.induction_data import (
    NoRepeats,
    RepeatedSegments,
    earlier_occurrence,
    induction_positions,
    mechanism_inputs,
)
from tests.conftest import INDUCTION

CFG = INDUCTION  # the conftest fixture induction_model is trained with it


@pytest.fixture(scope="module")
def trained(induction_model):
    return induction_model


@pytest.fixture(scope="module")
def inputs():
    return mechanism_inputs(CFG.vocab_size, CFG.length, CFG.min_segment, n=512, seed=1)  # held out: seed 1


def test_repeated_segments_repeat_once_and_no_repeats_never():
    g = torch.Generator().manual_seed(0)
    x = RepeatedSegments(vocab_size=32, length=24, min_segment=4).sample(200, g)
    j = earlier_occurrence(x)
    repeated = j >= 0
    seg = repeated.sum(1)  # the second copy: segment length L in [4, 12]
    assert seg.min() >= 4 and seg.max() <= 12 and len(seg.unique()) > 4
    assert (repeated[:, -1]).all()  # the second copy ends the sequence
    t = torch.arange(24).expand(200, -1)
    assert torch.equal(j[repeated], (t - seg[:, None])[repeated])  # its first copy is L positions back
    assert torch.equal(induction_positions(x).sum(1), seg - 1)
    assert not induction_positions(NoRepeats(32, 24).sample(50, g)).any()


def test_config_refuses_shapes_that_do_not_fit():
    for bad in ({"d_model": 30, "n_heads": 4}, {"vocab_size": 16, "length": 24}, {"min_segment": 13, "length": 24}):
        with pytest.raises(ValidationError):
            InductionConfig(**bad)


def test_training_reaches_high_induction_accuracy(trained, inputs):
    accuracy = induction_accuracy(trained, inputs["induction"])
    assert accuracy > 0.95, accuracy  # measured 0.984 at seed 0; chance is 1/32


def test_one_previous_token_head_and_one_induction_head_by_score(trained, inputs):
    prev = previous_token_scores(trained, inputs["induction"])
    ind = induction_scores(trained, inputs["induction"])
    p, i = find_heads(trained, inputs["induction"])
    assert prev[0, p] > 0.5 and ind[1, i] > 0.6, (prev, ind)  # measured 0.64 and 0.82
    assert prev[0, p] > 3 * prev[0, 1 - p] and ind[1, i] > 3 * ind[1, 1 - i]  # others ~uniform: 0.12 and 0.05
    # the previous-token head fires without repeats too; the induction head is the layer-1 head, not layer 0's
    assert previous_token_scores(trained, inputs["no_repeats"])[0, p] > 0.5
    assert ind[1, i] > 3 * ind[0].max()
    assert (p, i) == find_heads(trained)  # the default sample agrees


def test_ablating_the_circuit_heads_drops_to_about_chance_and_other_heads_do_nothing(trained, inputs):
    acc = ablation_accuracies(trained, inputs["induction"])
    p, i = find_heads(trained)
    assert acc[f"L0H{p}"] < 0.2, acc  # measured 0.10 (chance 1/32 = 0.03)
    assert acc[f"L1H{i}"] < 0.1, acc  # measured 0.03
    assert acc[f"L0H{1 - p}"] > acc["none"] - 0.02 and acc[f"L1H{1 - i}"] > acc["none"] - 0.02, acc
    summary = circuit_summary(trained, inputs["induction"])
    assert summary["accuracy_without_induction_head"] == acc[f"L1H{i}"] and summary["induction_head"] == i
    assert summary["accuracy_without_other_head"] == min(acc[f"L0H{1 - p}"], acc[f"L1H{1 - i}"])
    norms = head_norms(trained).detach()
    assert norms[0, 1 - p] < 1e-3 * norms[0, p] and norms[1, 1 - i] < 1e-3 * norms[1, i]  # pruned by the penalty


def test_ground_truth_slices_the_circuit_heads_and_sums_to_the_weights(trained, inputs):
    gt = trained.ground_truth()
    heads = find_heads(trained)
    targets = select(trained, "blocks.*.attn.*")
    assert sorted(gt.matrices) == sorted(t.name for t in targets) and len(targets) == 8
    for t in targets:
        layer, name = int(t.name.split(".")[1]), t.name[-1]
        parts, weight = gt.matrices[t.name], t.matrix(trained).detach()
        assert parts.shape == (len(MECHANISMS), *t.shape)
        assert torch.equal(parts[1 - layer], torch.zeros_like(weight))  # the other layer's mechanism
        own = head_slice(weight, heads[layer], 2, output=name == "o")
        assert torch.equal(parts[layer], own)
        other = weight - own  # the uncovered head, pruned to ~0
        assert torch.allclose(parts.sum(0), weight, atol=1e-5) and other.abs().max() < 1e-5
    # the model with every attention matrix replaced by the sum of its mechanisms keeps its accuracy
    summed = {name: parts.sum(0) for name, parts in gt.matrices.items()}
    x = inputs["induction"][:128]
    with torch.no_grad():
        assert torch.equal(run_with(trained, summed, x).argmax(-1), trained(x).argmax(-1))


def test_training_is_deterministic_and_saves_and_loads(tmp_path, trained, inputs):
    short = CFG.model_copy(update={"n_steps": 3})
    a, _ = train_induction(short, progress=False)
    b, _ = train_induction(short, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    save_model(tmp_path, trained, CFG)
    back = load_induction(tmp_path)
    x = inputs["induction"][:16]
    assert back.cfg == CFG and torch.equal(back(x), trained(x))


def test_inputs_it_cannot_score_are_refused(trained, inputs):
    with pytest.raises(ParamLensError, match="repeats"):
        induction_accuracy(trained, inputs["no_repeats"])
    with pytest.raises(ParamLensError, match="T <= 24"):
        trained(torch.zeros(2, 25, dtype=torch.long))


def test_the_zoo_knows_the_model_by_name_and_its_run_folders(tmp_path, trained, inputs):
    from paramlens import resolve

    save_model(tmp_path, trained, CFG)
    loaded = resolve(tmp_path)
    assert loaded.kind == "induction" and torch.equal(loaded.module(inputs["induction"][:4]), trained(inputs["induction"][:4]))
    built = resolve("induction", progress=False, options={**CFG.model_dump(exclude={"kind", "seed"}), "n_steps": 2})
    assert isinstance(built.module, type(trained)) and built.module.cfg.d_model == CFG.d_model
