"""What a network reads (bits or byte codes), declared as ``bytes:N`` / ``bits:N`` or read from its first layer,
and random inputs from it with the messages (byte strings) they stand for."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from paramlens.errors import ParamLensError, UsageError
from paramlens.reverse.values import is_integer

KINDS = ("bytes", "bits")
SPELLINGS = ("lowest bit first", "highest bit first")  # how bit inputs 8i..8i+7 spell byte i
DECLARE = "declare --input bytes:N or bits:N to compare anyway"
MAX_INPUTS = {"bytes": 1024, "bits": 8192}  # the catalogue's functions take messages of up to 1024 bytes


@dataclass(frozen=True)
class Domain:
    """``n`` inputs, each a byte code 0..255 (``bytes``) or a bit 0/1 (``bits``); ``why``: how it was decided."""

    kind: str
    n: int
    why: str

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.n}"

    @property
    def count(self) -> int:
        """How many distinct inputs there are."""
        return (256 if self.kind == "bytes" else 2) ** self.n

    @property
    def spellings(self) -> tuple[str, ...]:
        """The ways an input row becomes a message: byte inputs are the bytes (``""``); bit inputs spell bytes
        eight at a time, either bit order."""
        return ("",) if self.kind == "bytes" else SPELLINGS


def parse_input(text: str) -> tuple[str, int] | None:
    """``"auto"`` -> None; ``"bytes:N"`` / ``"bits:N"`` -> ``(kind, N)``.

    Raises:
        UsageError: anything else (one line).
    """
    if text.strip() == "auto":
        return None
    kind, sep, count = text.strip().partition(":")
    if sep and kind in KINDS and count.strip().isdigit() and int(count) >= 1:
        return kind, int(count)
    raise UsageError(f"--input takes auto, bytes:N or bits:N (N = how many inputs the network reads); got '{text}'")


def choose_domain(declared: tuple[str, int] | None, W: Tensor, b: Tensor | None) -> Domain:
    """The declared domain (checked against the first layer's ``(out, in)`` weight ``W``) or the inferred one.

    Raises:
        ParamLensError: a declaration that does not fit, or more inputs than :data:`MAX_INPUTS` allows.
    """
    n = W.shape[1]
    if declared is None:
        domain = infer_domain(W, b)
    elif declared[1] != n:
        kind, count = declared
        raise ParamLensError(f"--input {kind}:{count} declares {count} inputs but the network reads {n}; "
                             f"use --input {kind}:{n}")
    else:
        domain = Domain(declared[0], n, "declared")
    if n > MAX_INPUTS[domain.kind]:
        raise ParamLensError(f"the network reads {n} inputs; identify compares functions of at most "
                             f"{MAX_INPUTS['bytes']} bytes ({MAX_INPUTS['bits']} bits)")
    return domain


def infer_domain(W: Tensor, b: Tensor | None) -> Domain:
    """Bytes when first-layer rows test a single input against thresholds 2..255 (a byte split into bits tests
    ``2^t`` and ``2^t - 1``), bits when the weights are integers and no such row tests beyond 1.

    Raises:
        ParamLensError: real-valued weights, or thresholds beyond 255 (inputs wider than bytes).
    """
    if not is_integer(W) or (b is not None and not is_integer(b)):
        raise ParamLensError("the first layer's weights are not integers, so the inputs look real-valued; the "
                             f"catalogue holds functions of bits and bytes; {DECLARE}")
    Wi = W.double()
    single = (Wi != 0).sum(1) == 1
    weight = Wi[single].sum(1)
    bias = b.double()[single] if b is not None else weight * 0
    thresholds = sorted({t for t in (-bias / weight)[weight > 0].tolist() if t >= 2})
    if thresholds and thresholds[-1] > 255:
        raise ParamLensError(f"a first-layer row tests one input against {thresholds[-1]:g}, beyond a byte; "
                             f"{DECLARE}")
    if thresholds:
        shown = ", ".join(f"{t:g}" for t in thresholds[:8]) + (", ..." if len(thresholds) > 8 else "")
        return Domain("bytes", W.shape[1], f"inferred: first-layer rows test single inputs against {shown}")
    return Domain("bits", W.shape[1], "inferred: integer first-layer weights and no row tests one input beyond 1")


def draw(domain: Domain, samples: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, list[bytes]]]:
    """``samples`` random inputs ``(samples, n)`` int64 (every input, shuffled and repeated to fill ``samples``,
    when there are no more than that) and, per spelling, the message of each row (bit inputs are zero-padded to
    whole bytes)."""
    high = 256 if domain.kind == "bytes" else 2
    if domain.count <= samples:
        every = np.indices((high,) * domain.n).reshape(domain.n, -1).T
        x = np.resize(every[rng.permutation(len(every))], (samples, domain.n)).astype(np.int64)
    else:
        x = rng.integers(0, high, size=(samples, domain.n), dtype=np.int64)
    if domain.kind == "bytes":
        return x, {"": [bytes(row) for row in x.astype(np.uint8)]}
    padded = np.zeros((samples, -(-domain.n // 8) * 8), dtype=np.uint8)
    padded[:, :domain.n] = x
    messages = {}
    for spelling in SPELLINGS:
        codes = np.packbits(padded, axis=1, bitorder="little" if spelling == SPELLINGS[0] else "big")
        messages[spelling] = [bytes(row) for row in codes]
    return x, messages
