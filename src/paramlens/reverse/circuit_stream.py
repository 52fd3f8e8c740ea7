"""Lift the layer chain of a file, streamed one layer at a time, and check the circuit against the network.

Inputs (:func:`circuit_domain`): declared as ``bits:N`` / ``bytes:N`` or inferred from the first layer as
``reverse identify`` does. Byte inputs become 8 circuit inputs each: bit ``j`` of byte ``k`` is input
``8 k + j``, lowest bit first. While the layers stream by, the network also runs in float64 on random inputs
(``(samples, width)`` activations, one layer at a time) and the circuit is compared with it at the end. For bit
inputs, a unit not proven 0/1 that never exceeds 1 on those inputs is taken as a gate (counted in
``Lifter.sampled``), as lifting Boolean networks always did; byte networks are lifted from proofs only.

Memory: safetensors files are memory-mapped and read one tensor at a time; other formats are held as their loader
reads them (:class:`~paramlens.reverse.chain.TensorStore`). Either way one dense layer is converted at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from paramlens.core.circuits import Circuit
from paramlens.errors import ParamLensError
from paramlens.reverse.chain import TensorStore, find_chain, iter_layers
from paramlens.reverse.circuit_layers import input_values, layer_values, outputs
from paramlens.reverse.circuit_lift import Lifter, check_integer_layer
from paramlens.reverse.identify_domain import Domain, infer_domain


@dataclass
class StreamedLift:
    """The threshold circuit of a network (``circuit``, inputs as bits) with what the lift knows about it
    (``lifter``: keys, levels, gate layers), the domain, and the network-vs-circuit check: ``mismatches`` of
    ``samples`` random inputs."""

    circuit: Circuit
    lifter: Lifter
    domain: Domain
    layers: int
    neurons: int
    samples: int
    mismatches: int


def circuit_domain(declared: tuple[str, int] | None, W: Tensor, b: Tensor | None) -> Domain:
    """The declared domain, checked against the first layer's ``(out, in)`` weight, or the inferred one.

    Raises:
        ParamLensError: a declared count that differs from the network's, or real-valued first-layer weights.
    """
    n = W.shape[1]
    if declared is None:
        return infer_domain(W, b)
    kind, count = declared
    if count != n:
        raise ParamLensError(f"--input {kind}:{count} declares {count} inputs but the network reads {n}; "
                             f"use --input {kind}:{n}")
    return Domain(kind, n, "declared")


def random_inputs(domain: Domain, samples: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(samples, n)`` float64 network inputs and the ``(samples, n_bits)`` circuit inputs they stand for."""
    rng = np.random.default_rng(seed)
    high = 256 if domain.kind == "bytes" else 2
    x = torch.from_numpy(rng.integers(0, high, size=(samples, domain.n)))
    if domain.kind == "bits":
        return x.double(), x
    return x.double(), ((x[:, :, None] >> torch.arange(8)) & 1).reshape(samples, -1)


def lift_file(path: str | Path, declared: tuple[str, int] | None = None, samples: int = 256,
              seed: int = 0) -> StreamedLift:
    """Lift every layer of the chain at ``path`` (see :mod:`paramlens.reverse.circuit_lift`).

    Raises:
        ParamLensError: layers that do not chain, non-integer or out-of-range values (layer and tensors named), a
            unit that cannot be lifted or an output that is not 0/1 (layer and unit named).
    """
    store = TensorStore(path)
    layers, notes = find_chain(store)
    breaks = [n for n in notes if n.startswith("size break")]
    if breaks:
        raise ParamLensError(f"{path}: the layers do not form one chain ({breaks[0]})")
    lf, values, domain, h, bits, neurons = None, None, None, None, None, 0
    for ref, W, b in iter_layers(store, layers):
        W = W.double()
        b = b.double() if b is not None else torch.zeros(W.shape[0], dtype=torch.float64)
        try:
            check_integer_layer(ref.index, W, b, (ref.weight, ref.bias))
        except ParamLensError as e:
            raise ParamLensError(f"{path}: {e}") from None
        if lf is None:
            domain = circuit_domain(declared, W, b)
            lf = Lifter(domain.n * (8 if domain.kind == "bytes" else 1))
            values = input_values(domain.kind, domain.n)
            h, bits = random_inputs(domain, samples, seed)
        lf.layer = ref.index
        h = torch.relu(h @ W.T + b)
        seen = h.max(0).values.round().long().tolist() if domain.kind == "bits" else None
        values = layer_values(lf, W, b, values, seen)
        neurons += W.shape[0]
    lf.c.outputs = outputs(lf, values, seen)
    got = lf.c.evaluate(bits).long()
    mismatches = int((got != h.round().long()).any(-1).sum())
    return StreamedLift(lf.c, lf, domain, len(layers), neurons, samples, mismatches)
