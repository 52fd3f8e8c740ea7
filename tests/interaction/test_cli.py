import pytest
from typer.testing import CliRunner

from paramlens.cli import app
from paramlens.errors import ParamLensError
from paramlens.information.weights_info import WeightInformation
from paramlens.interaction.degeneracy import Degeneracy
from paramlens.interaction.lm_summary import LMInteraction
from paramlens.interaction.modular import ModularInteraction


@pytest.mark.parametrize("command,result_type", [("interaction", ModularInteraction), ("degeneracy", Degeneracy),
                                                 ("information", WeightInformation)])
def test_commands_write_reports_on_the_built_in_model(command, result_type, tmp_path):
    extra = ["--steps", "20"] if command == "information" else []
    res = CliRunner().invoke(app, [command, "--p", "11", "--out", str(tmp_path), *extra])
    assert res.exit_code == 0, res.output
    folder = next(tmp_path.iterdir())
    assert (folder / "index.html").is_file()
    result = result_type.load(folder)
    if command == "degeneracy":  # the trained MLP is far from regular: its LLC is well below half its weights
        assert 0 < result.llc < 0.25 * result.n_weights, (result.llc, result.n_weights)


def test_interaction_basis_needs_fewer_edges_than_pca_and_neurons(tmp_path):
    res = CliRunner().invoke(app, ["interaction", "--p", "17", "--out", str(tmp_path)])
    rows = {r["basis"]: r for r in ModularInteraction.load(next(tmp_path.iterdir())).rows}
    assert rows["lib"]["edges needed"] < rows["pca"]["edges needed"] < rows["neuron"]["edges needed"], res.output


def test_unknown_models_are_a_clear_error():
    res = CliRunner().invoke(app, ["degeneracy", "gpt5"])
    assert isinstance(res.exception, ParamLensError)
    assert "no such file or folder, and not a known name" in str(res.exception)


def test_commands_read_a_language_models_residual_stream(lm_folder, tmp_path):
    runner = CliRunner()
    common = [str(lm_folder), "--tokens", "512", "--context", "16"]
    res = runner.invoke(app, ["interaction", *common, "--top", "4", "--sources", "2", "--out", str(tmp_path / "i")])
    assert res.exit_code == 0, res.output
    r = LMInteraction.load(next((tmp_path / "i").iterdir()))
    assert set(r.curves) == {"lib", "pca"} and r.edges["lib/0"].shape == (4, 4) and len(r.importance["lib"]) == 3
    assert all(abs(c[-1] - r.full_loss) < 1e-3 for curves in r.curves.values() for c in curves)  # all kept: intact
    res = runner.invoke(app, ["degeneracy", *common, "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    d = Degeneracy.load(next((tmp_path / "d").iterdir()))
    assert d.widths == [32, 32, 32] and d.unit_layers == [0, 1]
    res = runner.invoke(app, ["information", *common, "--steps", "5", "--targets", "model.layers.1.mlp.*",
                              "--out", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    w = WeightInformation.load(next((tmp_path / "w").iterdir()))
    assert sorted(w.info) == [f"model.layers.1.mlp.{m}_proj" for m in ("down", "gate", "up")]


def test_shuffled_labels_only_mean_something_for_the_built_in_model(lm_folder):
    res = CliRunner().invoke(app, ["information", str(lm_folder), "--shuffled"])
    assert isinstance(res.exception, ParamLensError) and "built-in" in str(res.exception)
