"""Harvest statistics against values computed by hand on a planted decomposition of a tiny language model."""

import dataclasses
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paramlens.components import Harvest, HarvestConfig, Units, harvest_model
from paramlens.components.mechanisms import find_mechanisms
from paramlens.core.weights import select
from paramlens.errors import Interrupted

V, D, T = 6, 3, 5


class TinyLM(nn.Module):
    """Token ids ``(B, T)`` -> logits ``(B, T, V)`` through an embedding and one linear map."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(V, D)
        self.out = nn.Linear(D, V, bias=False)

    def forward(self, x):
        return self.out(self.embed(x))


class Planted:
    """A method stub with importances fixed by the tokens: ``out:c`` fires (0.9) exactly on token ``c``; ``embed:c``
    has importance ``(token + 1) / 10`` (fires above 0.1 unless the token is 0) for every ``c``. Unit ``out:c`` is
    row ``c`` of the output matrix, ``embed:c`` nothing."""

    name = "spd"

    @staticmethod
    def importance(dec, model, x, inputs):
        return {"embed": ((x.float() + 1) / 10)[..., None].expand(*x.shape, V),
                "out": F.one_hot(x, V).float() * 0.9}

    @staticmethod
    def read_directions(dec, target):
        return torch.zeros(1, V)

    @staticmethod
    def component_matrix(dec, target, index):
        m = torch.zeros(target.shape)
        if target.name == "out":
            m[index] = target.matrix(dec).detach()[index]
        return m


@pytest.fixture(scope="module")
def planted():
    model = TinyLM()
    windows = torch.randint(0, V, (7, T), generator=torch.Generator().manual_seed(3))
    windows[0, 2] = 4  # token 4 appears, so out:4 fires
    targets = select(model, ["embed", "out"])
    cfg = HarvestConfig(top_k=3, context=1, batch_size=2, effect_contexts=2, top_tokens=2)
    return model, windows, targets, harvest_model(Planted, model, model, targets, windows, cfg, progress=False)


def test_density_mean_importance_and_token_counts_are_the_hand_counted_ones(planted):
    model, windows, targets, h = planted
    flat = windows.reshape(-1)
    units = Units.of(Planted, targets, V)
    assert h.units == units.names and h.n_positions == flat.numel()
    for c in range(V):
        out = units.index(f"out:{c}")
        assert float(h.density[out]) == pytest.approx(float((flat == c).float().mean()))
        assert float(h.mean_importance[out]) == pytest.approx(0.9 * float((flat == c).float().mean()))
        tokens = {row["token"]: row for row in h.top_tokens(out)}
        if (flat == c).any():
            assert list(tokens) == [c] and tokens[c]["fires"] == int((flat == c).sum()) and tokens[c]["rate"] == 1.0
        emb = units.index(f"embed:{c}")
        assert float(h.density[emb]) == pytest.approx(float((flat > 0).float().mean()))
        assert float(h.mean_importance[emb]) == pytest.approx(float(((flat + 1) / 10).mean()))
    assert int(h.token_counts.sum()) == flat.numel()


def test_top_positions_contexts_and_coactivation(planted):
    model, windows, targets, h = planted
    flat = windows.reshape(-1)
    units = Units.of(Planted, targets, V)
    emb = units.index("embed:0")
    best = ((flat + 1) / 10).topk(3)
    assert torch.allclose(h.top_values[emb], best.values)
    for j, pos in enumerate(h.top_positions[emb].tolist()):
        assert int(flat[pos]) == int(flat[best.indices[j]])  # ties may order positions differently
        w, t = divmod(pos, T)
        want = [int(windows[w, t + d]) if 0 <= t + d < T else -1 for d in (-1, 0, 1)]
        assert h.contexts[emb, j].tolist() == want
        shown = h.context_importance[emb, j]
        for d, tok in zip((-1, 0, 1), want):
            assert (math.isnan(shown[d + 1]) if tok < 0 else float(shown[d + 1]) == pytest.approx((tok + 1) / 10))
    by_unit = {f"out:{c}": F.one_hot(flat, V)[:, c] * 0.9 > 0.1 for c in range(V)}
    by_unit.update({f"embed:{c}": (flat + 1) / 10 > 0.1 for c in range(V)})
    fired = torch.stack([by_unit[name] for name in units.names], dim=1).long()
    want = fired.T @ fired
    assert torch.equal(h.coactivation, want)


def test_effect_is_the_kl_of_ablating_the_unit_at_its_top_positions(planted):
    """Unit ``out:c`` is row ``c`` of the output matrix: ablated, logit ``c`` is 0; the effect is the mean KL at the
    unit's first two top positions, and the token whose log-probability moves most is ``c``."""
    model, windows, targets, h = planted
    units = Units.of(Planted, targets, V)
    with torch.no_grad():
        logits = model(windows).reshape(-1, V)
    for c in range(V):
        s = units.index(f"out:{c}")
        pos = h.top_positions[s, :2][h.top_values[s, :2] > 0.1]
        if not len(pos):
            assert math.isnan(float(h.effect_size[s]))
            continue
        z = logits[pos]
        zero = z.clone()
        zero[:, c] = 0
        logp, logq = F.log_softmax(z, -1), F.log_softmax(zero, -1)
        assert float(h.effect_size[s]) == pytest.approx(float((logp.exp() * (logp - logq)).sum(-1).mean()), rel=1e-5)
        change = (logq - logp).mean(0)
        assert int(h.promoted[s, 0] if change[c] < 0 else h.suppressed[s, 0]) == c
        emb = units.index(f"embed:{c}")
        assert float(h.effect_size[emb]) == pytest.approx(0.0, abs=1e-7)


class Interrupting(Planted):
    """:class:`Planted` that presses Ctrl-C during its third batch."""

    calls = 0

    @classmethod
    def importance(cls, dec, model, x, inputs):
        cls.calls += 1
        if cls.calls == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return Planted.importance(dec, model, x, inputs)


def test_an_interrupted_pass_resumes_to_the_same_saved_harvest(planted, tmp_path):
    model, windows, targets, h = planted
    cfg = HarvestConfig(top_k=3, context=1, batch_size=2, effect_contexts=2, top_tokens=2)
    with pytest.raises(Interrupted, match="interrupted after step 3 of 4"):
        harvest_model(Interrupting, model, model, targets, windows, cfg, folder=tmp_path, progress=False)
    assert not (tmp_path / "result.json").exists()
    harvest_model(Planted, model, model, targets, windows, cfg, folder=tmp_path, resume=True, progress=False)
    loaded = Harvest.load(tmp_path)
    assert loaded.units == h.units and loaded.n_positions == h.n_positions
    for name in ("density", "mean_importance", "top_positions", "contexts", "context_importance", "token_fires",
                 "coactivation", "effect_size", "promoted"):
        assert torch.equal(torch.nan_to_num(getattr(loaded, name)), torch.nan_to_num(getattr(h, name))), name


def test_mechanisms_are_the_planted_co_firing_blocks_with_their_joint_effect(planted):
    """A harvest whose co-activation is planted as two blocks (out:1 with out:2, out:3 with out:4; every other unit
    silent) gives those two mechanisms; each one's effect is the KL of ablating both rows of the output matrix at
    the members' first two top positions."""
    model, windows, targets, h = planted
    units = Units.of(Planted, targets, V)
    co = torch.zeros_like(h.coactivation)
    density = torch.zeros_like(h.density)
    for block in (("out:1", "out:2"), ("out:3", "out:4")):
        idx = torch.tensor([units.index(u) for u in block])
        co[idx[:, None], idx[None, :]] = 5
        density[idx] = torch.tensor([0.2, 0.1], dtype=density.dtype)
    planted_h = dataclasses.replace(h, coactivation=co, density=density)
    found = find_mechanisms(Planted, model, model, targets, units, planted_h, windows)
    assert sorted(sorted(g["members"]) for g in found.groups) == [["out:1", "out:2"], ["out:3", "out:4"]]
    with torch.no_grad():
        logits = model(windows).reshape(-1, V)
    for g in found.groups:
        rows = [int(m.split(":")[1]) for m in g["members"]]
        assert g["density"] == pytest.approx(0.15) and g["members"][0].endswith(str(min(rows)))  # densest first
        pos = torch.cat([h.top_positions[units.index(m), :2][h.top_values[units.index(m), :2] > 0.1]
                         for m in g["members"]]).unique()
        z = logits[pos]
        cut = z.clone()
        cut[:, rows] = 0
        logp, logq = F.log_softmax(z, -1), F.log_softmax(cut, -1)
        assert g["effect"] == pytest.approx(float((logp.exp() * (logp - logq)).sum(-1).mean()), rel=1e-5)
