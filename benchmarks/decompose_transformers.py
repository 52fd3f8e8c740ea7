"""SPD on transformers whose mechanisms are known, and on a language model: are the subcomponents the mechanisms?

1. The induction model (trained here, seeded): per mechanism (previous-token head, induction head) the matched
   subcomponents, precision and recall of their activity, task accuracy with them ablated (chance 1/vocab), and
   their summed weights against the head's slice of W_Q, W_K, W_V, W_O (cosine, norm ratio).
2. Each SPD training option on and off on the induction model, same seed and steps: what it changed (output KL
   with importances as masks as a share of the KL with the targets ablated, CE unrecovered, L0 per token, alive, the scores of 1, wall time).
3. The compiled RASP-style programs (reverse, histogram, sort, frac_prevs): every non-zero attention and MLP
   matrix decomposed; the same per-mechanism table (mechanisms needed at the same positions are told apart by
   the weights they own; "spared" is the accuracy of the outputs that do not need the ablated mechanism).
4. Language models: the in-project Llama-style LM (``--lm``: every q, k, v, o, gate, up, down matrix) and one
   block of SmolLM2-135M (``--smollm2``: its seven matrices; the model runs whole): CE / KL unrecovered, L0 per layer, alive, wall time, peak memory,
   next to the same decomposition at its random initialisation.

Usage: python benchmarks/decompose_transformers.py [--steps 2000] [--option-steps 1000] [--program-steps 2000]
       [--lm] [--lm-steps 30000] [--lm-set KEY=VALUE ...] [--smollm2] [--smollm2-steps 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, restart_peak, status_kib

from paramlens.core.weights import select
from paramlens.decompose import decompose
from paramlens.decompose.mechanism_scores import MechanismScores, score_mechanisms
from paramlens.decompose.spd import SPDMethod
from paramlens.models import transformers as zoo
from paramlens.models.transformers import InductionConfig, RepeatedSegments, induction_task, program_task

INDUCTION = InductionConfig(vocab_size=32, length=24, d_model=32)
INDUCTION_SPD = {"C": 16, "batch_size": 64, "lr": 3e-3, "lr_schedule": "constant", "output_loss": "kl",
                 "importance_minimality_coeff": 1e-2}
OPTIONS: dict[str, dict[str, Any]] = {
    "paper SPD (baseline)": {},
    "importance: MLP per target": {"ci_fn": "mlp_per_target"},
    "importance: shared MLP": {"ci_fn": "mlp_shared"},
    "importance: shared transformer": {"ci_fn": "transformer_shared"},
    "adversarial masks, fresh": {"adversarial_recon_coeff": 1.0},
    "adversarial masks, persistent": {"adversarial_recon_coeff": 1.0, "pgd_persistent": True},
    "p annealed 2 -> 0.5": {"p": 2.0, "p_final": 0.5, "p_anneal_start": 0.2, "p_anneal_end": 0.8},
    "frequency term": {"frequency_coeff": 1e-2},
    "delta component": {"delta_component": True},
    "faithfulness warm-up": {"faithfulness_warmup_steps": 500},
}
LM_SPD = {"batch_size": 8, "output_loss": "kl", "lr": 1e-3, "importance_minimality_coeff": 3e-4,
          "layerwise_recon_coeff": 0.0, "faithfulness_warmup_steps": 200}
PROGRAM_SPD = {"C": 16, "batch_size": 64, "lr": 3e-3, "lr_schedule": "constant", "output_loss": "mse",
               "faithfulness_warmup_steps": 1000, "faithfulness_warmup_lr": 0.05, "delta_component": True}


def mechanism_rows(label: str, scores: MechanismScores) -> list[dict[str, Any]]:
    rows = []
    for name, m in scores.matches.items():
        w = scores.weights[name]
        spared = scores.ablation.spared.get(name, float("nan")) if scores.ablation.spared else float("nan")
        rows.append({"model": label, "mechanism": name, "matched": len(m.members), "precision": m.precision,
                     "recall": m.recall, "accuracy": scores.ablation.intact.get(name, float("nan")),
                     "ablated": scores.ablation.ablated[name][name], "spared": spared,
                     "chance": scores.ablation.chance, "cosine": w.cosine, "norm ratio": w.norm_ratio})
    return rows


def induction_run(model: torch.nn.Module, steps: int, settings: dict[str, Any]) -> tuple[Any, MechanismScores, float]:
    patterns = ["blocks.*.attn.*"]
    start = time.perf_counter()
    r = decompose(model, model.source(), patterns, steps=steps, progress=False, **{**INDUCTION_SPD, **settings})
    seconds = time.perf_counter() - start
    tokens = RepeatedSegments(INDUCTION.vocab_size, INDUCTION.length, INDUCTION.min_segment).sample(
        512, torch.Generator().manual_seed(11))
    scores = score_mechanisms(SPDMethod, r.module(), model, select(model, patterns), induction_task(model, tokens))
    return r, scores, seconds


def option_row(name: str, r: Any, scores: MechanismScores, seconds: float) -> dict[str, Any]:
    l0 = [v for k, v in r.metrics.items() if k.startswith("ci_l0/")]
    alive = [v for k, v in r.metrics.items() if k.startswith("alive/")]
    row = {"option": name, "KL unrecovered %": r.metrics["kl_unrecovered_pct"],
           "CE unrecovered %": r.metrics["ce_unrecovered_pct"],
           "L0 / token": sum(l0), "alive": sum(alive)}
    for mech in scores.matches:
        row[f"{mech[:4]} cos"] = scores.weights[mech].cosine
        row[f"{mech[:4]} ablated"] = scores.ablation.ablated[mech][mech]
    row["s"] = seconds
    return row


def induction_section(args: argparse.Namespace) -> None:
    model, _ = zoo.train_induction(INDUCTION, progress=False)
    print("induction model:", {k: round(v, 3) for k, v in zoo.circuit_summary(model).items()})
    r, scores, seconds = induction_run(model, args.steps, {})
    print_table(f"induction model, SPD C = 16 on W_Q, W_K, W_V, W_O of both layers, {args.steps} steps, "
                f"{seconds:.0f} s; KL unrecovered {r.metrics['kl_unrecovered_pct']:.1f} %",
                mechanism_rows("induction", scores))
    rows = []
    for name, settings in OPTIONS.items():
        rows.append(option_row(name, *induction_run(model, args.option_steps, settings)))
        print(f"  {name}: done", flush=True)
    print_table(f"SPD options on the induction model ({args.option_steps} steps each, same seed)", rows)


def program_section(args: argparse.Namespace) -> None:
    rows = []
    for name in ("reverse", "histogram", "sort", "frac_prevs"):
        model = getattr(zoo, f"{name}_model")()
        targets = [t.name for t in select(model, "blocks.*") if bool(t.matrix(model).abs().max() > 0)]
        start = time.perf_counter()
        r = decompose(model, model.source(), targets, steps=args.program_steps, progress=False, **PROGRAM_SPD)
        ids = model.source().sample(512, torch.Generator().manual_seed(9))
        scores = score_mechanisms(SPDMethod, r.module(), model, select(model, targets),
                                  program_task(model.ground_truth(), ids))
        print(f"  {name}: {time.perf_counter() - start:.0f} s, recon/ci {r.metrics['recon/ci']:.3g} "
              f"(zero {r.metrics['recon/zero']:.3g}, unmasked {r.metrics['recon/unmasked']:.3g})", flush=True)
        rows += [row for row in mechanism_rows(name, scores) if row["mechanism"] not in ("embed", "pos_embed",
                                                                                         "unembed")]
    print_table(f"compiled programs, SPD C = 16 on every non-zero block matrix, {args.program_steps} steps", rows)


def lm_row(label: str, r: Any, seconds: float, before: int) -> dict[str, Any]:
    """The table row of decomposition ``r``; ``before``: the resident KiB when it started (:func:`restart_peak`)."""
    layers = sorted({k.split("/", 1)[1].split(".")[2] for k in r.metrics if k.startswith("ci_l0/model.layers.")})
    l0 = {layer: sum(v for k, v in r.metrics.items() if k.startswith(f"ci_l0/model.layers.{layer}.")) for layer in layers}
    return {"model": Path(label).name, "CE unrecovered %": r.metrics["ce_unrecovered_pct"],
            "random init CE unrec. %": r.chance["ce_unrecovered_pct"], "KL unrecovered %": r.metrics["kl_unrecovered_pct"],
            "random init KL unrec. %": r.chance["kl_unrecovered_pct"],
            "L0 / token per layer": " ".join(f"{v:.0f}" for v in l0.values()),
            "alive": int(sum(v for k, v in r.metrics.items() if k.startswith("alive/"))),
            "s": seconds, "peak memory over the model, GiB": (status_kib("VmHWM") - before) / 2**20}


def lm_settings(args: argparse.Namespace) -> dict[str, Any]:
    """LM_SPD with ``--lm-C`` and each ``--lm-set key=value`` applied (values are parsed by the config)."""
    settings: dict[str, Any] = {**LM_SPD, "C": args.lm_C}
    for item in args.lm_set:
        key, _, value = item.partition("=")
        settings[key] = value
    return settings


def lm_section(args: argparse.Namespace) -> None:
    import tempfile

    from paramlens.core.data import TokenRows
    from paramlens.core.resolve import resolve
    from paramlens.core.text import TextOptions, lm_windows
    from paramlens.models.lm.tiny import TinyLMConfig, train_tiny_lm

    runs = []
    if args.lm:
        folder = Path(tempfile.mkdtemp()) / "tiny-lm"
        train_tiny_lm(TinyLMConfig(mlp="swiglu", bos=True), folder, progress=False)  # a Llama-style LM, ~3 min
        runs.append((str(folder), ["model.layers.*.self_attn.*_proj", "model.layers.*.mlp.*_proj"], args.lm_steps))
    if args.smollm2:
        runs.append(("smollm2", [f"model.layers.{args.smollm2_block}.{part}" for part in ("self_attn.*_proj",
                                                                                       "mlp.*_proj")],
                     args.smollm2_steps))
    rows = []
    for spec, patterns, steps in runs:
        loaded = resolve(spec, seed=0)
        model = loaded.runnable("decompose")
        data = TokenRows(lm_windows(loaded, TextOptions(corpus="fortunes", tokens=65536, context=64)))
        before, start = restart_peak(), time.perf_counter()
        r = decompose(model, data, patterns, steps=steps, progress=True, **lm_settings(args))
        rows.append(lm_row(spec, r, time.perf_counter() - start, before))
    print_table("language models, SPD on every attention and MLP matrix", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="SPD steps on the induction model")
    parser.add_argument("--option-steps", type=int, default=1000, help="steps per option run")
    parser.add_argument("--program-steps", type=int, default=2000, help="SPD steps per compiled program")
    parser.add_argument("--lm", action="store_true", help="also decompose the in-project LM")
    parser.add_argument("--lm-steps", type=int, default=30_000)
    parser.add_argument("--lm-C", type=int, default=64)
    parser.add_argument("--lm-set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other SPD setting for the language models; repeat")
    parser.add_argument("--smollm2", action="store_true", help="also one block of SmolLM2-135M")
    parser.add_argument("--smollm2-steps", type=int, default=500)
    parser.add_argument("--smollm2-block", type=int, default=1, help="zeroing block 1 raises the CE on fortunes "
                        "4.21 -> 7.65; block 3: 4.21 -> 4.20 (CE unrecovered undefined)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["induction", "programs"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "induction" not in args.skip:
        induction_section(args)
    if "programs" not in args.skip:
        program_section(args)
    if args.lm or args.smollm2:
        lm_section(args)


if __name__ == "__main__":
    main()
