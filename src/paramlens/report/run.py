"""Write a finished analysis to its run folder: the result, the settings it ran with, figures and ``index.html``.

Every command ends the same way: :func:`write_run` makes the run folder (or fills the one training already made),
saves each result (``result.json`` + ``tensors.safetensors``), writes ``config.json``, draws the figures and
writes the page, with one section per result built from its ``summary()``, ``figures()`` and ``table()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from paramlens.core.runs import CONFIG, Result, atomic_write, new_run_dir
from paramlens.report.html import Section, write_report


def write_run(results: Result | Sequence[tuple[str, Result]], out: Path, title: str, *, name: str | None = None,
              heading: str = "", config: BaseModel | Mapping[str, Any] | None = None, intro: str = "") -> Path:
    """Save ``results`` and their report; returns the run folder.

    Args:
        results: one result (its section is titled ``heading``), or ``[(heading, result)]`` for several, each saved in
            a subfolder ``<kind>_<i>`` with its figures prefixed ``<i>_``.
        out: with ``name``, the folder in which a new run folder ``name-<time>`` is made; without, the run folder
            itself (made earlier, e.g. by a training run that checkpoints into it).
        config: the settings the run was made with, written to ``config.json`` unless the folder already has one
            (a training loop writes its own).
        intro: a paragraph put before the first result's summary in the report.
    """
    folder = new_run_dir(out, name) if name is not None else Path(out)
    alone = isinstance(results, Result)
    parts = [(heading, results)] if alone else list(results)
    sections = []
    for i, (title_i, result) in enumerate(parts):
        result.save(folder if alone else folder / f"{result.kind}_{i}")
        sections.append(section_of(result, folder, title_i, prefix="" if alone else f"{i}_",
                                   intro=intro if i == 0 else ""))
    if config is not None and not (folder / CONFIG).exists():
        plain = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
        atomic_write(folder / CONFIG, lambda p: p.write_text(json.dumps(plain, indent=2, default=str)))
    write_report(folder, title, [], sections)
    return folder


def section_of(result: Result, folder: Path, heading: str, prefix: str = "", intro: str = "") -> Section:
    """The report section of ``result``: its summary (after ``intro``), its figures drawn into ``folder`` (file names
    starting with ``prefix``) and its table."""
    text = f"{intro}\n{result.summary()}" if intro else result.summary()
    return Section(title=heading, text=text, figures=result.figures(folder, prefix=prefix), table=result.table())
