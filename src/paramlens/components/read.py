"""Reading a decompose run folder: harvest it, draw its attribution graph (SPD), find its mechanisms, write the
browser (``RUN/components/``); and edits that ablate units (``RUN/components/edits/``). What ``paramlens
components RUN`` does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paramlens.components.browser import prompt_rows, write_browser
from paramlens.components.edit import Edit, edit
from paramlens.components.graph import Graph, attribution_graph
from paramlens.components.harvest import harvest_run, importances
from paramlens.components.known import known_mechanisms, known_summary
from paramlens.components.mechanisms import Mechanisms, find_mechanisms
from paramlens.components.result import Harvest
from paramlens.components.run import COMPONENTS, OpenRun
from paramlens.errors import UsageError

TASK_INPUTS = 512
"""Inputs of the harvest's data on which a model with known mechanisms is scored before and after an edit."""
GRAPH_BATCHES = 4
"""Batches of the harvest's data the attribution graph is summed over."""
PROMPTS = 3
"""Windows of the harvest's data shown in the prompt view (token models)."""


@dataclass
class Reading:
    """What :func:`read_run` made: the harvest, the graph (SPD; else None), the mechanisms, the browser's page, and
    per unit the known mechanism its weights belong to (:mod:`paramlens.components.known`; None for every unit of a
    model without ground truth, and for units that never fire)."""

    harvest: Harvest
    graph: Graph | None
    mechanisms: Mechanisms
    browser: Path
    known: list[dict[str, Any] | None]

    def summary(self) -> str:
        parts = [self.harvest.summary(), *([self.graph.summary()] if self.graph else []), self.mechanisms.summary(),
                 known_summary(self.known, self.harvest.units)]
        return "\n".join([*filter(None, parts), f"browser: {self.browser}"])


def decoder(run: OpenRun) -> Any:
    """A token id as text: the tokenizer's, a compiled program's vocabulary, else the id."""
    tokenizer, vocab = run.loaded.tokenizer, getattr(run.model, "vocab", None)
    if tokenizer is not None:
        return lambda i: tokenizer.decode([i])
    if vocab is not None:
        return lambda i: str(vocab[i]) if 0 <= i < len(vocab) else str(i)
    return str


def prompt_ids(run: OpenRun, texts: list[str]) -> list[Tensor]:
    """Each of ``texts`` as the token ids ``(T,)`` the run's model reads (its tokenizer's, special tokens included)."""
    if not texts:
        return []
    if not run.language_model or run.loaded.tokenizer is None:
        raise UsageError("--prompt needs a language model with a tokenizer; this run's model has none")
    ids = [torch.tensor(run.loaded.tokenizer(t)["input_ids"], dtype=torch.long) for t in texts]
    if any(len(i) < 2 or len(i) > run.text.context for i in ids):
        raise UsageError(f"each --prompt must be 2 to {run.text.context} tokens long (the run's context)")
    return ids


def prompts(run: OpenRun, harvest: Harvest, data: Tensor, decode: Any, given: list[Tensor] = ()) -> list[dict]:
    """The prompt view: the ``given`` prompts (token ids ``(T,)``), each with its own attribution graph (SPD), then
    the first windows of ``data`` (token models); or every input feature alone at 1 (toy models); each with the
    units firing on each token (feature)."""
    if harvest.sequences:
        rows = []
        for k, w in enumerate([*given, *data[:PROMPTS]]):
            row = prompt_rows(harvest, importances(run.method, run.dec, run.model, run.targets, run.units, w[None]),
                              [decode(int(t)) for t in w])
            if k < len(given) and run.method.name == "spd":
                row["graph"] = attribution_graph(run.method, run.dec, run.model, run.targets, [w[None]],
                                                 progress=False).pruned()
            rows.append(row)
        return rows
    eye = torch.eye(data.shape[1])
    imp = importances(run.method, run.dec, run.model, run.targets, run.units, eye)
    return [prompt_rows(harvest, imp, [f"feature {i}" for i in range(len(eye))])]


def read_run(run: OpenRun, given: dict[str, Any], *, prompt_texts: list[str] = (), resume: bool = False,
             progress: bool = True) -> tuple[Reading, Tensor]:
    """Harvest the opened run (``given``: :class:`~paramlens.components.harvest.HarvestConfig` settings), then graph,
    mechanisms and browser, all saved under ``RUN/components``; ``prompt_texts`` go first in the prompt view, each
    with its own attribution graph. Also returns the data read."""
    given_prompts = prompt_ids(run, list(prompt_texts))  # a wrong prompt fails before any work
    root = run.folder / COMPONENTS
    harvest = harvest_run(run, root / "harvest", given, resume=resume, progress=progress)
    data, _ = run.data({"corpus": harvest.config["corpus"], "tokens": harvest.config["tokens"]},
                       harvest.config["n_inputs"], harvest.config["seed"])
    graph = None
    if run.method.name == "spd":
        batches = list(data.split(harvest.config["batch_size"]))[:GRAPH_BATCHES]
        graph = attribution_graph(run.method, run.dec, run.model, run.targets, batches, progress=progress)
        graph.save(root / "graph")
    mechanisms = find_mechanisms(run.method, run.dec, run.model, run.targets, run.units, harvest, data, graph,
                                 seed=harvest.config["seed"])
    mechanisms.save(root / "mechanisms")
    known = [k if d > 0 else None for k, d in
             zip(known_mechanisms(run.method, run.dec, run.model, run.targets, run.units), harvest.density.tolist())]
    decode = decoder(run)
    page = write_browser(root / "browser", harvest, decode, title=f"{run.result.method.upper()} of {run.loaded.name}",
                         graph=graph, mechanisms=mechanisms, prompts=prompts(run, harvest, data, decode, given_prompts),
                         known=known)
    return Reading(harvest, graph, mechanisms, page, known), data


def edit_folder(root: Path, specs: list[str]) -> Path:
    """A new folder under ``root`` named after the ablated units (numbered when the name is taken)."""
    name = "ablate-" + "+".join(s.replace(":", "-").replace("/", "_") for s in specs)[:80]
    folder, n = root / name, 1
    while folder.exists():
        n += 1
        folder = root / f"{name}-{n}"
    return folder


def ablation_specs(ablate: str | None, mechanisms: Mechanisms | None = None) -> list[str]:
    """The units ``--ablate`` names (comma-separated units or mechanism ids; a mechanism stands for its members)."""
    specs = [s.strip() for s in (ablate or "").split(",") if s.strip()]
    if ablate is not None and not specs:
        raise UsageError("--ablate takes units such as 'mlp.up_proj:3,mlp.up_proj:7' (APD: 'component:2') or a "
                         "mechanism id such as 'mechanism:0'")
    groups = {g["id"]: g["members"] for g in (mechanisms.groups if mechanisms else [])}
    out = []
    for s in specs:
        if s.startswith("mechanism:") and mechanisms is not None and s not in groups:
            raise UsageError(f"no {s}: this run has {len(groups)} mechanisms (mechanism:0 .. mechanism:{len(groups) - 1})")
        out += groups.get(s, [s])
    return out


def edit_run(run: OpenRun, specs: list[str], data: Tensor, batch_size: int) -> Edit:
    """Ablate ``specs`` (unit names) from the opened run's model: the edited model and its report under
    ``RUN/components/edits/``; a model with known mechanisms is scored on ``TASK_INPUTS`` inputs of ``data``."""
    task = run.model.mechanism_task(data[:TASK_INPUTS]) if hasattr(run.model, "mechanism_task") else None
    return edit(run, specs, edit_folder(run.folder / COMPONENTS / "edits", specs), data, task=task,
                batch_size=batch_size)
