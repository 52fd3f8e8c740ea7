"""A 2-layer attention-only transformer trained to continue repeated segments, which it does with an induction
circuit: a previous-token head in layer 0 and an induction head in layer 1 (Olsson et al. 2022).

Tokens ``(batch, T)`` -> token embedding ``embed`` + learned position embedding ``pos`` -> two residual attention
blocks -> ``unembed`` -> logits ``(batch, T, vocab_size)``. No layer norm, no MLP, no biases, so every mechanism
lives in the attention weights. Each block stores its projections as separate ``nn.Linear`` targets
``blocks.{l}.attn.{q,k,v,o}``, all ``(d_model, d_model)`` in the ``(d_out, d_in)`` view; head ``h`` is rows
``h * d_head : (h + 1) * d_head`` of ``q``, ``k``, ``v`` (TransformerLens ``W_Q``, ``W_K``, ``W_V``) and the same
columns of ``o`` (``W_O``).

The loss is next-token cross-entropy on the induction positions only
(:func:`~paramlens.models.transformers.induction_data.induction_positions`), plus a group-lasso penalty on each
head's weight norm, weighted by ``exp(-loss)`` so that it acts once the circuit works. Without it both heads of a
layer learn the same job (ablating one leaves the other doing it); with it one head per layer does the job and the
others decay to zero, so the circuit is one previous-token head and one induction head and ablating either drops
accuracy to about chance. :mod:`~paramlens.models.transformers.induction_checks` measures all of this.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from pydantic import Field, model_validator
from torch import Tensor, nn

from paramlens.core.ground_truth import GroundTruth
from paramlens.core.mechanism_task import MechanismTask
from paramlens.errors import ParamLensError
from paramlens.models.train import TrainConfig, read_saved, seeded, train, validated
from paramlens.models.transformers.induction_checks import find_heads, head_norms, head_slice
from paramlens.models.transformers.induction_data import RepeatedSegments, induction_positions

#: the mechanisms of :meth:`InductionTransformer.ground_truth`, in order (mechanism ``i`` lives in layer ``i``)
MECHANISMS = ("previous_token", "induction")


class InductionConfig(TrainConfig):
    """Defaults train in about 20 s on one CPU core; ``vocab_size=32, length=24, d_model=32`` (the test size) in
    about 10 s. Both reach 98-100 % induction accuracy with one previous-token and one induction head."""

    kind: Literal["induction"] = "induction"
    vocab_size: int = Field(64, ge=4)
    length: int = Field(32, ge=4, description="tokens per sequence")
    min_segment: int = Field(4, ge=2, description="shortest repeated segment")
    d_model: int = Field(64, ge=2)
    n_heads: int = Field(2, ge=1, description="heads per layer")
    n_steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.0
    head_penalty: float = Field(0.03, ge=0, description="weight of the per-head weight norms in the loss (a group "
                                "lasso, scaled by the batch's geometric-mean probability of the right token): it "
                                "leaves one working head per layer; 0 trains redundant heads")

    @model_validator(mode="after")
    def _fits(self) -> InductionConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not a multiple of n_heads={self.n_heads}")
        if self.vocab_size < self.length:
            raise ValueError(f"vocab_size={self.vocab_size} must be at least length={self.length}")
        if self.min_segment > self.length // 2:
            raise ValueError(f"min_segment={self.min_segment} must be at most length // 2 = {self.length // 2}")
        return self


class Attention(nn.Module):
    """Causal multi-head attention with separate bias-free ``q``, ``k``, ``v``, ``o`` projections."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model, bias=False) for _ in range(4))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(batch, T, d_model)`` -> output ``(batch, T, d_model)`` and pattern ``(batch, n_heads, T, T)``
        (query, key; rows sum to 1)."""
        q, k, v = (rearrange(m(x), "b t (h e) -> b h t e", h=self.n_heads) for m in (self.q, self.k, self.v))
        scores = einsum(q, k, "b h t e, b h s e -> b h t s") / math.sqrt(q.shape[-1])
        T = x.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        z = einsum(pattern, v, "b h t s, b h s e -> b h t e")
        return self.o(rearrange(z, "b h t e -> b t (h e)")), pattern


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.attn = Attention(d_model, n_heads)


class InductionTransformer(nn.Module):
    def __init__(self, cfg: InductionConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.length, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads) for _ in range(2))
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        for p in (self.embed.weight, self.pos.weight):
            nn.init.normal_(p, std=cfg.d_model**-0.5)

    def run(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(batch, T)`` int64 with ``T <= length`` -> logits ``(batch, T, vocab_size)`` and each layer's
        attention pattern ``(batch, n_heads, T, T)``."""
        if tokens.dim() != 2 or tokens.shape[1] > self.cfg.length:
            raise ParamLensError(f"tokens of shape {tuple(tokens.shape)}: expected (batch, T) with T <= "
                                 f"{self.cfg.length}, the model's length")
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape)  # through the module: a target
        resid = self.embed(tokens) + self.pos(positions)
        patterns = []
        for block in self.blocks:
            out, pattern = block.attn(resid)
            resid = resid + out
            patterns.append(pattern)
        return self.unembed(resid), patterns

    def forward(self, tokens: Tensor) -> Tensor:
        """``(batch, T)`` int64 -> logits ``(batch, T, vocab_size)``."""
        return self.run(tokens)[0]

    def source(self) -> RepeatedSegments:
        return RepeatedSegments(self.cfg.vocab_size, self.cfg.length, self.cfg.min_segment)

    def mechanism_task(self, tokens: Tensor) -> MechanismTask:
        """The scoring task of its two mechanisms on repeated-segment ``tokens`` ``(B, T)`` (see
        :func:`~paramlens.models.transformers.tasks.induction_task`)."""
        from paramlens.models.transformers.tasks import induction_task

        return induction_task(self, tokens)

    def ground_truth(self, heads: tuple[int, int] | None = None) -> GroundTruth:
        """Mechanism 0 (previous-token) is the layer-0 head's slices of ``q``, ``k``, ``v``, ``o``; mechanism 1
        (induction) the layer-1 head's. ``heads``: ``(previous-token head, induction head)``, found by
        :func:`~paramlens.models.transformers.induction_checks.find_heads` when not given. Each target gets
        ``(2, d_model, d_model)``: its own layer's head slice, zeros for the other mechanism; the other heads of
        a layer are not covered."""
        heads = heads or find_heads(self)
        matrices = {}
        for layer, head in enumerate(heads):
            for name in "qkvo":
                weight = getattr(self.blocks[layer].attn, name).weight.detach()
                parts = torch.zeros(len(MECHANISMS), *weight.shape)
                parts[layer] = head_slice(weight, head, self.cfg.n_heads, output=name == "o")
                matrices[f"blocks.{layer}.attn.{name}"] = parts
        return GroundTruth(matrices=matrices, description=(
            f"previous-token head L0H{heads[0]} (mechanism 0) and induction head L1H{heads[1]} (mechanism 1)"),
            names=dict.fromkeys(matrices, list(MECHANISMS)))


def induction_loss(model: nn.Module, tokens: Tensor) -> Tensor:
    """Mean next-token cross-entropy (nats) over the induction positions of ``tokens`` ``(batch, T)``."""
    mask = induction_positions(tokens)
    logits = model(tokens)
    targets = tokens.roll(-1, dims=1)
    return F.cross_entropy(logits[mask], targets[mask])


def train_induction(cfg: InductionConfig, **kwargs) -> tuple[InductionTransformer, list[dict[str, float]]]:
    """Train from scratch on :class:`RepeatedSegments`; ``kwargs`` go to :func:`paramlens.models.train.train`."""
    model = seeded(lambda: InductionTransformer(cfg), cfg.seed)

    def loss_fn(m: InductionTransformer, tokens: Tensor) -> Tensor:
        loss = induction_loss(m, tokens)  # the penalty grows as the circuit starts working: exp(-loss) in (0, 1]
        return loss + cfg.head_penalty * (-loss.detach()).exp() * head_norms(m).sum()

    history = train(model, model.source(), loss_fn, cfg, **kwargs)
    return model.eval(), history


def load_induction(folder: str | Path) -> InductionTransformer:
    """Rebuild a model saved with :func:`~paramlens.models.train.save_model`."""
    return read_saved(folder, lambda raw: InductionTransformer(validated(InductionConfig, raw, Path(folder))))[1]
