"""What ``paramlens bigram`` does: load a language model and its token windows, find the bigram subnetwork,
write the run folder."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from paramlens.core.resolve import resolve_lm
from paramlens.core.text import TextOptions, lm_windows
from paramlens.report.run import write_run
from paramlens.subnetwork.bigram import BigramConfig, BigramSubnetwork, bigram_subnetwork


def run_bigram(model: str, text: TextOptions, cfg: BigramConfig, out_dir: Path,
               trust_code: bool = False) -> tuple[BigramSubnetwork, Path]:
    loaded = resolve_lm(model, "bigram", causal=True, trust_code=trust_code)
    result = bigram_subnetwork(loaded.module, lm_windows(loaded, text), cfg, name=loaded.name)
    folder = write_run(result, out_dir, f"ParamLens bigram subnetwork: {loaded.name}", name="bigram",
                       heading=f"Bigram subnetwork of {loaded.name}",
                       config={"model": model, **asdict(text), **cfg.model_dump(mode="json")})
    return result, folder
