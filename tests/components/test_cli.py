"""paramlens components on decompose run folders: harvest, reuse, one-line errors, and edits every command loads."""

import json
import re

import pytest
import torch

from paramlens.components import Harvest
from paramlens.components.edit import Edit
from paramlens.core.resolve import resolve
from paramlens.decompose import Decomposition


def _run(cli, tmp_path, *args):
    code, _, err = cli("decompose", *args, "--out", tmp_path / "runs")
    assert code == 0, err
    (folder,) = (tmp_path / "runs").iterdir()
    return folder


def test_a_toy_run_is_harvested_reread_and_edited(cli, tmp_path):
    folder = _run(cli, tmp_path, "tms", "-t", "linear1", "-t", "linear2", "--steps", 20, "--C", 6)
    code, out, err = cli("components", folder, "--set", "n_inputs=512", "--set", "top_k=4")
    assert code == 0, err
    h = Harvest.load(folder / "components" / "harvest")
    assert h.n_positions == 512 and h.top_values.shape == (12, 4) and "harvest of 12 units" in out
    code, out, err = cli("components", folder, "--set", "n_inputs=512", "--set", "top_k=4", "--ablate", "linear1:2")
    assert code == 0, err
    (edit_folder,) = (folder / "components" / "edits").iterdir()
    report = Edit.load(edit_folder)
    edited = resolve(report.model).module  # the edited model, loaded as every command loads a model
    original = resolve("tms").module
    assert Harvest.load(folder / "components" / "harvest").units[2] == "linear1:2"
    spd = Decomposition.load(folder).params
    piece = torch.outer(spd["components.linear1.U"][2], spd["components.linear1.V"][:, 2])
    assert torch.allclose(edited.linear1.weight, original.linear1.weight - piece, atol=1e-6)
    assert torch.equal(edited.linear2.weight, original.linear2.weight)  # tied by value: a unit is one target's piece
    assert report.loss["after"] != report.loss["before"] and "ablated linear1:2" in out


@pytest.mark.parametrize("args, message", [
    (("--ablate", "linear9:0"), "'linear9:0' is not a unit of this decomposition"),
    (("--ablate", ","), "--ablate takes units"),
    (("--set", "threshold=2"), "threshold"),
    (("--set", "nonsense=1"), "nonsense"),
    (("--prompt", "the cat"), "--prompt needs a language model"),
])
def test_wrong_input_is_one_line(cli, tmp_path, args, message):
    folder = _run(cli, tmp_path, "tms", "-t", "linear1", "--steps", 5, "--C", 3)
    code, out, err = cli("components", folder, "--set", "n_inputs=64", *args)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_folder_that_is_no_run_is_one_line(cli, tmp_path):
    code, _, err = cli("components", tmp_path)
    assert code != 0 and "not a decompose run folder" in err and len(err.strip().splitlines()) == 1


def test_a_language_model_run_is_harvested_with_token_contexts_and_edited_into_a_model_folder(cli, tmp_path,
                                                                                             lm_folder):
    folder = _run(cli, tmp_path, lm_folder, "-t", "model.layers.0.mlp.*", "--steps", 3, "--C", 4, "--context", 16,
                  "--tokens", 1024, "--batch-size", 2)
    code, out, err = cli("components", folder, "--tokens", 512, "--set", "context=2", "--ablate",
                         "model.layers.0.mlp.up_proj:1")
    assert code == 0, err
    h = Harvest.load(folder / "components" / "harvest")
    assert h.sequences and h.contexts.shape[-1] == 5 and h.token_fires.shape[0] == 12
    assert h.n_positions == h.corpus["windows"] * 16
    (edit_folder,) = (folder / "components" / "edits").iterdir()
    report = Edit.load(edit_folder)
    loaded = resolve(report.model)
    assert loaded.is_language_model and loaded.tokenizer is not None
    assert set(report.changed[0]) == {"window", "position", "token", "before", "after", "kl"}


def test_an_apd_run_is_read_as_components_spanning_every_target(cli, tmp_path):
    """APD's units are its components (one importance for all targets); it has no subcomponent graph, and an edit
    takes a component out of every target."""
    folder = _run(cli, tmp_path, "tms", "-t", "linear1", "-t", "linear2", "--method", "apd", "--steps", 20, "--C", 4)
    code, out, err = cli("components", folder, "--set", "n_inputs=256", "--ablate", "component:1")
    assert code == 0, err
    h = Harvest.load(folder / "components" / "harvest")
    assert h.units == [f"component:{c}" for c in range(4)] and not (folder / "components" / "graph").exists()
    (edit_folder,) = (folder / "components" / "edits").iterdir()
    edited, original = resolve(Edit.load(edit_folder).model).module, resolve("tms").module
    assert not torch.equal(edited.linear1.weight, original.linear1.weight)
    assert not torch.equal(edited.linear2.weight, original.linear2.weight)


def test_a_residual_mlp_run_names_units_after_the_features_their_read_directions_match(cli, tmp_path):
    code, _, err = cli("train-toy", "residual_mlp", "--features", 8, "--steps", 50, "--out", tmp_path / "toy")
    assert code == 0, err
    (toy,) = (tmp_path / "toy").iterdir()
    folder = _run(cli, tmp_path, toy, "-t", "layers.0.mlp_in", "--steps", 200, "--C", 8, "--batch-size", 512)
    code, out, err = cli("components", folder, "--set", "n_inputs=512")
    assert code == 0, err
    units = (folder / "components" / "browser" / "data" / "units.js").read_text()
    rows = json.loads(units[units.index("(") + 1:units.rindex(")")])["rows"]
    assert all(len(r) == 9 for r in rows)
    for row in rows:  # a named unit fires (density > 0) and its read direction is that feature's at |cos| >= 0.5
        if row[8]:
            assert row[3] > 0 and re.fullmatch(r"feature [0-7] \(direction (0\.[5-9]\d|1\.00)\)", row[8]), row
    assert any(r[8] for r in rows) and "known mechanisms" in out
