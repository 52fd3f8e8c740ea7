"""What ``paramlens components RUN`` does: harvest the run (or read its saved harvest), apply an edit if asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paramlens.components.edit import Edit, edit
from paramlens.components.harvest import harvest_run
from paramlens.components.result import Harvest
from paramlens.components.run import COMPONENTS, open_run
from paramlens.errors import UsageError


TASK_INPUTS = 512
"""Inputs of the harvest's data on which a model with known mechanisms is scored before and after an edit."""


def edit_folder(root: Path, specs: list[str]) -> Path:
    """A new folder under ``root`` named after the ablated units (numbered when the name is taken)."""
    name = "ablate-" + "+".join(s.replace(":", "-").replace("/", "_") for s in specs)[:80]
    folder, n = root / name, 1
    while folder.exists():
        n += 1
        folder = root / f"{name}-{n}"
    return folder


def run_components(folder: Path, given: dict[str, Any], ablate: str | None, *, resume: bool, trust_code: bool,
                   progress: bool = True) -> tuple[Harvest, Edit | None]:
    """Harvest the decompose run in ``folder`` into ``folder/components/harvest`` (``given``: harvest settings), and
    with ``ablate`` (comma-separated units) write the edited model and its report under ``folder/components/edits``."""
    specs = [s.strip() for s in (ablate or "").split(",") if s.strip()]
    if ablate is not None and not specs:
        raise UsageError("--ablate takes units such as 'mlp.up_proj:3,mlp.up_proj:7' (APD: 'component:2')")
    run = open_run(folder, trust_code=trust_code, progress=progress)
    for s in specs:
        run.units.index(s)  # a wrong name is an error before any work
    harvest = harvest_run(run, folder / COMPONENTS / "harvest", given, resume=resume, progress=progress)
    if not specs:
        return harvest, None
    data, _ = run.data({"corpus": harvest.config.get("corpus"), "tokens": harvest.config.get("tokens")},
                       harvest.config["n_inputs"], harvest.config["seed"])
    task = run.model.mechanism_task(data[:TASK_INPUTS]) if hasattr(run.model, "mechanism_task") else None
    return harvest, edit(run, specs, edit_folder(folder / COMPONENTS / "edits", specs), data, task=task,
                         batch_size=harvest.config["batch_size"])
