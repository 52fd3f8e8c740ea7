"""What ``paramlens bigram`` does: load a language model and a corpus, find the bigram subnetwork, report."""

from __future__ import annotations

from pathlib import Path

from paramlens.core.runs import new_run_dir
from paramlens.core.text import corpus_token_ids
from paramlens.models.lm.pretrained import load_lm
from paramlens.report import Section, write_report
from paramlens.subnetwork.bigram import BigramConfig, BigramSubnetwork, bigram_subnetwork


def run_bigram(model: str, corpus: str, n_tokens: int, cfg: BigramConfig, out_dir: Path) -> tuple[BigramSubnetwork, Path]:
    net, tokenizer, name = load_lm(model)
    result = bigram_subnetwork(net, corpus_token_ids(tokenizer, corpus, n_tokens), cfg, name=name)
    folder = new_run_dir(out_dir, "bigram")
    result.save(folder)
    write_report(folder, f"ParamLens bigram subnetwork: {name}", [], [Section(
        title=f"Bigram subnetwork of {name}", text=result.summary(), figures=result.figures(folder),
        table=result.per_matrix)])
    return result, folder
