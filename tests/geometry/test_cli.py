from typer.testing import CliRunner

from paramlens.cli import app
from paramlens.errors import ParamLensError
from paramlens.geometry.layer_updates import LayerGeometry
from paramlens.geometry.rotation import Rotation


def test_geometry_and_rotation_run_on_a_hugging_face_folder(lm_folder, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["geometry", str(lm_folder), "--tokens", "768", "--context", "16", "--classes",
                              "ridge,diagonal", "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    g = LayerGeometry.load(next((tmp_path / "g").iterdir()))
    assert len(g.kl) == 2 and {r["class"] for r in g.layers} == {"ridge", "diagonal"}
    res = runner.invoke(app, ["rotation", str(lm_folder), "--tokens", "768", "--context", "16", "--out",
                              str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    r = Rotation.load(next((tmp_path / "r").iterdir()) / "rotation_0")
    assert len(r.to_input) == 3 and r.to_input[0] < 1.0  # layer 0 is the token embedding itself
    assert r.to_output[-1] < 1.0  # the last layer is the final state


def test_unknown_model_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["rotation", str(tmp_path / "nope")])
    assert isinstance(res.exception, ParamLensError)
    assert "no such file or folder, and not a known name" in str(res.exception)
