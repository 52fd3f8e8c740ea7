"""Bilinear language models read from their weights, and bilinearising a real SwiGLU model.

Claims:
- a tiny bilinear LM trained on Debian fortunes: the tokens whose self-interaction most raises an output
  token o (read from the weights only) are tokens that the corpus actually follows with o: the corpus
  bigram probability P(o | t) over the top-10 such t is far above P(o), and above the same read from an
  untrained model of the same shape (baseline in the same run);
- SmolLM2-135M with its SiLU gates replaced by the identity: KL to the original, top-1 agreement and
  cross-entropy on fortunes windows, before and after a short fine-tune with the gate annealed to identity.

Usage: python benchmarks/bilinear_lm.py [--steps 2000] [--anneal-steps 60] [--skip-smollm2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, timed  # noqa: E402

from paramlens.bilinear.bilinearise import anneal_to_bilinear, bilinearise, compare  # noqa: E402
from paramlens.bilinear.lm import token_interactions  # noqa: E402
from paramlens.core.data import TokenWindows  # noqa: E402
from paramlens.core.resolve import resolve  # noqa: E402
from paramlens.core.text import load_corpus  # noqa: E402
from paramlens.models.lm.tiny import TinyLMConfig, build_tiny_lm, corpus_tokens, train_tiny_lm  # noqa: E402

OUTPUTS = (" the", ".", ",", " of", " you", " and")


def bigram_table(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """``(vocab, vocab)`` P(next | prev) counted from the stream (add-one smoothing)."""
    counts = torch.ones(vocab, vocab)
    counts.index_put_((tokens[:-1], tokens[1:]), torch.ones(len(tokens) - 1), accumulate=True)
    return counts / counts.sum(-1, keepdim=True)


def tiny_lm_rows(steps: int) -> list[dict]:
    cfg = TinyLMConfig(n_steps=steps)
    (model, tok, history), seconds = timed(lambda: train_tiny_lm(cfg, progress=False))
    tokens = corpus_tokens(cfg, tok)
    bigram = bigram_table(tokens, cfg.vocab_size)
    base = torch.bincount(tokens, minlength=cfg.vocab_size).float() / len(tokens)
    torch.manual_seed(cfg.seed)  # the baseline's random weights, the same on every run
    untrained = build_tiny_lm(cfg)
    rows = []
    for word in OUTPUTS:
        (o,) = tok(word)["input_ids"]
        row = {"output": repr(word), "P(o)": float(base[o])}
        for name, m in (("trained", model), ("untrained", untrained)):
            (found,) = token_interactions(m, 0, [o], top=2000)
            selves = [i for i, j, _ in found.pairs if i == j][:10]
            row[f"P(o|top-10), {name}"] = float(bigram[selves, o].mean())
            if name == "trained":
                row["top tokens"] = " ".join(repr(tok.decode([t])) for t in selves[:5])
        row["trained / untrained"] = row["P(o|top-10), trained"] / row["P(o|top-10), untrained"]
        rows.append(row)
    print(f"tiny bilinear LM: {steps} steps in {seconds:.0f} s, final loss {history[-1]['loss']:.3f}")
    return rows


def smollm2_rows(anneal_steps: int) -> list[dict]:
    loaded = resolve("smollm2")
    model, tok = loaded.module, loaded.tokenizer
    stream = torch.tensor(tok(load_corpus("fortunes", 400_000))["input_ids"], dtype=torch.long)
    data = TokenWindows(stream, 64)
    held_out = data.sample(16, torch.Generator().manual_seed(123))
    rows = []
    plain = compare(model, bilinearise(model), held_out)
    rows.append({"model": "SiLU -> identity", "steps": 0, "KL (nats/token)": plain.kl, "top-1 agreement": plain.top1_agreement,
                 "CE original": plain.ce_original, "CE bilinear": plain.ce_bilinear,
                 "mean MLP rel. error": sum(plain.mlp_relative_error.values()) / len(plain.mlp_relative_error)})
    if anneal_steps:
        (tuned, _), seconds = timed(lambda: anneal_to_bilinear(model, data, anneal_steps, lr=1e-4, batch_size=4,
                                                              progress=False))
        after = compare(model, tuned, held_out)
        rows.append({"model": f"annealed ({seconds:.0f} s)", "steps": anneal_steps, "KL (nats/token)": after.kl,
                     "top-1 agreement": after.top1_agreement, "CE original": after.ce_original,
                     "CE bilinear": after.ce_bilinear,
                     "mean MLP rel. error": sum(after.mlp_relative_error.values()) / len(after.mlp_relative_error)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps of the tiny bilinear LM")
    parser.add_argument("--anneal-steps", type=int, default=60)
    parser.add_argument("--skip-smollm2", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print_table("tokens t with the largest self-interaction toward o (layer 0, weights only) vs corpus bigrams",
                tiny_lm_rows(args.steps))
    if not args.skip_smollm2:
        print_table("SmolLM2-135M bilinearised, on held-out fortunes windows (16 x 64 tokens)",
                    smollm2_rows(args.anneal_steps))


if __name__ == "__main__":
    main()
