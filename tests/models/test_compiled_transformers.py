from fractions import Fraction

import pytest
import torch

from paramlens.core.weights import run_with, select
from paramlens.errors import ParamLensError
from paramlens.models.transformers.compile import compile_program
from paramlens.models.transformers.evaluate import MIXED, evaluate
from paramlens.models.transformers.programs import PROGRAMS
from paramlens.models.transformers.rasp import (
    EQ,
    TRUE,
    Aggregate,
    Map,
    Predicate,
    Select,
    SelectorWidth,
    SequenceMap,
    Tokens,
    indices,
    tokens,
    topological,
)


def frac_prevs(seq):
    return [Fraction(seq[: i + 1].count("a"), i + 1) for i in range(len(seq))]


# plain Python, independent of the RASP programs
ORACLES = {"reverse": lambda s: s[::-1], "histogram": lambda s: [s.count(t) for t in s], "sort": sorted,
           "frac_prevs": frac_prevs}

PREVIOUS = Predicate("is previous of", lambda k, q: k == q - 1)
NEXT = Predicate("is next of", lambda k, q: k == q + 1)


def neighbours_model():
    """Two heads and two tables side by side: ``out[i] = upper(t[i]) + t[i - 1] + t[i + 1]`` (None at the ends)."""
    upper = Map(str.upper, tokens, name="upper")
    prev = Aggregate(Select(indices, indices, PREVIOUS), tokens, name="prev")
    nxt = Aggregate(Select(indices, indices, NEXT), tokens, name="next")
    around = SequenceMap(lambda a, b: a + b, prev, nxt, name="around")
    return compile_program(SequenceMap(lambda u, s: u + s, upper, around, name="out"), ("a", "b"), 4)


def neighbours(s):
    return [None if i in (0, len(s) - 1) else s[i].upper() + s[i - 1] + s[i + 1] for i in range(len(s))]


@pytest.fixture(scope="module")
def models():
    built = {name: make() for name, make in PROGRAMS.items()}
    built["neighbours"] = neighbours_model()
    return built


ORACLES["neighbours"] = lambda s: neighbours(list(s))
NAMES = [*PROGRAMS, "neighbours"]


def domain(model):
    """Every input, one ids tensor ``(n, 1 + length)`` per length."""
    return [model.inputs(n) for n in range(1, model.max_len + 1)]


@pytest.mark.parametrize("name", NAMES)
def test_compiled_model_computes_its_program_on_every_input(models, name):
    model, oracle = models[name], ORACLES[name]
    seen = 0
    for ids in domain(model):
        want = [oracle(list(s)) for s in model.tokens_of(ids)]
        assert model.predict(ids) == want
        assert [r[model.program] for r in model.reference(ids)] == want
        logits = model(ids)[:, 1:]  # exact: one-hot of the right value, zeros where there is none
        index = {v: j for j, v in enumerate(model.output_values)}
        one_hot = torch.zeros_like(logits)
        for b, row in enumerate(want):
            for i, v in enumerate(row):
                if v is not None:
                    one_hot[b, i, index[v]] = 1.0
        assert (logits - one_hot).abs().max() < 1e-4
        seen += len(ids)
    assert seen == sum(len(model.vocab) ** n for n in range(1, model.max_len + 1))


@pytest.mark.parametrize("name", NAMES)
def test_ground_truth_parts_sum_to_every_weight_and_stay_in_their_subspaces(models, name):
    model = models[name]
    gt = model.ground_truth()
    targets = select(model, "*")
    assert set(gt.matrices) == {t.name for t in targets} and not gt.input_directions
    for t in targets:
        parts = gt.matrices[t.name]
        assert parts.shape == (len(gt.mechanisms), *t.shape)
        assert torch.equal(parts.sum(0), t.matrix(model))
    for k, m in enumerate(gt.mechanisms):
        assert gt.index(m.name) == k and m.description
        if m.sop is None:
            continue
        dims = torch.zeros(model.layout.d_model, dtype=torch.bool)
        for var in m.reads:
            dims[model.layout[var].span] = True
        for b in m.blocks:
            part = gt.matrices[b.target][k]
            assert part.abs().sum() > 0
            if b.target.endswith(("W_O", "W_out")):  # column-owned: writes only its variable
                assert torch.equal(part.abs().sum(1).nonzero().flatten().unique(),
                                   torch.arange(model.layout.d_model)[model.layout[m.writes].span])
            else:  # row-owned: reads only the variables it names
                assert not part[:, ~dims].any()


def downstream(program, sop):
    """SOps that read ``sop``, directly or not, and ``sop`` itself."""
    found = {id(sop)}
    for s in topological(program):
        if any(id(c) in found for c in s.children()):
            found.add(id(s))
    return found


def check_ablation(model, gt, mechanism, ids, counts):
    """Zero the mechanism's blocks: every variable equals the program with that operation knocked out, variables
    the operation does not feed stay intact, and exactly the needed outputs break."""
    with torch.no_grad():
        resid = run_with(model, gt.without(mechanism.name), ids, return_residual=True)
    intact, broken = model.reference(ids), model.reference(ids, knockout=[mechanism.sop])
    below = downstream(model.program, mechanism.sop)
    for sop in model.labels:
        got = model.read(resid, sop)
        for b, row in enumerate(got):
            want = broken[b][sop]
            assert all(w is MIXED or (abs(g - w) < 1e-4 if sop.numerical else g == w) for g, w in zip(row, want))
            if id(sop) not in below:
                assert broken[b][sop] == intact[b][sop]
            else:
                counts["changed"] += broken[b][sop] != intact[b][sop]
    needed = gt.needed(mechanism.name, ids)[:, 1:]
    right = torch.tensor([[g == w for g, w in zip(g_row, r[model.program])]
                          for g_row, r in zip(model.read(resid, model.program), intact)])
    assert right[~needed].all()
    counts["needed"] += int(needed.sum())
    counts["right_where_needed"] += int(right[needed].sum())


@pytest.mark.parametrize("name", NAMES)
def test_ablating_a_mechanism_breaks_exactly_the_outputs_that_need_it(models, name):
    model = models[name]
    gt = model.ground_truth()
    operations = [m for m in gt.mechanisms if m.sop is not None]
    assert len(operations) >= 2
    chance = 1 / len(model.output_values)
    for m in operations:
        counts = {"changed": 0, "needed": 0, "right_where_needed": 0}
        for ids in domain(model):
            check_ablation(model, gt, m, ids, counts)
        assert counts["changed"] > 0 and counts["needed"] > 0, m.name
        assert counts["right_where_needed"] / counts["needed"] <= chance, m.name


def test_parallel_mechanisms_are_needed_at_different_positions(models):
    model = models["neighbours"]
    gt = model.ground_truth()
    assert model.shape.n_heads == 2 and {m.name for m in gt.mechanisms} >= {"L0H0", "L0H1", "L0MLP:upper"}
    ids = model.inputs(4)
    for name in ("L0H0", "L0H1", "L0MLP:around"):  # only the middle positions have both neighbours
        assert torch.equal(gt.needed(name, ids)[:, 1:], torch.tensor([False, True, True, False]).expand(16, 4))
    heads = [m for m in gt.mechanisms if m.kind == "attention"]
    assert [m.writes for m in heads] == ["prev", "next"]
    with torch.no_grad():  # the previous-token head gone: "next" and "upper" are still right everywhere
        resid = run_with(model, gt.without("L0H0"), ids, return_residual=True)
    seqs = model.tokens_of(ids)
    assert model.read(resid, "next") == [[*s[1:], None] for s in seqs]
    assert model.read(resid, "upper") == [[t.upper() for t in s] for s in seqs]
    assert model.read(resid, "prev") == [[None] * 4 for _ in seqs]


def test_needed_positions_follow_the_input_in_frac_prevs(models):
    model = models["frac_prevs"]
    gt = model.ground_truth()
    ids = model.encode([list("bbab"), list("abcc"), list("cccc")])
    want = torch.tensor([[False, False, True, True], [True, True, True, True], [False] * 4])
    for name in ("L0MLP:is_token", "L1H0"):  # a prefix without "a" gives 0 whatever these do
        assert torch.equal(gt.needed(name, ids)[:, 1:], want)
    assert gt.needed("L1MLP:frac_prevs", ids)[:, 1:].all() and not gt.needed("embed", ids)[:, 0].any()


def test_compiled_model_runs_with_per_example_weights(models):
    model = models["histogram"]
    gt = model.ground_truth()
    ids = model.inputs(3)
    W = gt.matrices["blocks.0.mlp.W_in"].sum(0)
    out = run_with(model, {"blocks.0.mlp.W_in": W.expand(len(ids), *W.shape)}, ids, batched=True)
    assert torch.allclose(out, model(ids))


def one_line(error):
    assert "\n" not in str(error.value)


BAD_PROGRAMS = {
    "categorical aggregate of a number": lambda: Aggregate(Select(tokens, tokens, EQ),
                                                           Map(lambda t: 1, tokens, numerical=True)),
    "numerical aggregate of a category": lambda: Aggregate(Select(tokens, tokens, EQ), tokens, numerical=True),
    "mean of non 0/1 values": lambda: Aggregate(Select(tokens, tokens, EQ), Map(lambda t: 2, tokens, numerical=True),
                                                numerical=True),
    "number to number map": lambda: Map(lambda x: x, Map(lambda t: 1, tokens, numerical=True), numerical=True),
    "sequence map of a number": lambda: SequenceMap(lambda a, b: a, Map(lambda t: 1, tokens, numerical=True), tokens),
    "selector on numbers": lambda: SelectorWidth(Select(Map(lambda t: 1, tokens, numerical=True), tokens, EQ)),
    "repeated names": lambda: SequenceMap(lambda a, b: a, Map(str, tokens, name="x"), Map(repr, tokens, name="x")),
    "reserved name": lambda: Map(str, tokens, name="bos"),
    "failing map": lambda: Map(lambda t: 1 // 0, tokens),
    "unhashable values": lambda: Map(lambda t: [t], tokens),
    "infinite number": lambda: Map(lambda t: float("inf"), tokens, numerical=True),
    "own tokens": lambda: Map(str, Tokens("tokens2")),
    "not an sop": lambda: Map(str, "tokens"),
    "not a predicate": lambda: Aggregate(Select(tokens, tokens, lambda k, q: True), tokens),
    "not a selector": lambda: SelectorWidth(tokens),
}


@pytest.mark.parametrize("case", BAD_PROGRAMS)
def test_bad_programs_raise_one_line_errors(case):
    with pytest.raises(ParamLensError) as e:
        compile_program(BAD_PROGRAMS[case](), ("a", "b"), 3)
    one_line(e)


AB = ("a", "b")


@pytest.mark.parametrize("vocab, max_len, coldness", [((), 3, 100), ("ab", 3, 100), (AB, 0, 100), (("a", "a"), 3, 100),
                                                      (AB, 99, 100), (AB, 3, 1.0), ([None, 1], 3, 100), (AB, 2.5, 100)])
def test_bad_domains_raise_one_line_errors(vocab, max_len, coldness):
    with pytest.raises(ParamLensError) as e:
        compile_program(Map(str, tokens), vocab, max_len, coldness=coldness)
    one_line(e)


BAD_INPUTS = {
    "unknown token": lambda model: model.encode([["a", "z"]]),
    "ragged batch": lambda model: model.encode([["a"], ["a", "b"]]),
    "too long": lambda model: model(torch.zeros(1, 9, dtype=torch.long)),
    "float ids": lambda model: model(torch.zeros(1, 3)),
    "id out of range": lambda model: model(torch.tensor([[0, 7]])),
    "no BOS": lambda model: model.predict(torch.tensor([[1, 2]])),
    "BOS inside": lambda model: model.tokens_of(torch.tensor([[0, 1, 0]])),
    "BOS alone": lambda model: model(torch.tensor([[0]])),
    "empty length": lambda model: model.inputs(0),
    "unknown mechanism": lambda model: model.ground_truth().index("L9H9"),
    "empty sequence": lambda model: evaluate(model.program, [], 5, model.vocab),
    "token outside the vocabulary": lambda model: evaluate(model.program, ["z"], 5, model.vocab),
    "aggregate of several values": lambda model: evaluate(Aggregate(Select(tokens, tokens, TRUE), tokens), ["a", "b"],
                                                          3, AB),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_raise_one_line_errors(models, case):
    with pytest.raises(ParamLensError) as e:
        BAD_INPUTS[case](models["reverse"])
    one_line(e)
