"""Reading a decomposition: harvest throughput and memory, and the browser's size and first load.

Harvest: on every attention and MLP matrix of the in-project Llama-style LM (trained here first, ~3 minutes), an SPD
module initialised from its weights (C per matrix, ``--C``), the windows of the fortunes corpus; ParamLens's harvest
(:func:`paramlens.components.harvest.stream`: all units at once per batch) against a naive harvest that keeps each
subcomponent's statistics in its own Python loop (density, mean importance, top-k positions, token counts in a
dict, its co-activation row), both computing the same importances on the same
windows, each in its own process (peak memory is its own). Both are checked to give the same densities.

Browser: a generated harvest of ``--units`` units (random statistics, 16 contexts of 17 tokens each) written by
:func:`paramlens.components.browser.write_browser`; its size on disk and the time headless Chromium takes from
navigation to the first table rows, against the same data written as one file that holds every unit's page (what
lazy loading avoids).

Known mechanisms: the induction model (trained here, seeded) decomposed with SPD as
``benchmarks/decompose_transformers.py`` does it, harvested, graphed and grouped: for its previous-token and
induction mechanisms, the subcomponents matched to each (:func:`~paramlens.decompose.score_mechanisms`), the
mechanism group that holds most of them (Jaccard overlap), and that group's behaviour: the task accuracy with the
group ablated, for each known mechanism (the induction accuracy of the model, where both are needed).

Usage: python benchmarks/components.py [--tokens 16384] [--C 64] [--units 10000] [--threads 1]
       [--induction-steps 2000]        (0 skips a part)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import in_fresh_process, print_table, restart_peak, status_kib

LM_TARGETS = ["model.layers.*.self_attn.*_proj", "model.layers.*.mlp.*_proj"]
THRESHOLD = 0.1


def naive(importance_batches, windows: torch.Tensor, S: int, k: int) -> dict:
    """The harvest one subcomponent at a time: for each unit, its firing count, importance sum, top-``k`` values
    and positions, token counts (a dict) and co-activation row, updated batch by batch."""
    fires, sums = [0] * S, [0.0] * S
    top_v = [torch.full((k,), -float("inf")) for _ in range(S)]
    top_p = [torch.full((k,), -1) for _ in range(S)]
    tokens = [dict() for _ in range(S)]
    co = [torch.zeros(S, dtype=torch.int64) for _ in range(S)]
    flat, first = windows.reshape(-1), 0
    for imp in importance_batches:
        fired = imp > THRESHOLD
        where = torch.arange(first, first + len(imp))
        for s in range(S):
            on = fired[:, s]
            fires[s] += int(on.sum())
            sums[s] += float(imp[:, s].sum())
            best = torch.cat([top_v[s], imp[:, s]]).topk(k)
            top_v[s], top_p[s] = best.values, torch.cat([top_p[s], where])[best.indices]
            ids, counts = flat[where[on]].unique(return_counts=True)
            for t, c in zip(ids.tolist(), counts.tolist()):
                tokens[s][t] = tokens[s].get(t, 0) + c
            co[s] += fired[on].sum(0)
        first += len(imp)
    return {"fires": fires}


def harvest_worker(impl: str, folder: str, tokens: int, C: int, threads: int, queue) -> None:
    """In a fresh process: harvest throughput (tokens/s) and the peak memory the harvest adds (GiB)."""
    from paramlens.components.harvest import HarvestConfig, importances, stream
    from paramlens.components.units import Units
    from paramlens.core.resolve import resolve
    from paramlens.core.text import TextOptions, lm_windows
    from paramlens.core.weights import select
    from paramlens.decompose.spd import SPDConfig, SPDMethod

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    loaded = resolve(folder, seed=0)
    model = loaded.runnable("decompose")
    for p in model.parameters():
        p.requires_grad_(False)
    windows = lm_windows(loaded, TextOptions(corpus="fortunes", tokens=tokens, context=64))
    targets = select(model, LM_TARGETS)
    spd = SPDMethod.build(model, targets, SPDConfig(C=C, output_loss="kl"))
    units = Units.of(SPDMethod, targets, C)
    cfg = HarvestConfig(batch_size=16)
    before = restart_peak()
    start = time.perf_counter()
    if impl == "paramlens":
        tally, _ = stream(SPDMethod, spd, model, targets, units, windows, cfg, folder=None, resume=False,
                          progress=False)
        fires = tally.fires.tolist()
    else:
        batches = (importances(SPDMethod, spd, model, targets, units, x) for x in windows.split(cfg.batch_size))
        fires = naive(batches, windows, len(units), cfg.top_k)["fires"]
    seconds = time.perf_counter() - start
    queue.put({"tokens/s": windows.numel() / seconds, "peak": (status_kib("VmHWM") - before) / 2**20,
               "fires": fires, "units": len(units), "tokens": windows.numel()})


def harvest_rows(tokens: int, C: int, threads: int) -> list[dict]:
    from paramlens.models.lm.tiny import TinyLMConfig, train_tiny_lm

    rows, fires = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tiny-lm"
        train_tiny_lm(TinyLMConfig(mlp="swiglu", bos=True), folder, progress=False)
        for impl, name in (("naive", "naive: one Python loop per subcomponent"),
                           ("paramlens", "ParamLens: all units per batch")):
            out = in_fresh_process(harvest_worker, impl, str(folder), tokens, C, threads)
            fires[impl] = out["fires"]
            rows.append({"harvest": name, "units": out["units"], "tokens": out["tokens"],
                         "tokens/s": out["tokens/s"], "peak memory over the model, GiB": out["peak"]})
            print(f"  {rows[-1]}", flush=True)
    if fires["naive"] != fires["paramlens"]:
        raise SystemExit("the two harvests disagree on the firing counts")
    for row in rows:
        row["ratio to naive"] = row["tokens/s"] / rows[0]["tokens/s"]
    return rows


def generated_harvest(S: int, k: int = 16, width: int = 17):
    """A harvest of ``S`` units with random statistics (token ids below 5000)."""
    from paramlens.components.harvest import HarvestConfig
    from paramlens.components.result import Harvest

    g = torch.Generator().manual_seed(0)
    vals = torch.rand(S, k, generator=g).sort(dim=1, descending=True).values
    ids = torch.randint(0, 5000, (S, k, width), generator=g)
    kept = torch.arange(500)
    return Harvest(
        method="spd", units=[f"model.layers.{s // 640}.mlp.up_proj:{s % 640}" for s in range(S)],
        targets=[f"model.layers.{i}.mlp.up_proj" for i in range((S + 639) // 640)], sequences=True,
        config=HarvestConfig(top_k=k).model_dump(), corpus={"corpus": "generated"}, n_positions=10**6,
        density=torch.rand(S, generator=g).double() * 0.1, mean_importance=torch.rand(S, generator=g).double() * 0.05,
        top_values=vals, top_positions=torch.randint(0, 10**6, (S, k), generator=g), contexts=ids,
        context_importance=torch.rand(S, k, width, generator=g), token_ids=kept,
        token_fires=torch.randint(0, 50, (S, len(kept) + 1), generator=g), token_counts=torch.full((len(kept) + 1,), 99),
        coactivation=torch.empty(0, 0, dtype=torch.int64), effect_size=torch.rand(S, generator=g),
        promoted=torch.randint(0, 5000, (S, 10), generator=g), promoted_by=torch.rand(S, 10, generator=g),
        suppressed=torch.randint(0, 5000, (S, 10), generator=g), suppressed_by=torch.rand(S, 10, generator=g))


def first_load_s(page: Path, repeats: int = 3) -> float:
    """Median seconds from navigation to the first table rows in headless Chromium."""
    import shutil

    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        for _ in range(repeats):
            tab = browser.new_page()
            start = time.perf_counter()
            tab.goto(page.as_uri())
            tab.wait_for_selector("#units tbody tr")
            times.append(time.perf_counter() - start)
            tab.close()
        browser.close()
    return sorted(times)[len(times) // 2]


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def browser_rows(S: int) -> list[dict]:
    from paramlens.components.browser import write_browser

    harvest = generated_harvest(S)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lazy = write_browser(Path(tmp) / "lazy", harvest, str, title="generated")
        eager = write_browser(Path(tmp) / "eager", harvest, str, title="generated")
        pages = sorted((eager.parent / "data" / "unit").glob("*.js"), key=lambda p: int(p.stem))
        units = eager.parent / "data" / "units.js"
        units.write_text("".join(p.read_text() for p in pages) + units.read_text())  # every page in the first file
        for p in pages:
            p.unlink()
        for name, page in (("every unit's page in the first file", eager), ("ParamLens: unit pages loaded lazily", lazy)):
            rows.append({"browser": name, "units": S, "files": sum(1 for f in page.parent.rglob("*") if f.is_file()),
                         "size, MiB": size_mib(page.parent),
                         "first file, MiB": (page.parent / "data" / "units.js").stat().st_size / 2**20,
                         "first load, s": first_load_s(page)})
            print(f"  {rows[-1]}", flush=True)
    for row in rows:
        row["ratio to one file"] = rows[0]["first load, s"] / row["first load, s"]
    return rows


def induction_rows(steps: int) -> list[dict]:
    """Per known mechanism of the induction model: its matched subcomponents, the firing units whose weights lie in its
    head (:func:`~paramlens.components.known.known_mechanisms`), the found mechanism that overlaps the matched ones
    most, how many of its units lie in the head, and the task accuracy with that mechanism ablated."""
    from decompose_transformers import INDUCTION, INDUCTION_SPD

    from paramlens.components import HarvestConfig, Units, ablated, harvest_model
    from paramlens.components.edit import task_accuracies
    from paramlens.components.graph import attribution_graph
    from paramlens.components.known import known_mechanisms
    from paramlens.components.mechanisms import find_mechanisms
    from paramlens.core.weights import select
    from paramlens.decompose import decompose, score_mechanisms
    from paramlens.decompose.spd import SPDMethod
    from paramlens.models.transformers import train_induction

    model, _ = train_induction(INDUCTION, progress=False)
    for p in model.parameters():
        p.requires_grad_(False)
    patterns = ["blocks.*.attn.*"]
    r = decompose(model, model.source(), patterns, steps=steps, progress=False, **INDUCTION_SPD)
    dec, targets = r.module(), select(model, patterns)
    data = model.source().sample(2048, torch.Generator().manual_seed(5))
    harvest = harvest_model(SPDMethod, dec, model, targets, data, HarvestConfig(batch_size=64), progress=False)
    graph = attribution_graph(SPDMethod, dec, model, targets, data[:256].split(64), progress=False)
    units = Units.of(SPDMethod, targets, INDUCTION_SPD["C"])
    found = find_mechanisms(SPDMethod, dec, model, targets, units, harvest, data, graph)
    task = model.mechanism_task(data[:512])
    scores = score_mechanisms(SPDMethod, dec, model, targets, task)
    known = known_mechanisms(SPDMethod, dec, model, targets, units)
    rows = []
    for name, match in scores.matches.items():
        matched = {f"{t}:{c}" for t, c in match.members}
        best = max(found.groups, key=lambda g: len(matched & set(g["members"])) / len(matched | set(g["members"])),
                   default=None)
        named = {units.names[s] for s, k in enumerate(known)
                 if k is not None and k["mechanism"] == name and harvest.density[s] > 0}
        row = {"known mechanism": name, "matched subcomponents": len(matched), "units in its head": len(named)}
        if best is not None:
            members = set(best["members"])
            parts = [units.parts[units.index(m)] for m in best["members"]]
            acc = task_accuracies(model, ablated(SPDMethod, dec, model, targets, parts), task)
            row.update({"found mechanism": best["id"], "its units": len(members),
                        "Jaccard": len(matched & members) / len(matched | members),
                        "its units in the head": len(named & members),
                        "accuracy intact": acc[name]["before"], "accuracy, found mechanism ablated": acc[name]["after"]})
        rows.append(row)
        print(f"  {row}", flush=True)
    print(found.summary())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384,
                        help="corpus tokens harvested (windows of 64; 0: skip the harvest table)")
    parser.add_argument("--C", type=int, default=64, help="subcomponents per matrix of the LM")
    parser.add_argument("--units", type=int, default=10_000, help="units of the generated browser (0: skip)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--induction-steps", type=int, default=2000, help="SPD steps on the induction model (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tokens:
        print_table(f"harvest of every attention and MLP matrix of the in-project LM (C = {args.C}, "
                    f"{args.threads} thread(s))", harvest_rows(args.tokens, args.C, args.threads))
    if args.units:
        print_table(f"browser of a generated {args.units}-unit harvest, headless Chromium from file://",
                    browser_rows(args.units))
    if args.induction_steps:
        print_table(f"the induction model's known mechanisms among the found ones (SPD, {args.induction_steps} steps)",
                    induction_rows(args.induction_steps))


if __name__ == "__main__":
    main()
