"""Token sequences for the induction model: repeated segments, where the next token follows by induction, and
sequences without repeats, where it cannot.

A repeated-segment sequence of ``length`` tokens is ``prefix + segment + segment``: the segment length ``L`` is
drawn per sequence from ``[min_segment, length // 2]`` and the prefix fills the rest, so neither where the repeat
starts nor how far back its first copy lies is fixed (a head cannot copy from a fixed offset). All tokens of
prefix and first copy are distinct, so a token seen before has exactly one earlier occurrence and the token after
that occurrence is the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def distinct_tokens(n: int, vocab_size: int, length: int, generator: torch.Generator) -> Tensor:
    """``(n, length)`` int64: each row ``length`` distinct tokens from ``[0, vocab_size)`` (needs
    ``length <= vocab_size``)."""
    return torch.rand(n, vocab_size, generator=generator).argsort(dim=1)[:, :length]


@dataclass(frozen=True)
class RepeatedSegments:
    """Random sequences ``prefix + segment + segment`` (see the module docstring): they exercise induction.

    Attributes:
        vocab_size: tokens are in ``[0, vocab_size)``; at least ``length``.
        length: tokens per sequence.
        min_segment: shortest repeated segment, at most ``length // 2``.
    """

    vocab_size: int
    length: int
    min_segment: int

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, length)`` int64."""
        seg = torch.randint(self.min_segment, self.length // 2 + 1, (n, 1), generator=generator)
        start = self.length - seg  # first position of the second copy
        fresh = distinct_tokens(n, self.vocab_size, self.length, generator)
        pos = torch.arange(self.length).expand(n, -1)
        return fresh.gather(1, pos - seg * (pos >= start))


@dataclass(frozen=True)
class NoRepeats:
    """Random sequences of distinct tokens: nothing repeats, so induction has nothing to act on (the
    previous-token head still fires)."""

    vocab_size: int
    length: int

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, length)`` int64."""
        return distinct_tokens(n, self.vocab_size, self.length, generator)


def earlier_occurrence(tokens: Tensor) -> Tensor:
    """``(batch, T)`` int64: the first earlier position holding the same token as position ``t``, or -1."""
    T = tokens.shape[1]
    same = tokens[:, :, None] == tokens[:, None, :]  # (batch, t, s)
    earlier = same & torch.ones(T, T, dtype=torch.bool).tril(-1)
    first = earlier.int().argmax(-1)
    return torch.where(earlier.any(-1), first, torch.full_like(first, -1))


def induction_positions(tokens: Tensor) -> Tensor:
    """``(batch, T)`` bool: positions whose token occurred earlier and which have a next token to predict; on
    :class:`RepeatedSegments` exactly the positions where induction predicts the next token."""
    mask = earlier_occurrence(tokens) >= 0
    mask[:, -1] = False
    return mask


def mechanism_inputs(vocab_size: int, length: int, min_segment: int, n: int = 256,
                     seed: int = 0) -> dict[str, Tensor]:
    """Inputs that exercise each mechanism, ``{name: (n, length) int64}``: ``"induction"`` (repeated segments:
    both mechanisms act) and ``"no_repeats"`` (only the previous-token head has something to do)."""
    g = torch.Generator().manual_seed(seed)
    return {"induction": RepeatedSegments(vocab_size, length, min_segment).sample(n, g),
            "no_repeats": NoRepeats(vocab_size, length).sample(n, g)}
