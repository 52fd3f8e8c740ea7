"""Which weight values the reverse tools read as numbers, and how they say what they refuse.

NaN and infinities are never values: scan reports them (how many of each, in which tensor) and computes
its statistics over the finite values; the circuit, SAT and MILP paths refuse them.

The integer paths (value counts, row signatures, circuit lifting, SAT) and the MILP accept magnitudes up to
:data:`MAX_MAGNITUDE` ``= 2^31``. Every such integer is exact in float64 (exact up to 2^53), and the int64
pre-activation of a neuron on 0/1 inputs, at most ``(fan-in + 1) * 2^31`` in magnitude, cannot overflow
(2^63) for any fan-in below 2^32 - 1. Larger values are out of range: never read as integers, refused by
the solvers (HiGHS, too, treats coefficients far beyond this as numerically unusable).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from paramlens.errors import ParamLensError

MAX_MAGNITUDE = 2**31
RANGE = "|v| <= 2^31"


def _wide(t: Tensor) -> Tensor:
    """Integer tensors as int64: comparing int8/int16/int32/uint8 with ``±2^31`` would wrap the bound."""
    return t if t.is_floating_point() or t.dtype == torch.int64 else t.to(torch.int64)


def nonfinite_counts(t: Tensor) -> dict[str, int]:
    """``{"NaN": n, "+Inf": n, "-Inf": n}`` with the non-zero counts only (empty for finite tensors)."""
    if not t.is_floating_point():
        return {}
    counts = {"NaN": int(t.isnan().sum()), "+Inf": int(t.isposinf().sum()), "-Inf": int(t.isneginf().sum())}
    return {k: n for k, n in counts.items() if n}


def in_range(t: Tensor) -> bool:
    """Every value finite and within ``±MAX_MAGNITUDE`` (True for an empty tensor)."""
    if t.numel() == 0:
        return True
    t = _wide(t)
    return bool(t.min() >= -MAX_MAGNITUDE) and bool(t.max() <= MAX_MAGNITUDE)  # NaN compares False


def is_integer(t: Tensor) -> bool:
    """Finite, whole and within ``±MAX_MAGNITUDE``: safe to cast to int64 and sum over any fan-in."""
    return in_range(t) and (not t.is_floating_point() or torch.equal(t, t.round()))


def describe(t: Tensor) -> str | None:
    """What makes ``t`` unusable for the integer and solver paths, e.g. ``1 NaN, 2 +Inf`` or ``3 values
    beyond ±2^31 (largest magnitude 1e+30)``; None when every value is finite and in range."""
    parts = [f"{n} {k}" for k, n in nonfinite_counts(t).items()]
    t = _wide(t)
    finite = t[t.isfinite()] if t.is_floating_point() else t
    big = finite[(finite > MAX_MAGNITUDE) | (finite < -MAX_MAGNITUDE)]
    if big.numel():
        largest = max(abs(float(big.max())), abs(float(big.min())))
        parts.append(f"{big.numel()} value{'s' if big.numel() > 1 else ''} beyond ±2^31 "
                     f"(largest magnitude {largest:.3g})")
    return ", ".join(parts) or None


def layer_problem(W: Tensor, b: Tensor | None, names: tuple[str, str | None] = ("weight", "bias")) -> str | None:
    """``"<weight name> holds ...; <bias name> holds ..."`` for the tensors of one layer that are not finite
    and in range; None when both are."""
    found = [f"{name} holds {text}" for t, name in ((W, names[0]), (b, names[1] or "bias"))
             if t is not None and (text := describe(t)) is not None]
    return "; ".join(found) or None


def first_bad_layer(weights: Sequence[Tensor], biases: Sequence[Tensor | None]) -> int | None:
    """Index of the first layer with a non-finite or out-of-range weight or bias (None: all usable)."""
    return next((i for i, (W, b) in enumerate(zip(weights, biases))
                 if not in_range(W) or (b is not None and not in_range(b))), None)


def _tensor_names(path: str | Path, index: int) -> tuple[str, str | None]:
    """The stored names of layer ``index``'s weight and bias in the chain at ``path``."""
    from paramlens.reverse.chain import TensorStore, find_chain

    ref = find_chain(TensorStore(path))[0][index]
    return ref.weight, ref.bias


def refuse_bad_values(path: str | Path, weights: Sequence[Tensor], biases: Sequence[Tensor | None],
                      what: str) -> None:
    """Raise one line naming the first layer (its stored tensor names) whose values ``what`` cannot use.

    Raises:
        ParamLensError: a NaN or infinity, or a magnitude beyond ``MAX_MAGNITUDE``.
    """
    index = first_bad_layer(weights, biases)
    if index is None:
        return
    problem = layer_problem(weights[index], biases[index], _tensor_names(path, index))
    raise ParamLensError(f"{path}: layer {index}: {problem}; {what} needs finite weights and biases with {RANGE}")
