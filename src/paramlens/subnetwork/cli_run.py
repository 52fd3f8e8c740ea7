"""What ``paramlens bigram`` does: load a language model and its token windows, find the bigram subnetwork,
report."""

from __future__ import annotations

from pathlib import Path

from paramlens.core.resolve import resolve_lm
from paramlens.core.runs import new_run_dir
from paramlens.core.text import TextOptions, lm_windows
from paramlens.report import Section, write_report
from paramlens.subnetwork.bigram import BigramConfig, BigramSubnetwork, bigram_subnetwork


def run_bigram(model: str, text: TextOptions, cfg: BigramConfig, out_dir: Path,
               trust_code: bool = False) -> tuple[BigramSubnetwork, Path]:
    loaded = resolve_lm(model, "bigram", causal=True, trust_code=trust_code)
    result = bigram_subnetwork(loaded.module, lm_windows(loaded, text), cfg, name=loaded.name)
    folder = new_run_dir(out_dir, "bigram")
    result.save(folder)
    write_report(folder, f"ParamLens bigram subnetwork: {loaded.name}", [], [Section(
        title=f"Bigram subnetwork of {loaded.name}", text=result.summary(), figures=result.figures(folder),
        table=result.per_matrix)])
    return result, folder
