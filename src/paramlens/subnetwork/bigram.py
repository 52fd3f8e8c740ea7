"""Bigram subnetworks (Chang & Bergen 2025): the weights of a language model that alone predict the next
token from the current one.

Continuous sparsification (:mod:`paramlens.subnetwork.sparsify`) over every transformer-block matrix (not
embeddings, unembedding, norms or biases); the task loss is the cross-entropy of the masked model's next-token
distribution against the corpus bigram distribution ``P(next | current)``, counted with the model's own
tokenizer. Reported: Pearson r between the per-token surprisals of the subnetwork and of the bigram model on
held-out tokens, active parameters (count and share, per matrix and per layer), and ablations: the language
modelling loss of the full model, of the model without the subnetwork, and without a random subnetwork of the
same per-matrix sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from paramlens.core.runs import Result
from paramlens.core.streams import block_prefix, token_embeddings
from paramlens.core.weights import Target, run_with, select
from paramlens.errors import ParamLensError
from paramlens.subnetwork.sparsify import SparseMask, SparsifyConfig, sparsify


class BigramConfig(SparsifyConfig):
    batch: int = Field(8, ge=1)
    held_out: float = Field(0.1, gt=0, lt=1, description="share of the windows (the last ones) held out for evaluation")
    smoothing: float = Field(0.01, gt=0, description="add-k smoothing of the bigram counts")


class BigramModel:
    """``P(next | current)`` from token counts, add-``k`` smoothed. Counts are kept sparse (sorted pair keys and
    row offsets), so a 50k vocabulary costs memory only for the pairs that occur."""

    def __init__(self, windows: Tensor, vocab: int, k: float):
        """Counts of the consecutive pairs inside each window of ``windows`` ``(n, T)``."""
        self.vocab, self.k = vocab, k
        pairs = (windows[:, :-1] * vocab + windows[:, 1:]).flatten()
        self.keys, counts = torch.unique(pairs, return_counts=True)  # sorted
        self.counts = counts.double()
        rows = self.keys // vocab
        self.row_totals = torch.zeros(vocab, dtype=torch.float64).index_add_(0, rows, self.counts)
        self.row_start = torch.searchsorted(rows, torch.arange(vocab + 1))

    def probs(self, current: Tensor) -> Tensor:
        """``(N, vocab)`` float32 rows ``P(. | current)`` for ``current`` (any shape, ``N`` elements)."""
        flat = current.flatten()
        start, stop = self.row_start[flat], self.row_start[flat + 1]
        length = stop - start
        row = torch.repeat_interleave(torch.arange(len(flat)), length)
        first = torch.repeat_interleave(start - (torch.cumsum(length, 0) - length), length)
        idx = first + torch.arange(int(length.sum()))
        dense = torch.zeros(len(flat), self.vocab, dtype=torch.float64)
        dense[row, self.keys[idx] % self.vocab] = self.counts[idx]
        return ((dense + self.k) / (self.row_totals[flat, None] + self.k * self.vocab)).float()

    def surprisal(self, current: Tensor, nxt: Tensor) -> Tensor:
        """``-log P(next | current)`` in nats, elementwise, flattened."""
        c, q = current.flatten(), current.flatten() * self.vocab + nxt.flatten()
        pos = torch.searchsorted(self.keys, q).clamp(max=len(self.keys) - 1)
        got = torch.where(self.keys[pos] == q, self.counts[pos], torch.zeros((), dtype=torch.float64))
        return -torch.log((got + self.k) / (self.row_totals[c] + self.k * self.vocab))


@dataclass
class BigramSubnetwork(Result):
    """A bigram subnetwork and how it behaves.

    Attributes:
        model: name. masks: ``{target: bool (d_out, d_in)}``. active / total: parameters kept / maskable.
        per_matrix: ``[{"target", "layer", "kind", "active", "share"}]`` (share of all active parameters).
        pearson: r between subnetwork and bigram surprisals on held-out tokens; pearson_full: the same for the
            full model. loss_full / loss_without / loss_without_random / loss_subnetwork: mean next-token
            cross-entropy (nats) on held-out tokens. steps, undecided: sparsification run.
    """

    kind = "bigram_subnetwork"
    model: str
    masks: dict[str, Tensor]
    active: int
    total: int
    per_matrix: list[dict]
    pearson: float
    pearson_full: float
    loss_full: float
    loss_without: float
    loss_without_random: float
    loss_subnetwork: float
    steps: int
    undecided: float

    def weights(self, model: nn.Module) -> dict:
        """``{target: W * mask}``: ``model`` reduced to this subnetwork (for :func:`paramlens.core.weights.run_with`)."""
        return SparseMask(self.masks, self.steps, self.undecided, []).weights(model)

    def per_layer(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for row in self.per_matrix:
            out[row["layer"]] = out.get(row["layer"], 0) + row["active"]
        return out

    def summary(self) -> str:
        top = max(self.per_matrix, key=lambda r: r["active"])
        return "\n".join([
            f"{self.model}: bigram subnetwork of {self.active:,} / {self.total:,} block parameters "
            f"({self.active / self.total:.2%}), {self.steps} steps, {self.undecided:.2%} masks undecided",
            f"  Pearson r of surprisals vs the bigram model: subnetwork {self.pearson:.3f}, full model "
            f"{self.pearson_full:.3f}",
            f"  held-out loss (nats): full {self.loss_full:.3f}; subnetwork alone {self.loss_subnetwork:.3f}; "
            f"without it {self.loss_without:.3f}; without a random one of the same sizes {self.loss_without_random:.3f}",
            f"  largest share: {top['target']} ({top['share']:.1%} of the subnetwork)",
        ])

    def table(self) -> list[dict]:
        return self.per_matrix

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        from paramlens.report import plots

        fig, (ax,) = plots.panels(1, max(5, 0.35 * len(self.per_matrix)))
        ax.bar(range(len(self.per_matrix)), [r["share"] for r in self.per_matrix])
        ax.set_xticks(range(len(self.per_matrix)), [r["target"].split(".", 2)[-1] for r in self.per_matrix],
                      rotation=90, fontsize=6)
        ax.set_ylabel("share of the subnetwork")
        return [plots.save(fig, folder / f"{prefix}bigram_per_matrix.png", "Where the bigram subnetwork's parameters sit, per block matrix.")]


def _layer_of(name: str, prefix: str) -> int:
    rest = name[len(prefix) + 1:]
    return int(rest.split(".")[0])


def _surprisal(model: nn.Module, ids: Tensor, weights: dict | None = None) -> Tensor:
    """Per-token next-token surprisal ``(B, T - 1)`` in nats (with ``weights`` substituted, if given)."""
    with torch.no_grad():
        out = run_with(model, weights, input_ids=ids) if weights else model(input_ids=ids)
        logp = F.log_softmax(out.logits.float(), dim=-1)
    return -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]


def _random_like(mask: SparseMask, g: torch.Generator) -> SparseMask:
    masks = {}
    for name, m in mask.masks.items():
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[torch.randperm(m.numel(), generator=g)[: int(m.sum())]] = True
        masks[name] = flat.view(m.shape)
    return SparseMask(masks, 0, 0.0, [])


def bigram_subnetwork(model: nn.Module, windows: Tensor, cfg: BigramConfig | None = None, name: str = "model",
                      progress: bool = True) -> BigramSubnetwork:
    """Find and evaluate the bigram subnetwork of ``model`` on token ``windows`` ``(n, T)``."""
    cfg = cfg or BigramConfig()
    vocab = token_embeddings(model).shape[0]
    if int(windows.max()) >= vocab:
        raise ParamLensError(f"token id {int(windows.max())} is outside the model's vocabulary of {vocab}")
    split = int(len(windows) * (1 - cfg.held_out))
    if split == 0 or split == len(windows):
        raise ParamLensError(f"{len(windows)} windows are too few to hold {cfg.held_out:.0%} out; give more tokens")
    train_windows, eval_windows = windows[:split], windows[split:]
    bigram = BigramModel(train_windows, vocab, cfg.smoothing)
    prefix = block_prefix(model)
    targets: list[Target] = select(model, f"{prefix}.*")
    g = torch.Generator().manual_seed(cfg.seed)

    def task_loss(run, step: int) -> Tensor:
        ids = train_windows[torch.randint(0, len(train_windows), (cfg.batch,), generator=g)]
        logp = F.log_softmax(run(input_ids=ids).logits.float(), dim=-1)
        target = bigram.probs(ids).view(*ids.shape, vocab)
        return -(target * logp).sum(-1).mean()

    mask = sparsify(model, targets, task_loss, cfg, progress=progress)
    s_full = _surprisal(model, eval_windows)
    s_sub = _surprisal(model, eval_windows, mask.weights(model))
    s_without = _surprisal(model, eval_windows, mask.weights(model, keep=False))
    s_random = _surprisal(model, eval_windows, _random_like(mask, g).weights(model, keep=False))
    s_bigram = bigram.surprisal(eval_windows[:, :-1], eval_windows[:, 1:]).float()
    active = mask.active
    per_matrix = [{"target": t.name, "layer": _layer_of(t.name, prefix), "kind": t.name.split(".")[-1],
                   "active": int(mask.masks[t.name].sum()), "share": float(mask.masks[t.name].sum()) / max(active, 1)}
                  for t in targets]
    return BigramSubnetwork(
        name, mask.masks, active, mask.total, per_matrix,
        float(np.corrcoef(s_sub.flatten().numpy(), s_bigram.numpy())[0, 1]),
        float(np.corrcoef(s_full.flatten().numpy(), s_bigram.numpy())[0, 1]),
        float(s_full.mean()), float(s_without.mean()), float(s_random.mean()), float(s_sub.mean()),
        mask.steps, mask.undecided)
