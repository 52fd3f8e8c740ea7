"""Whether a checkpoint's matrices form one sequential chain, and what to say about them when they do not.

A chain claim (repeating block, constants per repeat, an output test) needs layers that feed one another in
order. Evidence against it: names of attention or embedding weights (``blocks.0.attn.W_Q``, ``wte``), weight
tensors of more than two dimensions (per-head matrices), sizes that do not connect in name order, and a residual
stream (one width written by several matrices and read by several others, with other widths between them).
Such checkpoints get per-tensor findings only.
"""

from __future__ import annotations

import re
from collections import Counter

from paramlens.reverse.chain import LayerRef, natural_key

ATTENTION = re.compile(r"(^|[._])(attn|attention|self_attn|[qkvo]_proj|query|key|value|c_attn|qkv|W_[QKVO]|b_[QKVO])"
                       r"([._]|$)", re.IGNORECASE)
EMBEDDING = re.compile(r"(^|[._])(embed\w*|wte|wpe|W_E|W_pos|W_U|unembed|lm_head|tok_embeddings|word_embeddings|"
                       r"position_embeddings)([._]|$)", re.IGNORECASE)
ROLES = (("attention", ATTENTION), ("embedding / unembedding", EMBEDDING),
         ("normalisation", re.compile(r"(^|[._])(ln\w*|\w*norm\w*)([._]|$)", re.IGNORECASE)),
         ("MLP", re.compile(r"(^|[._])(mlp|ffn|fc\d*|c_fc|W_in|W_out|feed_forward)([._]|$)", re.IGNORECASE)))


def role(name: str) -> str:
    """What a tensor's name says it is (``"other"`` when it says nothing known)."""
    return next((label for label, pattern in ROLES if pattern.search(name)), "other")


def _examples(names: list[str]) -> str:
    names = sorted(names, key=natural_key)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _residual(layers: list[LayerRef]) -> str | None:
    """A width written by at least two matrices and read by at least two others, other widths between them."""
    writes = Counter(r.shape[0] for r in layers)
    reads = Counter(r.shape[1] for r in layers)
    widths = {r.shape[0] for r in layers} | {r.shape[1] for r in layers}
    shared = [w for w in writes if writes[w] >= 2 and reads[w] >= 2 and len(widths) > 1]
    if not shared:
        return None
    w = max(shared, key=lambda v: writes[v] + reads[v])
    return f"a residual stream: width {w} written by {writes[w]} matrices and read by {reads[w]}"


def non_sequential(shapes: dict[str, tuple[int, ...]], layers: list[LayerRef], notes: list[str]) -> list[str]:
    """Why the matrices of a checkpoint do not form one sequential chain (empty: they may)."""
    reasons = []
    attention = [n for n in shapes if ATTENTION.search(n) and len(shapes[n]) >= 2]
    if attention:
        reasons.append(f"attention weights ({_examples(attention)})")
    embedding = [n for n in shapes if EMBEDDING.search(n) and len(shapes[n]) >= 2]
    if embedding:
        reasons.append(f"embedding weights ({_examples(embedding)})")
    wide = [n for n, s in shapes.items() if len(s) > 2]
    if wide:
        reasons.append(f"{len(wide)} weight tensors of more than 2 dimensions ({_examples(wide)})")
    breaks = [n for n in notes if n.startswith("size break")]
    if breaks:
        reasons.append(f"sizes that do not chain in name order ({len(breaks)} breaks, first: {breaks[0][12:]})")
        residual = _residual(layers)
        reasons += [residual] if residual else []
    return reasons
