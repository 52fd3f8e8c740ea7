import pytest
from typer.testing import CliRunner

from paramlens.cli import app
from paramlens.errors import ParamLensError
from paramlens.information.weights_info import WeightInformation
from paramlens.interaction.cli_run import InteractionSummary
from paramlens.interaction.degeneracy import Degeneracy


@pytest.mark.parametrize("command,result_type", [("interaction", InteractionSummary), ("degeneracy", Degeneracy),
                                                 ("information", WeightInformation)])
def test_commands_write_reports_on_the_built_in_model(command, result_type, tmp_path):
    extra = ["--steps", "20"] if command == "information" else []
    res = CliRunner().invoke(app, [command, "--p", "11", "--out", str(tmp_path), *extra])
    assert res.exit_code == 0, res.output
    folder = next(tmp_path.iterdir())
    assert (folder / "index.html").is_file()
    result_type.load(folder)


def test_interaction_basis_needs_fewer_edges_than_pca_and_neurons(tmp_path):
    res = CliRunner().invoke(app, ["interaction", "--p", "17", "--out", str(tmp_path)])
    rows = {r["basis"]: r for r in InteractionSummary.load(next(tmp_path.iterdir())).rows}
    assert rows["lib"]["edges needed"] < rows["pca"]["edges needed"] < rows["neuron"]["edges needed"], res.output


def test_other_models_are_a_clear_error():
    res = CliRunner().invoke(app, ["degeneracy", "gpt5"])
    assert isinstance(res.exception, ParamLensError) and "Python API" in str(res.exception)
