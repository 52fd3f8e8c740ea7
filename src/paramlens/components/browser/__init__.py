"""A static browser of a harvested decomposition: one folder that opens from disk (``file://``), no server.

``index.html`` with its script and style, and the data as small JavaScript files that register themselves
(``data/units.js`` with one row per unit, ``data/unit/<k>.js`` per unit, loaded when its page opens; the graph, the
mechanisms and the prompts each in one file): browsers refuse ``fetch`` from ``file://``, not ``<script>``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paramlens.components.graph import INPUT, OUTPUT, Graph, is_input
from paramlens.components.mechanisms import Mechanisms
from paramlens.components.result import Harvest
from paramlens.core.runs import atomic_write

STATIC = Path(__file__).parent / "static"
DRAWN_INPUTS = 40
"""Input nodes drawn in the graph view: those with the most attribution (unit pages list all of theirs)."""
Decode = Callable[[int], str]


def _num(x: Any) -> float | None:
    """A float for JSON (None for NaN and infinities)."""
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def _js(path: Path, call: str, payload: Any) -> None:
    """Write ``call(payload);`` (JSON) to ``path``."""
    text = f"{call}({json.dumps(payload, separators=(',', ':'))});\n"
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _output_name(harvest: Harvest, decode: Decode) -> Callable[[int], str]:
    return decode if harvest.sequences else (lambda k: f"output {k}")


def node_label(harvest: Harvest, decode: Decode, node: str) -> str:
    """A graph node as shown: an input node as its token (``in: the``) or input feature (``input 3``), else its
    name."""
    if not is_input(node):
        return node
    k = node.rpartition(":")[2]
    return f"in: {decode(int(k))}" if harvest.sequences else f"input {k}"


def labels(harvest: Harvest, decode: Decode) -> list[str]:
    """A short label per unit: what it fires on and what it promotes (token models), or the input feature its top
    inputs share (toy models), "" for a unit that never fires."""
    out, name = [], _output_name(harvest, decode)
    for s in range(len(harvest.units)):
        if harvest.density[s] <= 0:
            out.append("")
            continue
        promoted = name(int(harvest.promoted[s, 0])) if harvest.promoted.shape[1] else ""
        if harvest.sequences:
            top = harvest.top_tokens(s, 1)
            on = "(other)" if not top or top[0]["token"] is None else decode(top[0]["token"])
            out.append(f"on {on} → {promoted}")
        else:
            mean = torch.nan_to_num(harvest.contexts[s]).abs().mean(0)
            share = float(mean.max() / mean.sum().clamp(min=1e-12))
            out.append(f"feature {int(mean.argmax())}" + ("" if share > 0.5 else " (mixed)") + f" → {promoted}")
    return out


def known_label(known: dict[str, Any] | None) -> str:
    """A unit's known mechanism as a table cell: ``feature 3 (block 0.98)``, "" when none."""
    return "" if known is None else f"{known['mechanism']} ({known['by']} {known['score']:.2f})"


def _unit_page(harvest: Harvest, s: int, decode: Decode, graph_edges: list[dict], paged: dict[str, int]) -> dict:
    """The data of unit ``s``'s page; ``paged``: the units that have a page (they fire), by name."""
    name = _output_name(harvest, decode)
    contexts = []
    for j in range(harvest.top_values.shape[1]):
        if harvest.top_positions[s, j] < 0:
            break
        if harvest.sequences:
            ids, imp = harvest.contexts[s, j].tolist(), harvest.context_importance[s, j].tolist()
            contexts.append({"value": _num(harvest.top_values[s, j]),
                             "tokens": [decode(t) if t >= 0 else None for t in ids],
                             "importance": [_num(v) for v in imp]})
        else:
            contexts.append({"value": _num(harvest.top_values[s, j]),
                             "input": [_num(v) for v in harvest.contexts[s, j].tolist()]})
    listed = lambda ids, by: [{"token": name(int(i)), "by": _num(b)} for i, b in zip(ids.tolist(), by.tolist())]
    tokens = [{**t, "token": "(other)" if t["token"] is None else decode(t["token"])} for t in harvest.top_tokens(s)]
    co = []
    if harvest.coactivation.numel():
        rate = harvest.coactivation_rate()[s].clone()
        rate[s] = 0
        best = rate.topk(min(10, len(rate)))
        co = [{"unit": int(k), "rate": _num(v)} for v, k in zip(best.values, best.indices) if v > 0]
    me = harvest.units[s]
    return {"id": s, "name": me, "density": _num(harvest.density[s]), "effect": _num(harvest.effect_size[s]),
            "contexts": contexts, "top_tokens": tokens,
            "promoted": listed(harvest.promoted[s], harvest.promoted_by[s]),
            "suppressed": listed(harvest.suppressed[s], harvest.suppressed_by[s]), "coactive": co,
            "feeds": [{"unit": paged.get(e["target"]), "name": e["target"], "weight": _num(e["weight"])}
                      for e in graph_edges if e["source"] == me][:20],
            "fed_by": [{"unit": paged.get(e["source"]), "name": e["source"], "weight": _num(e["weight"])}
                       for e in graph_edges if e["target"] == me and not is_input(e["source"])][:20],
            "inputs": [{"name": node_label(harvest, decode, e["source"]), "weight": _num(e["weight"])}
                       for e in graph_edges if e["target"] == me and is_input(e["source"])][:20]}


def prompt_rows(harvest: Harvest, importance: Tensor, tokens: Sequence[str], top: int = 8) -> dict:
    """One prompt of the prompt view: its ``tokens`` and, per token, the ``top`` units firing most there
    (``importance``: ``(len(tokens), S)``)."""
    fires = []
    for row in importance:
        best = row.topk(min(top, len(row)))
        fires.append([[int(k), _num(v)] for v, k in zip(best.values, best.indices)
                      if v > harvest.config["threshold"]])
    return {"tokens": list(tokens), "fires": fires}


def drawn_edges(edges: list[dict]) -> list[dict]:
    """The edges the graph view draws: all but those from input nodes outside the ``DRAWN_INPUTS`` that feed most."""
    total: dict[str, float] = {}
    for e in edges:
        if is_input(e["source"]):
            total[e["source"]] = total.get(e["source"], 0.0) + e["weight"]
    kept = set(sorted(total, key=total.__getitem__, reverse=True)[:DRAWN_INPUTS])
    return [e for e in edges if not is_input(e["source"]) or e["source"] in kept]


def graph_payload(harvest: Harvest, decode: Decode, edges: list[dict], paged: dict[str, int]) -> dict:
    """What the graph view draws of pruned ``edges``: the drawn edges, the unit pages they link, the input labels."""
    drawn = drawn_edges(edges)
    return {"targets": [INPUT, *harvest.targets, OUTPUT],
            "edges": [[e["source"], e["target"], _num(e["weight"])] for e in drawn],
            "units": {e[k]: paged[e[k]] for e in drawn for k in ("source", "target") if e[k] in paged},
            "labels": {e["source"]: node_label(harvest, decode, e["source"]) for e in drawn if is_input(e["source"])},
            "pruned": len(edges), "inputs_drawn": DRAWN_INPUTS}


def write_browser(folder: Path, harvest: Harvest, decode: Decode, *, title: str, graph: Graph | None = None,
                  mechanisms: Mechanisms | None = None, prompts: Sequence[dict] = (),
                  known: Sequence[dict[str, Any] | None] = ()) -> Path:
    """Write the browser of ``harvest`` into ``folder`` (replacing one there); returns ``folder/index.html``.
    ``decode``: a token id as text; ``prompts``: from :func:`prompt_rows`, with the pruned edges of the prompt's own
    attribution graph under ``"graph"`` where it has one; ``known``: per unit, the known mechanism
    its weights belong to (:func:`~paramlens.components.known.known_mechanisms`; empty: none known)."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(STATIC, folder)
    (folder / "data" / "unit").mkdir(parents=True)
    index = {name: s for s, name in enumerate(harvest.units)}
    paged = {name: s for name, s in index.items() if harvest.density[s] > 0}
    member_of = {m: g["id"] for g in (mechanisms.groups if mechanisms else []) for m in g["members"]}
    edges = graph.pruned() if graph is not None else []
    label = labels(harvest, decode)
    rows = [[s, name, name.rpartition(":")[0], _num(harvest.density[s]), _num(harvest.mean_importance[s]),
             _num(harvest.effect_size[s]), label[s], member_of.get(name, ""), known_label(known[s] if known else None)]
            for s, name in enumerate(harvest.units)]
    meta = {"title": title, "method": harvest.method, "sequences": harvest.sequences, "positions": harvest.n_positions,
            "threshold": harvest.config["threshold"], "corpus": harvest.corpus, "targets": harvest.targets,
            "has_graph": graph is not None, "has_mechanisms": mechanisms is not None, "has_prompts": bool(prompts),
            "has_known": any(k is not None for k in known)}
    _js(folder / "data" / "units.js", "PL.setUnits", {"meta": meta, "rows": rows})
    for s in range(len(harvest.units)):
        if harvest.density[s] > 0:
            _js(folder / "data" / "unit" / f"{s}.js", "PL.setUnit", _unit_page(harvest, s, decode, edges, paged))
    name = _output_name(harvest, decode)
    _js(folder / "data" / "mechanisms.js", "PL.setMechanisms",
        [{**g, "members": [[index[m], m] for m in g["members"]], "promoted": [name(i) for i in g["promoted"]],
          "suppressed": [name(i) for i in g["suppressed"]]} for g in (mechanisms.groups if mechanisms else [])])
    _js(folder / "data" / "graph.js", "PL.setGraph", graph_payload(harvest, decode, edges, paged))
    _js(folder / "data" / "prompts.js", "PL.setPrompts",
        [{**p, "graph": graph_payload(harvest, decode, p["graph"], paged)} if "graph" in p else p for p in prompts])
    return folder / "index.html"
