"""Known mechanisms of units: planted pieces inside a mechanism's block or along its read direction are named after
it, with the score the closed form gives."""

import pytest
import torch

from paramlens.components import Units
from paramlens.components.known import known_mechanisms, known_summary
from paramlens.core.weights import select
from paramlens.decompose.spd import SPDConfig, SPDMethod
from paramlens.models.toy.residual_mlp import ResidualMLP, ResidualMLPConfig


def _planted(model, names, C, pieces):
    """An SPD of ``names`` with ``pieces[(target, c)] = (U (d_out,), V (d_in,))`` and every other piece zero."""
    targets = select(model, names)
    spd = SPDMethod.build_empty(targets, SPDConfig(C=C))
    with torch.no_grad():
        for p in spd.parameters():
            p.zero_()
        for (name, c), (u, v) in pieces.items():
            comp = spd.component(next(t for t in targets if t.name == name))
            comp.U[c].copy_(u)
            comp.V[:, c].copy_(v)
    return targets, spd, Units.of(SPDMethod, targets, C)


def test_residual_mlp_units_along_an_embedding_direction_are_named_after_its_feature():
    model = ResidualMLP(ResidualMLPConfig(n_features=6, d_embed=20, d_mlp=4, seed=0))
    W_E = model.W_E.weight.detach()  # (d_embed, n_features), unit columns
    off_span = torch.linalg.svd(W_E, full_matrices=True).U[:, -1]  # orthogonal to every embedding direction
    u = torch.ones(4)
    pieces = {("layers.0.mlp_in", 0): (u, W_E[:, 3] + 5 * off_span),  # feature 3 plus a part no input reaches
              ("layers.0.mlp_in", 1): (u, W_E[:, 1] + W_E[:, 2])}  # two features at once: |cos| 1/sqrt(2) each
    targets, spd, units = _planted(model, ["layers.0.mlp_in"], 3, pieces)
    known = known_mechanisms(SPDMethod, spd, model, targets, units)
    assert known[0]["mechanism"] == "feature 3" and known[0]["by"] == "direction"
    assert known[0]["score"] == pytest.approx(1.0, abs=1e-4)
    cos = float(torch.nn.functional.cosine_similarity(W_E[:, 1], W_E[:, 1] + W_E[:, 2], dim=0))
    assert known[1]["mechanism"] in {"feature 1", "feature 2"} and known[1]["score"] == pytest.approx(abs(cos), 1e-3)
    assert known[2] is None  # an empty piece belongs to nothing


def _top(m):
    """``(u, v)``: the largest rank-one piece ``u v^T`` of ``m``."""
    svd = torch.linalg.svd(m)
    return svd.U[:, 0] * svd.S[0], svd.Vh[0]


def test_induction_units_inside_a_head_are_named_after_its_mechanism(induction_model):
    gt = induction_model.ground_truth()
    q0, o1 = gt.matrices["blocks.0.attn.q"][0], gt.matrices["blocks.1.attn.o"][1]
    u, v = _top(q0)
    rows = (q0 != 0).any(1)  # the head's rows of q
    mostly, barely = rows * 1.0 + 1.0, 2.0 - rows * 1.0  # squared share inside the block: 4/5 and 1/5 (equal halves)
    assert int(rows.sum()) * 2 == len(rows)
    pieces = {("blocks.0.attn.q", 0): (u, v), ("blocks.1.attn.o", 0): _top(o1), ("blocks.0.attn.q", 1): (mostly, v),
              ("blocks.0.attn.q", 2): (barely, v)}
    targets, spd, units = _planted(induction_model, ["blocks.0.attn.q", "blocks.1.attn.o"], 3, pieces)
    known = dict(zip(units.names, known_mechanisms(SPDMethod, spd, induction_model, targets, units)))
    assert known["blocks.0.attn.q:0"] == {"mechanism": "previous_token", "score": pytest.approx(1.0), "by": "block"}
    assert known["blocks.1.attn.o:0"]["mechanism"] == "induction"
    assert known["blocks.0.attn.q:1"] == {"mechanism": "previous_token", "score": pytest.approx(0.8), "by": "block"}
    assert known["blocks.0.attn.q:2"] is None  # a fifth of its weight in the head: below MIN_SCORE
    assert "previous_token: blocks.0.attn.q:0 (1.00)" in known_summary(list(known.values()), list(known))


def test_a_model_without_ground_truth_names_no_unit():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    targets, spd, units = _planted(model, ["0"], 2, {})
    assert known_mechanisms(SPDMethod, spd, model, targets, units) == [None, None]
