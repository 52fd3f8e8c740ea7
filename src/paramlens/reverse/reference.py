"""Check an equality test against known functions, and put its constants in their output order.

Hypotheses come from the constants the scan matched (MD5 T at repeat ``k`` of ``n`` repeats: MD5 reduced to ``n``
steps; SHA-256 K likewise) and, for a test of 16, 20 or 32 bytes, the hash of that size, in full and then reduced
to each number of steps. Inputs are read as message bytes (one input per byte, codes 0..255) or message bits
(eight inputs per byte, lowest bit first). The chain runs exactly on random messages
(:mod:`paramlens.reverse.probe`); a hypothesis holds when every compared value equals exactly one output element
of the reference on every message, one to one. A test whose constant is folded into its gates (an AND of gates
that are 1 when their bit is right) compares indicators: each equals a bit (the constant bit is 1) or its
complement (0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.models.compiled.hashes import FULL_STEPS, MAX_BYTES, REFERENCES
from paramlens.reverse.chain import LayerRef, TensorStore
from paramlens.reverse.constants import RepeatMatch
from paramlens.reverse.probe import run_chain
from paramlens.reverse.readout import Comparison

N_MESSAGES = 24
TITLES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256"}
STEP_TABLES = {"MD5 T": "md5", "SHA-256 K": "sha256"}
DIGEST_BYTES = {16: "md5", 20: "sha1", 32: "sha256"}


@dataclass
class Checked:
    """The compared values are ``function``'s output; ``digest``: the constants in its output order, as bytes."""

    function: str
    digest: bytes


def hypotheses(matches: list[RepeatMatch], comparison: Comparison) -> list[tuple[str, int]]:
    """``(hash, steps)`` to try: step tables matched from entry 0, then the hash of the test's size, in full and
    then with fewer steps."""
    found = [(STEP_TABLES[m.table.name], len(m.matched) + len(m.exceptions))
             for m in matches if m.table.name in STEP_TABLES and m.start == 0]
    name = DIGEST_BYTES.get(len(comparison.probe_rows) * comparison.bits // 8)
    if name:
        found += [(name, steps) for steps in range(FULL_STEPS[name], 0, -1)]
    return [h for h in dict.fromkeys(found) if h[1] <= FULL_STEPS[h[0]]]


def _inputs(n_inputs: int, gen: torch.Generator) -> list[tuple[str, Tensor, list[bytes]]]:
    """``(encoding, inputs (messages, n_inputs), messages)`` for the encodings ``n_inputs`` allows."""
    out = []
    if 1 <= n_inputs <= MAX_BYTES:
        x = torch.randint(0, 256, (N_MESSAGES, n_inputs), generator=gen)
        out.append(("bytes", x, [bytes(row) for row in x.tolist()]))
    if n_inputs % 8 == 0 and 1 <= n_inputs // 8 <= MAX_BYTES:
        x = torch.randint(0, 2, (N_MESSAGES, n_inputs), generator=gen)
        codes = (x.reshape(N_MESSAGES, -1, 8) << torch.arange(8)).sum(-1)
        out.append(("bits", x, [bytes(row) for row in codes.tolist()]))
    return out


def _elements(digests: list[bytes], bits: int) -> Tensor | None:
    """``(messages, elements)``: the digests' bytes, or their bits (8 per byte, lowest first)."""
    codes = torch.tensor([list(d) for d in digests], dtype=torch.float64)
    if bits == 8:
        return codes
    if bits == 1:
        return ((codes.long()[..., None] >> torch.arange(8)) & 1).flatten(1).double()
    return None


def _assign(values: Tensor, elements: Tensor, either_sign: Tensor, constants: list[int] | None) -> list[int] | None:
    """The compared constants in output order, or None when the values do not follow the elements.

    Each value that varies over the messages must equal a varying element column (its negative where
    ``either_sign``; with unknown ``constants``, an indicator equals a bit where the constant is 1, its complement
    where 0), one to one; values equal to several columns must be as many, the same, with the same constant
    (then any pairing reads the same). Values that do not vary test elements that do not vary (reduced steps
    leave words unchanged): a test that can pass holds such an element's own value as its constant."""
    varies, moves = (values != values[0]).any(0), (elements != elements[0]).any(0)
    if values.shape[1] != elements.shape[1] or int(varies.sum()) != int(moves.sum()):
        return None
    same = (values[:, :, None] == elements[:, None, :]).all(0)
    same |= either_sign[:, None] & (-values[:, :, None] == elements[:, None, :]).all(0)
    complement = (values[:, :, None] == 1 - elements[:, None, :]).all(0) if constants is None else torch.zeros_like(same)
    order = _pairing((same | complement) & moves[None, :] & varies[:, None], values, constants)
    if order is None:
        return None
    fixed = [constants[k] if constants is not None else 1 for k in (~varies).nonzero().flatten().tolist()]
    if fixed != [abs(int(v)) if constants is not None else 1 for v in values[0, ~varies].tolist()]:
        return None  # a test that cannot pass: no constant to read
    out = [int(v) for v in elements[0].tolist()]
    for k, j in order.items():
        out[j] = constants[k] if constants is not None else 1 - int(complement[k, j])
    return out


def _pairing(fits: Tensor, values: Tensor, constants: list[int] | None) -> dict[int, int] | None:
    """Value column -> element column, one to one, from ``fits`` (value x element): values that fit the same
    columns pair with them in order, when they are as many, equal, and (if known) of one constant."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for k in fits.any(1).nonzero().flatten().tolist():
        groups.setdefault(tuple(fits[k].nonzero().flatten().tolist()), []).append(k)
    order = {}
    for columns, ks in groups.items():
        if len(columns) != len(ks) or any(not torch.equal(values[:, k], values[:, ks[0]]) for k in ks) \
                or (constants is not None and len({constants[k] for k in ks}) > 1):
            return None
        order.update(zip(ks, columns))
    return order if len(order) == int((values != values[0]).any(0).sum()) else None


def check(store: TensorStore, layers: list[LayerRef], comparison: Comparison,
          tries: list[tuple[str, int]]) -> Checked | None:
    """The first hypothesis in ``tries`` that the chain's compared values follow, with the constants ordered."""
    encodings = _inputs(layers[0].shape[1], torch.Generator().manual_seed(0))
    if not tries or not encodings:
        return None
    pre = run_chain(store, layers, torch.cat([x for _, x, _ in encodings]), {comparison.probe_layer})
    values = pre[comparison.probe_layer][:, comparison.probe_rows] + torch.tensor(comparison.shift)
    values = values.clamp_min(0) if comparison.relu else values
    either_sign = torch.tensor([s == 0 and not comparison.relu for s in comparison.shift])
    for name, steps in tries:
        for e, (encoding, _, messages) in enumerate(encodings):
            elements = _elements([REFERENCES[name](m, steps) for m in messages], comparison.bits)
            block = values[e * N_MESSAGES:(e + 1) * N_MESSAGES]
            out = _assign(block, elements, either_sign, comparison.constants) if elements is not None else None
            if out is not None:
                digest = Comparison(comparison.layer, comparison.bits, out, 0, [], [], False).packed()
                steps_text = "" if steps == FULL_STEPS[name] else f" reduced to {steps} step{'s' * (steps > 1)}"
                return Checked(f"{TITLES[name]}{steps_text} of the {len(messages[0])}-byte message "
                               f"(one input per message {encoding[:-1]})", digest or b"")
    return None
