"""write_run: one way from a result to a run folder; every result has the same shape."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

import paramlens
from paramlens.core.runs import Result
from paramlens.report import plots
from paramlens.report.run import write_run


@dataclass
class Curve(Result):
    kind = "test_curve"
    values: Tensor
    label: str

    def summary(self) -> str:
        return f"{self.label}: mean {float(self.values.mean()):.3f}"

    def table(self) -> list[dict]:
        return [{"i": i, "value": float(v)} for i, v in enumerate(self.values)]

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        return [(plots.bars(folder / f"{prefix}curve.png", self.values, self.label, "i", "value"), "the values")]


def test_one_result_makes_a_complete_run_folder(tmp_path):
    result = Curve(torch.arange(4.0), "ramp")
    folder = write_run(result, tmp_path, "A ramp", name="ramp", heading="Ramp", config={"n": 4, "path": Path("x")})
    assert folder.parent == tmp_path and folder.name.startswith("ramp-")
    assert json.loads((folder / "config.json").read_text()) == {"n": 4, "path": "x"}
    assert torch.equal(Curve.load(folder).values, result.values)
    page = (folder / "index.html").read_text()
    assert "Ramp" in page and "ramp: mean 1.500" in page and 'src="curve.png"' in page and "<td>3</td>" in page


def test_several_results_get_subfolders_and_prefixed_figures(tmp_path):
    parts = [(f"part {i}", Curve(torch.full((3,), float(i)), f"c{i}")) for i in range(2)]
    folder = write_run(parts, tmp_path, "Two", name="two")
    for i in range(2):
        assert Curve.load(folder / f"test_curve_{i}").label == f"c{i}"
        assert (folder / f"{i}_curve.png").is_file()
    assert not (folder / "config.json").exists()


def test_an_existing_run_folder_keeps_its_config(tmp_path):
    (tmp_path / "config.json").write_text('{"steps": 10}')
    write_run(Curve(torch.ones(2), "x"), tmp_path, "T", config={"steps": 99}, intro="Read this first.")
    assert json.loads((tmp_path / "config.json").read_text()) == {"steps": 10}
    assert "Read this first." in (tmp_path / "index.html").read_text()


def _results() -> list[type[Result]]:
    for info in pkgutil.walk_packages(paramlens.__path__, "paramlens."):
        if not info.name.endswith(("__main__", "cli_run")):
            importlib.import_module(info.name)
    found, todo = [], list(Result.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return [c for c in found if c.__module__.startswith("paramlens.")]


def test_every_result_has_the_same_shape():
    results = _results()
    assert len(results) >= 12
    kinds = [cls.kind for cls in results]
    assert len(set(kinds)) == len(kinds), "two result types share a kind"
    for cls in results:
        figures = inspect.signature(cls.figures).parameters
        assert list(figures)[1:] == ["folder", "prefix"], cls
        assert figures["prefix"].default == "", cls
        for name in ("summary", "table", "save", "load"):
            assert callable(getattr(cls, name)), (cls, name)
        assert not cls.__name__.endswith("Result"), f"{cls.__name__}: results are named by plain nouns"
