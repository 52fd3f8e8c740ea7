"""Regenerate ``tests/data/lens/``: tiny random TransformerLens ``HookedTransformer`` checkpoints and their logits.

Needs a TransformerLens that still has ``HookedTransformer`` (it was removed in 4.0), e.g.::

    pip install --target /tmp/tl3 --no-deps transformer_lens==3.9.0 better_abc
    PYTHONPATH=/tmp/tl3 python tests/data/make_lens_fixtures.py

(with torch, transformers, einops, jaxtyping, ... installed). For each model it writes ``<name>.pt``
(``torch.save(model.state_dict())``, buffers included), ``<name>.config.json``
(``json.dumps(model.cfg.to_dict(), default=str)``) and ``<name>.expected.safetensors`` with ``tokens``
``(3, n_ctx)`` int64 and TransformerLens's ``logits`` ``(3, n_ctx, d_vocab_out)`` float32 for them.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

try:
    from transformer_lens import HookedTransformer, HookedTransformerConfig
except ImportError as err:
    raise SystemExit(f"needs transformer_lens < 4.0 (with HookedTransformer): {err}") from None

OUT = Path(__file__).parent / "lens"
BASE = {"n_layers": 2, "d_model": 24, "n_heads": 3, "d_head": 8, "d_mlp": 48, "d_vocab": 40, "n_ctx": 12,
        "device": "cpu"}

MODELS = {
    "gpt2_ln": {"act_fn": "gelu_new", "normalization_type": "LN"},
    "attn_only": {"attn_only": True, "normalization_type": None, "d_mlp": None},
    "grokking": {"n_layers": 1, "d_model": 32, "n_heads": 4, "d_mlp": 64, "d_vocab": 24, "d_vocab_out": 23, "n_ctx": 3,
                 "act_fn": "relu", "normalization_type": None},
    "ln_pre": {"n_heads": 2, "act_fn": "gelu", "normalization_type": "LNPre", "final_rms": True,
               "scale_attn_by_inverse_layer_idx": True},
    "llama_gqa": {"d_model": 32, "n_heads": 4, "n_key_value_heads": 2, "act_fn": "silu", "normalization_type": "RMS",
                  "positional_embedding_type": "rotary", "rotary_base": 500, "gated_mlp": True, "eps": 1e-6},
    "neox_parallel": {"d_model": 32, "n_heads": 4, "act_fn": "gelu", "normalization_type": "LN",
                      "positional_embedding_type": "rotary", "rotary_dim": 4, "parallel_attn_mlp": True},
    "rms_pre_pairs": {"act_fn": "gelu_fast", "normalization_type": "RMSPre", "positional_embedding_type": "rotary",
                      "rotary_adjacent_pairs": True, "gated_mlp": True, "attn_scale": 5.0},
    "gptj_pairs": {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32, "d_vocab": 24, "n_ctx": 8,
                   "act_fn": "gelu_new", "normalization_type": "LN", "positional_embedding_type": "rotary",
                   "rotary_dim": 4, "rotary_adjacent_pairs": True, "parallel_attn_mlp": True},
}


@torch.no_grad()
def randomise(model: HookedTransformer, seed: int) -> None:
    """Non-zero biases and non-trivial norm gains (TransformerLens initialises them to 0 and 1)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = 0.3 * torch.randn(p.shape, generator=gen)
        if name.endswith(".w"):
            p.copy_(1 + noise)
        elif name.split(".")[-1].lstrip("_").startswith("b"):
            p.copy_(noise)


def make(name: str, overrides: dict, seed: int) -> None:
    cfg = HookedTransformerConfig(**{**BASE, **overrides, "seed": seed})
    model = HookedTransformer(cfg).eval()
    randomise(model, seed)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.d_vocab, (3, cfg.n_ctx), generator=gen)
    with torch.no_grad():
        logits = model(tokens).float()
    torch.save(model.state_dict(), OUT / f"{name}.pt")
    (OUT / f"{name}.config.json").write_text(json.dumps(model.cfg.to_dict(), default=str, indent=1) + "\n")
    save_file({"tokens": tokens.contiguous(), "logits": logits.contiguous()}, OUT / f"{name}.expected.safetensors")
    print(f"{name}: logits {tuple(logits.shape)}, |logits| max {logits.abs().max():.2f}")


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for i, (model_name, spec) in enumerate(MODELS.items()):
        make(model_name, spec, seed=100 + i)
