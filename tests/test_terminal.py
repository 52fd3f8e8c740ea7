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


def test_usage_mistakes_are_status_2_and_wrong_kinds_are_refused_before_training(cli, tmp_path, monkeypatch):
    cases = [
        (["decompose", "tms", "-t", "linear1", "--set", "gamma=3"], "spd has no setting gamma"),
        (["train-toy", "residual_mlp", "--identity"], "residual_mlp has no option hidden_identity"),
        (["train-toy", "tms", "--seed", 2**40], "'--seed': Input should be less than or equal to 2147483647"),
        (["decompose", "tms", "-t", "linear1", "--lr", "1e300"], "lr=1e+300: Input should be less than or equal"),
        (["geometry", "smollm2", "--classes", "ridge", "--primary", "mlp"], "must be one of the fitted classes"),
    ]
    for args, message in cases:
        code, _, err = cli(*args)
        assert code == Exit.USAGE and one_line(err) and message in err, (args, code, err)
    monkeypatch.setattr("paramlens.models.registry.ZOO", {})  # training anything now fails loudly
    code, _, err = cli("interaction", "tms")
    assert code == Exit.BAD_INPUT and "a built-in toy model" in err


def test_ctrl_c_is_status_130_with_one_line(cli, monkeypatch):
    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr("paramlens.core.loading.describe", interrupted)
    code, _, err = cli("inspect", "tms")
    assert code == Exit.INTERRUPTED and err.strip() == "error: interrupted"


def test_an_interrupted_training_run_says_where_its_checkpoint_is(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run = subprocess.Popen([sys.executable, "-m", "paramlens", "train-toy", "tms", "--steps", str(10**7), "--out",
                            str(tmp_path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob("*/config.json")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == Exit.INTERRUPTED and "interrupted after step" in err and "--resume" in err


def test_run_folders_that_cannot_be_made_and_odd_caches_are_one_line(cli, tmp_path, monkeypatch):
    code, _, err = cli("train-toy", "tms", "--steps", 5, "--out", "/proc/paramlens-cannot-write")
    assert code == Exit.BAD_INPUT and one_line(err) and "cannot create a run folder there" in err
    monkeypatch.setenv("PARAMLENS_CACHE", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a folder")
    code, _, err = cli("inspect", "smollm2")
    assert code in (0, Exit.BAD_INPUT) and "Traceback" not in err  # a cached copy elsewhere, or one clear line


def test_help_text_and_file_derived_bidi_controls(cli, tmp_path):
    code, out, _ = cli()
    assert code == Exit.USAGE and "Usage:" in out and "\n" in out.strip()  # the help, not squashed into one line
    assert safe("a\u202eb") == "a\\x202eb"
    code, out, _ = cli("inspect", "tms", "--json")
    assert code == 0 and '"path": "tms"' in out


def test_text_files_are_read_only_as_far_as_needed(tmp_path):
    from paramlens.core.text import load_corpus

    big = tmp_path / "sparse.txt"
    with open(big, "wb") as f:
        f.truncate(8 << 30)  # 8 GiB of zeros on paper, nothing on disk
    assert len(load_corpus(str(big), max_chars=1000)) == 1000


def test_a_torchrun_worker_ends_with_its_status_output_and_exit_handlers(tmp_path):
    """Under torchrun (WORLD_SIZE > 1) the process ends without interpreter finalization: the status, all of stdout
    and the exit handlers must be as in a plain run."""
    import subprocess
    import sys

    save_file({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    script = ("import atexit, sys; atexit.register(lambda: print('handler ran')); "
              "sys.argv = ['paramlens', *sys.argv[1:]]; from paramlens.cli import main; main()")

    def run(world, *args):
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, "WORLD_SIZE": world}
        r = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, env=env,
                           timeout=120, check=False)
        return r.returncode, r.stdout, r.stderr

    ends = []
    for args in (["inspect", tmp_path / "w.safetensors"], ["inspect", tmp_path / "missing.safetensors"]):
        plain, worker = run("1", *args), run("2", *args)
        assert worker == plain and "handler ran" in worker[1]  # printed last, to a buffered pipe
        ends.append(plain)
    (ok, shown, _), (bad, _, said) = ends
    assert ok == 0 and "w" in shown.split() and bad == Exit.BAD_INPUT and "no such file" in said
