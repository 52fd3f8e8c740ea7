"""How much does running a model with substituted weights cost?

Compares, in one run, for a residual MLP from the zoo and a small GPT-2 (random init):
  plain       model(x) with its own weights                          (reference, ratio 1.0)
  run_with    core.weights.run_with, every target replaced             (the ParamLens way)
  deepcopy    copy.deepcopy(model) then write the weights, then forward (the naive way)
and for per-example weights (a different matrix for each of B examples):
  batched     run_with(..., batched=True) through torch.func.vmap
  loop        a Python loop of B single-example run_with calls         (naive)

Usage: python benchmarks/weights_substitution.py [--repeats N]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from rich.console import Console
from rich.table import Table

from paramlens.core.weights import run_with, select
from paramlens.models.toy.residual_mlp import ResidualMLP, ResidualMLPConfig


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=4, n_head=4, n_embd=256, vocab_size=2048, n_positions=128,
                                        bos_token_id=0, eos_token_id=0)).eval()
    return model, "transformer.h.*", torch.randint(0, 2048, (8, 64)), lambda out: out.logits


def residual_mlp():
    torch.manual_seed(0)
    model = ResidualMLP(ResidualMLPConfig(n_layers=2)).eval()
    return model, "layers.*", torch.randn(512, 100), lambda out: out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    table = Table(title="weight substitution: time per forward, ratio to the plain forward")
    for col in ("model", "targets", "variant", "ms", "ratio"):
        table.add_column(col, justify="left" if col in ("model", "variant") else "right")
    for name, build in (("residual MLP (2 layers)", residual_mlp), ("GPT-2 4x256", gpt2)):
        model, pattern, x, head = build()
        targets = select(model, pattern)
        new = {t: t.matrix(model).detach() * 1.01 for t in targets}

        def naive():
            clone = copy.deepcopy(model)
            with torch.no_grad():
                for t, m in new.items():
                    clone.get_submodule(t.name).weight.copy_(t.to_stored(m))
            return clone(x)

        with torch.no_grad():
            rows = [("plain", timed(lambda: model(x), args.repeats)),
                    ("run_with", timed(lambda: run_with(model, new, x), args.repeats)),
                    ("deepcopy + edit", timed(naive, args.repeats))]
            assert torch.allclose(head(run_with(model, new, x)), head(naive()), atol=1e-5)
        base = rows[0][1]
        for variant, seconds in rows:
            table.add_row(name, str(len(targets)), variant, f"{seconds * 1e3:.2f}", f"{seconds / base:.2f}")

    model, _, _, _ = residual_mlp()
    target = select(model, "layers.0.mlp_in")[0]
    B = 256
    xs = torch.randn(B, 100)
    per_example = target.matrix(model).detach() + 0.01 * torch.randn(B, *target.shape)
    with torch.no_grad():
        batched = timed(lambda: run_with(model, {target: per_example}, xs, batched=True), args.repeats // 4 or 1)
        loop = timed(lambda: torch.cat([run_with(model, {target: per_example[b]}, xs[b : b + 1]) for b in range(B)]),
                     args.repeats // 4 or 1)
        same = torch.allclose(run_with(model, {target: per_example}, xs, batched=True),
                              torch.cat([run_with(model, {target: per_example[b]}, xs[b : b + 1]) for b in range(B)]),
                              atol=1e-5)
    assert same
    table.add_row(f"per-example weights, B={B}", "1", "loop (naive)", f"{loop * 1e3:.2f}", "1.00")
    table.add_row(f"per-example weights, B={B}", "1", "batched (vmap)", f"{batched * 1e3:.2f}", f"{batched / loop:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
