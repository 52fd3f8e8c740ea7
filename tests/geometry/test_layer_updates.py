import pytest
import torch
from pydantic import ValidationError

from paramlens.errors import ParamLensError
from paramlens.geometry.layer_updates import GeometryConfig, LayerGeometry, layer_geometry
from tests.geometry.toy_lm import PreviousToken, Tokenwise, ToyLM

D = 16


@pytest.fixture(scope="module")
def result():
    g = torch.Generator().manual_seed(0)
    model = ToyLM([Tokenwise(0.3 * torch.randn(D, D, generator=g) / D**0.5),
                   PreviousToken(0.5 * torch.randn(D, D, generator=g) / D**0.5)], D).eval()
    windows = torch.randint(0, 40, (128, 32), generator=g)
    return layer_geometry(model, windows, GeometryConfig(mlp_steps=200, top_k=4), progress=False)


def test_a_tokenwise_update_is_recovered_exactly(result):
    for cls in ("ridge", "lowrank", "mlp"):
        row = result.rows(cls)[0]
        assert row["cos_DT"] > 0.99 and row["explained_variance"] > 0.98, (cls, row)
    ridge = result.rows("ridge")[0]
    assert ridge["cos_DT"] > 0.999999 and ridge["angle_DT"] < 0.1
    assert result.kl[0] < 1e-6  # replacing an exactly tokenwise update changes (almost) nothing


def test_an_update_that_reads_the_previous_token_is_not_tokenwise(result):
    for cls in result.classes:
        row = result.rows(cls)[1]
        assert row["explained_variance"] < 0.1 and row["cos_DR"] > 0.9, (cls, row)
    assert result.kl[1] > 1e3 * max(result.kl[0], 1e-12)
    assert result.spearman > 0.5  # the error of T predicts the output change across layers and tokens


def test_result_round_trips_and_draws(result, tmp_path):
    result.save(tmp_path)
    back = LayerGeometry.load(tmp_path)
    assert back.layers == result.layers and back.summary() == result.summary()
    assert (tmp_path / result.figures(tmp_path)[0][0]).is_file()


def test_bad_settings_are_clear_errors():
    model = ToyLM([Tokenwise(torch.zeros(D, D))], D)
    with pytest.raises(ValidationError, match="primary"):
        GeometryConfig(classes=["ridge"], primary="mlp")
    with pytest.raises(ValidationError, match="twice"):
        GeometryConfig(classes=["ridge", "ridge"])
    with pytest.raises(ParamLensError, match="nothing to fit"):
        layer_geometry(model, torch.zeros(1, 32, dtype=torch.long), progress=False)
    with pytest.raises(ParamLensError, match=r"from 12 tokens of a 16-dimensional residual stream"):
        layer_geometry(model, torch.zeros(4, 4, dtype=torch.long), progress=False)  # 3 windows of 4 kept in


def test_a_real_encoder_from_its_package_is_analysed_without_the_kl_step():
    from paramlens.core.resolve import resolve
    from paramlens.core.text import TextOptions, lm_windows

    loaded = resolve("minilm")
    windows = lm_windows(loaded, TextOptions(tokens=1024, context=64))
    tokenizer = loaded.tokenizer
    assert (windows[:, 0] == tokenizer.cls_token_id).all() and (windows[:, -1] == tokenizer.sep_token_id).all()
    r = layer_geometry(loaded.module, windows, GeometryConfig(classes=["ridge"], top_k=4), name=loaded.name,
                       progress=False)
    assert len(r.rows("ridge")) == 6 and all(0 < row["cos_DT"] <= 1 for row in r.rows("ridge"))
    assert all(v != v for v in r.kl) and "encoder" in r.summary()
