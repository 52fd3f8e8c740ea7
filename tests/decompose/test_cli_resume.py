"""paramlens decompose --resume and train-toy --resume: the saved run is read and checked before anything is
written; a mismatch is one line naming the fields, unless they are overridden."""

import pytest

from paramlens.terminal import Exit


@pytest.fixture()
def run(cli, tmp_path):
    """A finished 20-step SPD run of a built-in TMS model."""
    code, _, err = cli("decompose", "tms", "-t", "linear1", "-t", "linear2", "--steps", 20, "--batch-size", 64,
                       "--C", 4, "--out", tmp_path / "runs")
    assert code == 0, err
    (folder,) = (tmp_path / "runs").iterdir()
    return folder


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.suffix != ".lock"}


def test_resume_reads_the_saved_run_and_needs_nothing_else(cli, run):
    before = snapshot(run)
    code, out, err = cli("decompose", "--resume", run)
    assert code == 0, err
    assert snapshot(run)["config.json"] == before["config.json"] and "mmcs" in out


def test_a_changed_setting_is_refused_before_anything_is_written(cli, run):
    before = snapshot(run)
    code, _, err = cli("decompose", "--resume", run, "--C", 8, "--steps", 30)
    assert code == Exit.BAD_INPUT and len(err.strip().splitlines()) == 1
    assert "C differs (saved 4, now 8)" in err and "steps differs (saved 20, now 30)" in err and "--override" in err
    assert snapshot(run) == before
    code, _, err = cli("decompose", "tms", "-t", "linear1", "--resume", run)
    assert code == Exit.BAD_INPUT and "targets differs" in err and snapshot(run) == before
    code, _, err = cli("decompose", "--resume", run, "--method", "apd")
    assert code == Exit.BAD_INPUT and "method differs" in err and snapshot(run) == before


def test_an_overridden_setting_continues_the_run_with_the_new_value(cli, run):
    code, _, err = cli("decompose", "--resume", run, "--steps", 30, "--override", "steps")
    assert code == 0, err
    assert '"steps": 30' in (run / "config.json").read_text()


def test_a_folder_that_is_not_a_decompose_run_is_refused(cli, tmp_path):
    (tmp_path / "other").mkdir()
    code, _, err = cli("decompose", "--resume", tmp_path / "other")
    assert code == Exit.BAD_INPUT and "not a decompose run folder" in err
    assert list((tmp_path / "other").iterdir()) == []


def test_a_run_without_checkpoint_is_not_restarted_silently(cli, run):
    (run / "checkpoint.pt").unlink()
    code, _, err = cli("decompose", "--resume", run)
    assert code == Exit.BAD_INPUT and "no checkpoint" in err


def test_train_toy_resume_checks_the_folder(cli, tmp_path):
    code, _, err = cli("train-toy", "tms", "--steps", 50, "--out", tmp_path)
    (folder,) = tmp_path.iterdir()
    code, _, err = cli("train-toy", "tms", "--resume", folder, "--steps", 80)
    assert code == Exit.BAD_INPUT and "n_steps differs (saved 50, now 80)" in err
    code, _, err = cli("train-toy", "tms", "--resume", folder, "--steps", 80, "--override", "n_steps")
    assert code == 0, err
    (folder / "checkpoint.pt").write_bytes(b"garbage")
    code, _, err = cli("train-toy", "tms", "--resume", folder)
    assert code == Exit.BAD_INPUT and "checkpoint.pt" in err and len(err.strip().splitlines()) == 1
    (folder / "config.json").write_text("{not json")
    code, _, err = cli("train-toy", "tms", "--resume", folder)
    assert code == Exit.BAD_INPUT and "config.json" in err


def test_an_override_the_checkpoint_cannot_take_leaves_the_run_as_it_was(cli, tmp_path):
    code, _, err = cli("train-toy", "tms", "--steps", 50, "--out", tmp_path)
    (folder,) = tmp_path.iterdir()
    before = snapshot(folder)
    code, _, err = cli("train-toy", "tms", "--resume", folder, "--features", 7, "--override", "n_features")
    assert code == Exit.BAD_INPUT and "does not fit" in err
    assert snapshot(folder) == before
    code, _, err = cli("train-toy", "tms", "--resume", folder)
    assert code == 0, err
