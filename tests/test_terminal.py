"""What the command line prints when things go wrong: one line, a distinct status, nothing raw."""

import os
import threading

import torch
from safetensors.torch import save_file

from paramlens.terminal import Exit, safe


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_unexpected_exception_is_one_line_with_its_own_status(cli, tmp_path, monkeypatch):
    save_file({"w": torch.ones(2)}, tmp_path / "w.safetensors")

    def broken(*_):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr("paramlens.core.loading.describe", broken)
    code, _, err = cli("inspect", tmp_path / "w.safetensors")
    assert code == Exit.INTERNAL and one_line(err)
    assert err.strip() == "internal error: ZeroDivisionError: planted; rerun with --debug and report it"
    code, _, err = cli("inspect", tmp_path / "missing.safetensors")
    assert code == Exit.BAD_INPUT and one_line(err) and "no such file" in err


def test_option_values_out_of_range_are_one_line_naming_the_option_before_any_work(cli, tmp_path):
    cases = [
        (["train-toy", "tms", "--steps", 0], "'--steps': Input should be greater than or equal to 1"),
        (["geometry", "smollm2", "--context", 0], "'--context': Input should be greater than or equal to 2"),
        (["interaction", "smollm2", "--tokens", -5], "'--tokens': Input should be greater than or equal to 2"),
        (["interaction", "--top", 0], "'--top': Input should be greater than or equal to 1"),
        (["interaction", "--sources", 0], "'--sources': Input should be greater than or equal to 1"),
        (["interaction", "--p", 0], "'--p': Input should be greater than or equal to 3"),
        (["information", "--beta", "nan"], "'--beta': nan (allowed: a finite number > 0)"),
        (["reverse", "invert", "x.pt", "--target", "1", "--low", 1, "--high", 0], "--low 1.0 is above --high 0.0"),
        (["reverse", "invert", "x.pt", "--target", "1", "--tol", -1], "--tol -1.0: give a number >= 0"),
        (["reverse", "reassemble", tmp_path, "--data", "x.csv", "--search-rows", 0],
         "'--search-rows': Input should be greater than or equal to 1"),
        (["decompose", "tms", "-t", "linear1", "--C", 10**9], "'--C': Input should be less than or equal to 1000000"),
        (["train-toy", "tms", "--features", 10**7], "'--features': Input should be less than or equal to 100000"),
        (["decompose", "tms", "-t", "linear1", "--set", "nonsense"], "--set takes key=value"),
        (["decompose", "tms", "-t", "linear1", "--set", "C=0"], "invalid option: C='0': Input should be greater than "
                                                                "or equal to 1 (allowed: ge 1)"),
        (["geometry", "smollm2", "--classes", "ridge,cubic"], "invalid option: classes.1='cubic'"),
    ]
    for args, message in cases:
        code, out, err = cli(*args)
        assert code == Exit.USAGE and one_line(err) and message in err, (args, code, err)
        assert not (tmp_path / "runs").exists()


def test_sizes_that_cannot_fit_are_refused_with_an_estimate(cli, tmp_path):
    code, _, err = cli("train-toy", "tms", "--features", 100_000, "--hidden", 100_000, "--out", tmp_path)
    assert code == Exit.BAD_INPUT and one_line(err) and "GiB of memory" in err and "lower --features" in err
    assert not any(tmp_path.iterdir())


def test_names_and_paths_from_files_are_printed_as_written(cli, tmp_path):
    folder = tmp_path / "[bold]x[red]"
    folder.mkdir()
    names = {"[/]w": torch.ones(2), "evil\x1b]0;title\x07name": torch.ones(3), "n" * 150: torch.ones(1)}
    save_file(names, folder / "w.safetensors")
    code, out, err = cli("inspect", folder / "w.safetensors")
    assert code == 0, err
    assert "[/]w" in out and "[bold]x[red]" in out and "n" * 150 in out  # no markup, not cut at 80 columns
    assert "\x1b" not in out and "evil\\x1b]0;title\\x07name" in out
    assert safe("a\x00b\nc") == "a\\x00b\nc"


def test_pipes_and_devices_named_like_weights_are_refused_at_once(cli, tmp_path):
    fifo = tmp_path / "w.safetensors"
    os.mkfifo(fifo)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", cli("inspect", fifo)), daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert "r" in result, "inspect hung on a FIFO"
    code, _, err = result["r"]
    assert code == Exit.BAD_INPUT and "not a regular file" in err


def test_progress_bars_stay_off_stdout(cli, tmp_path):
    code, out, err = cli("train-toy", "tms", "--steps", 300, "--out", tmp_path)
    assert code == 0 and out.strip().startswith("final loss") and len(out.strip().splitlines()) == 1


def test_a_folder_named_like_mathtext_draws_its_figures(cli, lm_folder, tmp_path):
    import shutil

    model = tmp_path / "$x^$"
    shutil.copytree(lm_folder, model, ignore=shutil.ignore_patterns("training"))
    code, out, err = cli("rotation", model, "--tokens", 256, "--context", 16, "--out", tmp_path / "runs")
    assert code == 0, err
    assert list((tmp_path / "runs").glob("*/0_rotation.png"))
