"""Hugging Face models for :mod:`paramlens.core.lens`: a HookedTransformer's weights in GPT-2, Llama or GPT-NeoX
modules, with the swaps that make them compute what TransformerLens computes.

Every projection becomes a fresh ``nn.Linear`` (GPT-2: ``Conv1D``) holding the TransformerLens matrix, so any
``d_head`` works; norms become ``nn.LayerNorm`` (LN; LNPre with gain 1 and bias 0), Llama's RMSNorm (RMS; RMSPre
with gain 1) or ``nn.Identity`` (no normalisation); an attention-only block's MLP adds zero; the LM head is an
``nn.Linear(d_model, d_vocab_out)`` with the unembedding bias. Two exact rewrites: a gated MLP's ``b_in`` (added
after the gate product) moves into the down projection's bias (``b_out + b_in @ W_out``), and for rotary models
that rotate adjacent pairs the query and key dimensions are reordered to the rotate-half convention (same scores).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from paramlens.core.lens import LensSpec

# target: model attribute, token embedding, blocks, first norm, attention, second norm, MLP, final norm
PATHS = {
    "gpt2": ("transformer", "wte", "h", "ln_1", "attn", "ln_2", "mlp", "ln_f"),
    "llama": ("model", "embed_tokens", "layers", "input_layernorm", "self_attn", "post_attention_layernorm", "mlp",
              "norm"),
    "neox": ("gpt_neox", "embed_in", "layers", "input_layernorm", "attention", "post_attention_layernorm", "mlp",
             "final_layer_norm"),
}


class NoMLP(nn.Module):
    """The MLP of an attention-only block: adds nothing to the residual stream."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


@torch.no_grad()
def build(spec: LensSpec, t: dict[str, Tensor]) -> nn.Module:
    """The eval-mode ``GPT2LMHeadModel`` / ``LlamaForCausalLM`` / ``GPTNeoXForCausalLM`` for ``spec`` with the
    float32 weights ``t`` (TransformerLens names, buffers dropped)."""
    model = _empty_model(spec)
    body_name, embed, blocks, ln1, attn, ln2, mlp, final = PATHS[spec.target]
    body = getattr(model, body_name)
    getattr(body, embed).weight.copy_(t["embed.W_E"])
    if not spec.rotary:
        body.wpe.weight.copy_(t["pos_embed.W_pos"])
    for layer, block in enumerate(getattr(body, blocks)):
        setattr(block, ln1, _norm(spec.norm, spec, t, f"blocks.{layer}.ln1"))
        setattr(block, ln2, _norm(spec.norm if spec.d_mlp else None, spec, t, f"blocks.{layer}.ln2"))
        _fill_attention(spec, getattr(block, attn), _attention(spec, t, layer))
        getattr(block, attn).scaling = 1.0 / spec.attn_scales[layer]
        if spec.d_mlp is None:
            setattr(block, mlp, NoMLP())
        else:
            _fill_mlp(spec, getattr(block, mlp), t, f"blocks.{layer}.mlp.")
    setattr(body, final, _norm(spec.final_norm, spec, t, "ln_final"))
    model.set_output_embeddings(_linear(t["unembed.W_U"].T, t["unembed.b_U"]))
    return model.eval()


def _empty_model(spec: LensSpec) -> nn.Module:
    """The Hugging Face model with the spec's sizes, before its weights are set."""
    import transformers

    common = {"vocab_size": spec.d_vocab, "max_position_embeddings": spec.n_ctx, "tie_word_embeddings": False,
              "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if spec.target == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=spec.d_model, n_layer=spec.n_layers, n_head=spec.n_heads, n_inner=spec.d_mlp or 1,
            activation_function=spec.act_fn or "relu", layer_norm_epsilon=spec.eps or 1e-5, resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0, n_positions=spec.n_ctx, **common))
    rope = {"rope_type": "default", "rope_theta": spec.rotary_base}
    if spec.target == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            hidden_size=spec.d_model, num_hidden_layers=spec.n_layers, num_attention_heads=spec.n_heads,
            num_key_value_heads=spec.n_kv_heads or spec.n_heads, head_dim=spec.d_head,
            intermediate_size=spec.d_mlp or 1, hidden_act=spec.act_fn or "silu", rms_norm_eps=spec.eps or 1e-5,
            rope_parameters=rope, attention_bias=True, mlp_bias=True, **common))
    else:
        model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
            hidden_size=spec.d_model, num_hidden_layers=spec.n_layers, num_attention_heads=spec.n_heads,
            head_dim=spec.d_head, intermediate_size=spec.d_mlp or 1, hidden_act=spec.act_fn or "relu",
            layer_norm_eps=spec.eps or 1e-5, use_parallel_residual=spec.parallel, attention_bias=True,
            rope_parameters={**rope, "partial_rotary_factor": spec.rotary_dim / spec.d_head}, **common))
    rotary = getattr(model, PATHS[spec.target][0]).rotary_emb
    inv_freq = 1.0 / spec.rotary_base ** (torch.arange(0, spec.rotary_dim, 2, dtype=torch.float) / spec.rotary_dim)
    rotary.inv_freq, rotary.original_inv_freq = inv_freq, inv_freq.clone()
    return model


def _attention(spec: LensSpec, t: dict[str, Tensor], layer: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Layer ``layer``'s attention as ``(out, in)`` matrices with biases: ``q`` ``(n_heads * d_head, d_model)``,
    ``k`` and ``v`` ``(n_kv_heads * d_head, d_model)``, ``o`` ``(d_model, n_heads * d_head)``."""
    p, g = f"blocks.{layer}.attn.", "_" if spec.n_kv_heads is not None else ""
    w = {x: t[f"{p}{'' if x == 'Q' else g}W_{x}"] for x in "QKV"}
    b = {x: t[f"{p}{'' if x == 'Q' else g}b_{x}"] for x in "QKV"}
    if spec.rotary_pairs:
        rd = spec.rotary_dim
        order = torch.cat([torch.arange(0, rd, 2), torch.arange(1, rd, 2), torch.arange(rd, spec.d_head)])
        for x in "QK":
            w[x], b[x] = w[x][..., order], b[x][..., order]
    out = {x.lower(): (w[x].transpose(1, 2).reshape(-1, spec.d_model), b[x].reshape(-1)) for x in "QKV"}
    out["o"] = (t[p + "W_O"].reshape(-1, spec.d_model).T, t[p + "b_O"])
    return out


def _fill_attention(spec: LensSpec, attn: nn.Module, a: dict[str, tuple[Tensor, Tensor]]) -> None:
    """Put the projections ``a`` (see :func:`_attention`) into a Hugging Face attention module."""
    if spec.target == "gpt2":
        attn.c_attn = _conv1d(torch.cat([a[x][0] for x in "qkv"]), torch.cat([a[x][1] for x in "qkv"]))
        attn.c_proj = _conv1d(*a["o"])
        attn.head_dim, attn.split_size = spec.d_head, spec.n_heads * spec.d_head
    elif spec.target == "llama":
        attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj = (_linear(*a[x]) for x in "qkvo")
    else:  # GPT-NeoX: one fused projection, per head [q, k, v]
        per_head = [(a[x][0].reshape(spec.n_heads, spec.d_head, -1), a[x][1].reshape(spec.n_heads, -1)) for x in "qkv"]
        attn.query_key_value = _linear(torch.cat([w for w, _ in per_head], 1).reshape(-1, spec.d_model),
                                       torch.cat([b for _, b in per_head], 1).reshape(-1))
        attn.dense = _linear(*a["o"])
        attn.head_size, attn.rotary_ndims = spec.d_head, spec.rotary_dim


def _fill_mlp(spec: LensSpec, mlp: nn.Module, t: dict[str, Tensor], p: str) -> None:
    """Put the MLP weights under prefix ``p`` (``W_in`` ``(d_model, d_mlp)``, ...) into a Hugging Face MLP."""
    w_in, b_in, w_out, b_out = t[p + "W_in"], t[p + "b_in"], t[p + "W_out"], t[p + "b_out"]
    if spec.target == "gpt2":
        mlp.c_fc, mlp.c_proj = _conv1d(w_in.T, b_in), _conv1d(w_out.T, b_out)
    elif spec.target == "neox":
        mlp.dense_h_to_4h, mlp.dense_4h_to_h = _linear(w_in.T, b_in), _linear(w_out.T, b_out)
    else:  # TransformerLens adds b_in after the gate product: (act(x W_gate) * x W_in + b_in) W_out + b_out
        zero = torch.zeros_like(b_in)
        mlp.gate_proj, mlp.up_proj = _linear(t[p + "W_gate"].T, zero), _linear(w_in.T, zero)
        mlp.down_proj = _linear(w_out.T, b_out + b_in @ w_out)


def _norm(kind: str | None, spec: LensSpec, t: dict[str, Tensor], prefix: str) -> nn.Module:
    """The norm of ``kind`` ("LN", "LNPre", "RMS", "RMSPre", None) with the gain ``prefix.w`` and bias ``prefix.b``."""
    if kind is None:
        return nn.Identity()
    if kind.startswith("LN"):
        norm = nn.LayerNorm(spec.d_model, eps=spec.eps)
    else:
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        norm = LlamaRMSNorm(spec.d_model, eps=spec.eps)
    if kind in ("LN", "RMS"):
        norm.weight.copy_(t[prefix + ".w"])
    if kind == "LN":
        norm.bias.copy_(t[prefix + ".b"])
    return norm


def _linear(weight: Tensor, bias: Tensor) -> nn.Linear:
    """``nn.Linear`` computing ``x @ weight.T + bias`` (``weight`` ``(out, in)``)."""
    with torch.device("meta"):
        layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.weight, layer.bias = nn.Parameter(weight.contiguous().clone()), nn.Parameter(bias.clone())
    return layer


def _conv1d(weight: Tensor, bias: Tensor) -> nn.Module:
    """GPT-2's ``Conv1D`` computing ``x @ weight.T + bias`` (``weight`` ``(out, in)``; it stores ``(in, out)``)."""
    from transformers.pytorch_utils import Conv1D

    with torch.device("meta"):
        layer = Conv1D(weight.shape[0], weight.shape[1])
    layer.weight, layer.bias = nn.Parameter(weight.T.contiguous()), nn.Parameter(bias.clone())
    return layer
