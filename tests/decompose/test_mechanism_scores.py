"""Mechanism scores on decompositions whose answer is known by construction: hand-made importances, and an SPD
built exactly from a compiled program's ground truth."""

import math

import pytest
import torch

from paramlens.core.weights import select
from paramlens.decompose.apd import APDConfig, APDMethod
from paramlens.decompose.mechanism_ablation import ablation_accuracies, ablation_masks
from paramlens.decompose.mechanism_match import match_mechanisms, unmatched
from paramlens.decompose.mechanism_scores import component_matrices, score_mechanisms, weight_match
from paramlens.decompose.spd import SPDMethod, SPDModel
from paramlens.errors import ParamLensError
from paramlens.models.transformers import MECHANISMS, InductionConfig, InductionTransformer, frac_prevs_model
from paramlens.models.transformers.tasks import InductionAccuracy, induction_exercised, induction_task, program_task


def masks(seed=0, shape=(8, 6)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g) < 0.3
    b = ~a & (torch.rand(shape, generator=g) < 0.5)
    return a, b, torch.ones(shape, dtype=torch.bool)


def test_matching_returns_exactly_the_planted_members():
    a, b, everywhere = masks()
    t, u = torch.zeros(8, 6, 4), torch.zeros(8, 6, 3)
    t[..., 0], t[..., 1] = 0.9 * a, a.float()  # both on exactly where A is exercised
    t[..., 3] = 1.0  # on everywhere: an embedding-like subcomponent
    u[..., 2] = b.float()
    u[..., 0] = 0.3 * b  # below the threshold: not active
    found = match_mechanisms({"t": t, "u": u}, {"A": a, "B": b, "all": everywhere})
    assert found["A"].members == (("t", 0), ("t", 1)) and found["B"].members == (("u", 2),)
    assert found["all"].members == (("t", 3),)
    for m in found.values():
        assert (m.precision, m.recall, m.shared) == (1.0, 1.0, 0)
    assert found["A"].exercised == int(a.sum())
    assert unmatched({"t": t, "u": u}, {"A": a}, found) == []


def test_a_subcomponent_goes_to_the_most_specific_mechanism_and_ties_share_it():
    a, _, everywhere = masks()
    part = a.clone()
    part[part.nonzero()[0].tolist()] = False  # active on all but one of A's positions
    g = torch.stack([part.float(), a.float()], -1)
    found = match_mechanisms({"t": g}, {"A": a, "all": everywhere, "A_again": a.clone()})
    assert found["A"].members == found["A_again"].members == (("t", 0), ("t", 1))
    assert found["A"].shared == 2 and not found["all"].matched
    only_a = match_mechanisms({"t": g}, {"A": a, "all": everywhere, "A_again": a.clone()}, owners={"A": {"t"}})
    assert only_a["A"].shared == 0 and not only_a["A_again"].matched
    assert only_a["all"].members == ()  # not an owner; and A's subcomponents are not active everywhere


def test_shuffled_importances_give_low_precision_and_no_members():
    a, _, _ = masks(shape=(40, 10))
    shuffled = a.flatten()[torch.randperm(a.numel(), generator=torch.Generator().manual_seed(1))].view_as(a)
    g = shuffled.float()[..., None]
    assert not match_mechanisms({"t": g}, {"A": a})["A"].matched
    loose = match_mechanisms({"t": g}, {"A": a}, precision_bar=0.0)["A"]
    assert loose.members == (("t", 0),) and loose.precision < 0.5 and loose.recall < 0.5
    assert unmatched({"t": g}, {"A": a}, match_mechanisms({"t": g}, {"A": a})) == [("t", 0)]


def test_positions_outside_where_are_not_scored():
    a, _, everywhere = masks()
    g = torch.ones(8, 6, 1)
    g[:, 0] = 0.0  # off at the first position, which is not scored: on everywhere that counts
    where = torch.ones(8, 6, dtype=torch.bool)
    where[:, 0] = False
    assert match_mechanisms({"t": g}, {"all": everywhere}, where=where)["all"].members == (("t", 0),)
    assert match_mechanisms({"t": g}, {"A": a & where}, where=where)["A"].members == ()


def test_importances_of_a_position_embedding_spread_over_the_batch():
    late = torch.zeros(8, 6, dtype=torch.bool)
    late[:, 3:] = True
    g = torch.zeros(6, 2)  # (T, C): one importance per position, as for pos_embed, which reads positions (T,)
    g[3:, 0] = 1.0
    found = match_mechanisms({"pos": g}, {"late": late, "early": ~late})
    assert found["late"].members == (("pos", 0),) and found["late"].recall == 1.0 and not found["early"].matched
    with pytest.raises(ParamLensError, match="broadcasting"):
        match_mechanisms({"pos": torch.zeros(5, 2)}, {"late": late})


@pytest.mark.parametrize("case", ["no mechanisms", "float mask", "masks of two shapes", "importance shape",
                                  "where shape"])
def test_bad_matching_inputs_raise_one_line_errors(case):
    a, b, _ = masks()
    g = {"t": torch.zeros(8, 6, 2)}
    calls = {
        "no mechanisms": lambda: match_mechanisms(g, {}),
        "float mask": lambda: match_mechanisms(g, {"A": a.float()}),
        "masks of two shapes": lambda: match_mechanisms(g, {"A": a, "B": b[:4]}),
        "importance shape": lambda: match_mechanisms({"t": torch.zeros(8, 5, 2)}, {"A": a}),
        "where shape": lambda: match_mechanisms(g, {"A": a}, where=a[:, :3]),
    }
    with pytest.raises(ParamLensError) as e:
        calls[case]()
    assert "\n" not in str(e.value)


def test_ablation_masks_zero_only_the_members():
    m = ablation_masks({"t": (2, 3, 4), "u": (2, 3, 2)}, [("t", 1), ("t", 3)])
    assert m["u"] is None and m["t"].shape == (2, 3, 4)
    assert torch.equal(m["t"][0, 0], torch.tensor([1.0, 0.0, 1.0, 0.0]))
    for bad in ([("v", 0)], [("t", 4)]):
        with pytest.raises(ParamLensError):
            ablation_masks({"t": (2, 3, 4)}, bad)


# --- an SPD built exactly from a compiled program's ground truth ---------------------------------------------------


def exact_spd(model, truth):
    """An SPD whose subcomponents are the SVD pieces of every mechanism's part of every weight, and
    ``{target: (C,) long}``: the mechanism index of each subcomponent (-1: unused, zero)."""
    targets = select(model, "*")
    pieces = {}
    for t in targets:
        pieces[t.name] = []
        for k, part in enumerate(truth.matrices[t.name].double()):
            U, S, Vh = torch.linalg.svd(part, full_matrices=False)
            pieces[t.name] += [(k, S[i] * U[:, i], Vh[i]) for i in range(int((S > 1e-9 * S.max()).sum()))]
    spd = SPDModel(targets, max(len(p) for p in pieces.values()))
    owner = {}
    with torch.no_grad():
        for t in targets:
            comp = spd.component(t)
            comp.U.zero_()
            comp.V.zero_()
            owner[t.name] = torch.full((comp.C,), -1)
            for c, (k, u, v) in enumerate(pieces[t.name]):
                comp.U[c], comp.V[:, c], owner[t.name][c] = u.float(), v.float(), k
    return spd, targets, owner


class Planted:
    """SPD's weights and maps; each subcomponent's importance is 1 exactly where its mechanism is needed."""

    outputs_along = staticmethod(SPDMethod.outputs_along)

    def __init__(self, truth, owner):
        self.truth, self.owner = truth, owner

    def importance(self, dec, model, x, inputs):
        needed = torch.stack([self.truth.needed(m.name, x) for m in self.truth.mechanisms], -1).float()
        return {t: needed[..., k.clamp(min=0)] * (k >= 0) for t, k in self.owner.items()}


@pytest.fixture(scope="module")
def program():
    model = frac_prevs_model()
    truth = model.ground_truth()
    spd, targets, owner = exact_spd(model, truth)
    return model, truth, spd, targets, owner, program_task(truth, model.inputs(5))


def test_an_exact_decomposition_of_a_program_scores_as_its_mechanisms(program):
    model, truth, spd, targets, owner, task = program
    scores = score_mechanisms(Planted(truth, owner), spd, model, targets, task)
    chance = 1 / len(model.output_values)
    for k, name in enumerate(task.names):
        want = tuple(sorted((t, c) for t, ks in owner.items() for c in (ks == k).nonzero().flatten().tolist()))
        match, weights = scores.matches[name], scores.weights[name]
        assert match.members == want and (match.precision, match.recall, match.shared) == (1.0, 1.0, 0), name
        assert abs(weights.cosine - 1) < 1e-5 and abs(weights.norm_ratio - 1) < 1e-4, (name, weights)
        assert scores.ablation.intact[name] == 1.0
        # an operation's needed outputs are those its knock-out changes; embeddings are marked needed everywhere
        operation = truth.mechanisms[k].sop is not None
        assert scores.ablation.ablated[name][name] <= (chance if operation else 0.5), (name, scores.ablation.ablated)
    # is_token and the prefix mean are needed only after an "a": the other outputs survive their ablation
    for name in ("L0MLP:is_token", "L1H0"):
        assert scores.ablation.spared_intact[name] == scores.ablation.spared[name] == 1.0
    assert math.isnan(scores.ablation.spared["embed"])  # every output needs the embedding
    assert scores.unmatched == [] and scores.ablation.chance == chance
    rows = scores.rows()
    assert [r["mechanism"] for r in rows] == list(task.names) and rows[0]["members"] == 4
    assert "L1MLP:frac_prevs" in scores.summary() and "0 alive subcomponents unmatched" in scores.summary()


def test_without_owners_mechanisms_needed_at_the_same_positions_share_members(program):
    model, truth, spd, targets, owner, task = program
    scores = score_mechanisms(Planted(truth, owner), spd, model, targets, task, own_targets_only=False)
    is_token, mean = scores.matches["L0MLP:is_token"], scores.matches["L1H0"]
    assert is_token.members == mean.members and is_token.shared == len(is_token.members) > 0
    # is_token's weights, in two targets L1H0 does not own, count as cosine 0 there: 4 of 6 targets match
    assert abs(scores.weights["L1H0"].cosine - 4 / 6) < 1e-5 and abs(scores.weights["L1H0"].norm_ratio - 1) < 1e-4


def test_wrong_or_missing_members_score_low(program):
    model, _, spd, targets, owner, task = program
    own = {name: [(t, c) for t, ks in owner.items() for c in (ks == k).nonzero().flatten().tolist()]
           for k, name in enumerate(task.names)}
    swapped = {**own, "L1H0": own["L0MLP:is_token"], "L0MLP:is_token": []}
    w = weight_match(SPDMethod, spd, targets, swapped, task.matrices, task.names)
    assert (w["L1H0"].cosine, w["L1H0"].norm_ratio) == (0.0, 0.0)  # other weights, on other targets
    assert (w["L0MLP:is_token"].cosine, w["L0MLP:is_token"].norm_ratio) == (0.0, 0.0)
    ab = ablation_accuracies(SPDMethod, spd, model, targets, task.x, swapped, task.accuracy)
    assert ab.ablated["L0MLP:is_token"] == ab.intact == {n: 1.0 for n in task.names}  # nothing ablated
    assert ab.ablated["L1H0"]["L1H0"] < 0.5 and math.isnan(ab.chance) and ab.spared == {}


def test_an_spd_at_initialisation_is_scored_with_its_own_importances(program):
    model, _, _, targets, _, task = program
    torch.manual_seed(0)
    dec = SPDMethod.build(model, targets, SPDMethod.config(C=4, compile=False))
    scores = score_mechanisms(SPDMethod, dec, model, targets, task)
    assert [r["mechanism"] for r in scores.rows()] == list(task.names)
    for r in scores.rows():
        assert all(0 <= r[k] <= 1 for k in ("precision", "recall", "accuracy", "ablated")), r
        assert r["members"] or (r["precision"], r["recall"], r["cosine"], r["norm_ratio"]) == (0, 0, 0, 0), r
    claimed = {s for m in scores.matches.values() for s in m.members}
    assert not claimed & set(scores.unmatched) and len(scores.summary().splitlines()) == len(task.names) + 2


def test_component_matrices_of_spd_and_apd(program):
    model, _, spd, targets, _, _ = program
    t = targets[2]
    assert torch.allclose(component_matrices(SPDMethod, spd, t), spd.component(t).matrices().detach())
    torch.manual_seed(0)
    apd = APDMethod.build(model, targets, APDConfig(C=3, rank=2))
    assert torch.allclose(component_matrices(APDMethod, apd, t).sum(0), apd.weight(t).detach(), atol=1e-6)


def test_program_accuracy_decodes_like_the_model(program):
    model, _, _, _, _, task = program
    logits = model(task.x)
    assert task.accuracy(logits, "L1H0") == 1.0
    assert task.accuracy(torch.zeros_like(logits), "embed") < 0.1  # no value decoded where one is due
    with pytest.raises(ParamLensError):
        task.accuracy(logits, "L9H9")


# --- the induction model ------------------------------------------------------------------------------------------


def test_induction_exercised_marks_where_each_head_is_used():
    tokens = torch.tensor([[9, 1, 2, 3, 1, 2, 3]])  # first copy at 1..3, second at 4..6; induction at 4, 5
    marked = induction_exercised(tokens)
    assert marked["previous_token"][0].nonzero().flatten().tolist() == [1, 2, 3]
    assert marked["induction"][0].nonzero().flatten().tolist() == [2, 3, 4, 5]
    right = torch.nn.functional.one_hot(tokens.roll(-1, dims=1), 10).float()
    acc = InductionAccuracy(tokens)
    assert acc(right, "induction") == 1.0 and acc(-right, "previous_token") == 0.0


def test_induction_task_covers_both_heads_and_refuses_inputs_without_repeats():
    cfg = InductionConfig(vocab_size=16, length=12, d_model=8, n_heads=2, min_segment=3)
    torch.manual_seed(0)
    model = InductionTransformer(cfg)
    tokens = model.source().sample(4, torch.Generator().manual_seed(0))
    task = induction_task(model, tokens, heads=(0, 1))
    assert task.names == MECHANISMS and len(task.matrices) == 8 and task.chance == 1 / 16
    assert all(task.exercised[n].shape == tokens.shape and task.exercised[n].any() for n in MECHANISMS)
    assert all(bool(task.exercised[n][:, 1:].all()) and not task.exercised[n][:, 0].any() for n in MECHANISMS)
    used = induction_task(model, tokens, heads=(0, 1), exercised="used")
    assert all(torch.equal(used.exercised[n], induction_exercised(tokens)[n]) for n in MECHANISMS)
    with pytest.raises(ParamLensError):
        induction_task(model, torch.arange(12).expand(2, 12), heads=(0, 1))
