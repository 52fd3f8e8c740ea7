"""TransformerLens ``HookedTransformer`` state dicts, run exactly as Hugging Face models.

A ``torch.save(model.state_dict())`` file of a HookedTransformer holds per-head weights (``blocks.{l}.attn.W_Q``
``(n_heads, d_model, d_head)``, ``W_O`` ``(n_heads, d_head, d_model)``, ``mlp.W_in`` ``(d_model, d_mlp)``,
``unembed.W_U`` ``(d_model, d_vocab_out)``, ...). :func:`lens_to_hf` reads every size from the weights and what the
weights cannot tell (activation, positions, eps, normalisation without weights, attention scale, rotary settings)
from the model's config (``model.cfg.to_dict()``; keys it lacks take TransformerLens's defaults, except the ones
that the weights never determine). It builds a GPT-2 (learned positions), Llama (rotary, with a gated MLP or
grouped-query attention) or GPT-NeoX (other rotary models) Hugging Face model with the same logits; an option with
no exact Hugging Face equivalent raises one error naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from paramlens.errors import ParamLensError

FIX = "save `json.dumps(model.cfg.to_dict(), default=str)` as config.json next to the file"
ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "silu", "relu2")
NORMS = ("LN", "LNPre", "RMS", "RMSPre", None)
SIZES = ("n_layers", "d_model", "n_heads", "d_head", "n_key_value_heads", "d_mlp", "d_vocab", "d_vocab_out", "n_ctx",
         "attn_only", "gated_mlp")
# option: the values with which TransformerLens computes what a Hugging Face model can (any other is refused)
PLAIN = {"attention_dir": ("causal",), "use_local_attn": (False, None), "post_embedding_ln": (False, None),
         "use_normalization_before_and_after": (False, None), "use_qk_norm": (False, None),
         "attn_scores_soft_cap": (-1.0, None), "output_logits_soft_cap": (-1.0, None), "num_experts": (None, 0),
         "clip_qkv": (None,), "use_logn_attn": (False, None), "use_dynamic_ntk_rope": (False, None),
         "use_NTK_by_parts_rope": (False, None), "use_yarn_rope": (False, None), "rotary_scaling_factor": (1.0, None),
         "use_attention_sinks": (False, None), "load_in_4bit": (False, None)}
POST_NORM = ("Olmo2ForCausalLM", "Olmo3ForCausalLM", "OlmoeForCausalLM")
LENS_KEYS: tuple[str, ...] = (
    "positional_embedding_type", "act_fn", "normalization_type", "eps", "final_rms", "use_attn_scale", "attn_scale",
    "scale_attn_by_inverse_layer_idx", "parallel_attn_mlp", "rotary_dim", "rotary_base", "rotary_adjacent_pairs",
    "original_architecture", *SIZES, *PLAIN)
_BUFFER = re.compile(r"\.attn\.(IGNORE|mask|rotary_sin|rotary_cos)$")


@dataclass(frozen=True)
class LensSpec:
    """What a HookedTransformer computes: its sizes, and the options that change the computation."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    n_kv_heads: int | None  # grouped-query attention (``_W_K`` ``(n_kv_heads, d_model, d_head)``), else None
    d_mlp: int | None  # None: attention-only
    gated: bool
    d_vocab: int
    d_vocab_out: int
    n_ctx: int
    norm: str | None  # the blocks' norms: "LN", "LNPre", "RMS", "RMSPre" or None
    final_norm: str | None
    eps: float
    act_fn: str | None
    rotary: bool  # rotary positions; else learned ``pos_embed.W_pos`` ``(n_ctx, d_model)``
    rotary_dim: int
    rotary_base: float
    rotary_pairs: bool  # rotates adjacent pairs (GPT-J) rather than the two halves of ``rotary_dim``
    parallel: bool
    attn_scales: tuple[float, ...]  # layer l's attention scores are divided by attn_scales[l]

    @property
    def target(self) -> str:
        """The Hugging Face architecture that runs it: ``"gpt2"``, ``"llama"`` or ``"neox"``."""
        if not self.rotary:
            return "gpt2"
        return "llama" if self.gated or self.n_kv_heads is not None else "neox"


def is_lens_state_dict(names: Iterable[str]) -> bool:
    """True when tensor names look like a HookedTransformer state dict (``embed.W_E`` and attention weights
    ``blocks.{l}.attn.W_Q`` / ``W_K`` / ``_W_K`` ...)."""
    names = set(names)
    return "embed.W_E" in names and any(re.fullmatch(r"blocks\.\d+\.attn\._?W_[QKV]", n) for n in names)


def lens_to_hf(tensors: Mapping[str, Tensor], config: Mapping[str, Any] | None, source: str) -> nn.Module:
    """An eval-mode Hugging Face causal LM computing what the HookedTransformer with these weights and ``config``
    (``HookedTransformerConfig.to_dict()``, or None) computes: ``model(input_ids=ids).logits`` ``(batch, seq,
    d_vocab_out)`` float32 from token ids ``(batch, seq)``. ``source`` names the file in errors. The attention
    buffers (``IGNORE``, ``mask``, ``rotary_sin/cos``) are dropped; weights become float32."""
    from paramlens.core.lens_hf import build

    weights = {k: v.detach().float() for k, v in tensors.items() if not _BUFFER.search(k)}
    spec = lens_spec(weights, config, source)
    _check_tensors(spec, weights, source)
    return build(spec, weights)


def lens_spec(tensors: Mapping[str, Tensor], config: Mapping[str, Any] | None, source: str) -> LensSpec:
    """The :class:`LensSpec` of a HookedTransformer state dict (buffers dropped) and its config."""
    sizes = _sizes(tensors, source)
    cfg = {k: _plain(v) for k, v in (config or {}).items()}
    _require(sizes, cfg, config is not None, "blocks.0.ln1.w" in tensors, source)
    for key, value in sizes.items():
        unknown = (value is None and key == "n_ctx") or (sizes["attn_only"] and key in ("d_mlp", "gated_mlp"))
        if cfg.get(key) not in (None, -1, value) and not unknown:
            raise ParamLensError(f"{source}: the config says {key}={cfg[key]!r} but the weights have {value!r}")
    for key, plain in PLAIN.items():
        value = cfg.get(key, plain[0])
        if value not in plain and not (key.endswith("soft_cap") and float(value) <= 0):
            _refuse(source, key, value)
    if cfg.get("original_architecture") in POST_NORM:
        _refuse(source, "original_architecture", cfg["original_architecture"])
    norm, final_norm = _norms(tensors, cfg, source)
    positions = cfg["positional_embedding_type"]
    if positions not in ("standard", "rotary"):
        _refuse(source, "positional_embedding_type", positions)
    act = None if sizes["attn_only"] else cfg["act_fn"]
    if not sizes["attn_only"] and act not in ACTIVATIONS:
        _refuse(source, "act_fn", act, f"supported: {', '.join(ACTIVATIONS)}")
    scale = 1.0
    if cfg.get("use_attn_scale", True):
        scale = float(cfg.get("attn_scale") or -1.0)
        scale = math.sqrt(sizes["d_head"]) if scale == -1.0 else scale
    by_layer = cfg.get("scale_attn_by_inverse_layer_idx", False)
    spec = LensSpec(
        n_layers=sizes["n_layers"], d_model=sizes["d_model"], n_heads=sizes["n_heads"], d_head=sizes["d_head"],
        n_kv_heads=sizes["n_key_value_heads"], d_mlp=sizes["d_mlp"], gated=sizes["gated_mlp"],
        d_vocab=sizes["d_vocab"], d_vocab_out=sizes["d_vocab_out"],
        n_ctx=int(sizes["n_ctx"] or cfg.get("n_ctx") or 2048), norm=norm, final_norm=final_norm,
        eps=float(cfg.get("eps") or 0.0), act_fn=act, rotary=positions == "rotary",
        rotary_dim=int(cfg.get("rotary_dim") or sizes["d_head"]), rotary_base=float(cfg.get("rotary_base") or 10000),
        rotary_pairs=bool(cfg.get("rotary_adjacent_pairs", False)), parallel=bool(cfg.get("parallel_attn_mlp", False)),
        attn_scales=tuple(scale * (layer + 1 if by_layer else 1) for layer in range(sizes["n_layers"])))
    _check_target(spec, source)
    return spec


def _plain(value: Any) -> Any:
    """A config value as TransformerLens holds it (JSON may spell None and booleans as strings)."""
    return {"None": None, "null": None, "True": True, "true": True, "False": False, "false": False}.get(value, value) \
        if isinstance(value, str) else value


def _refuse(source: str, key: str, value: Any, why: str = "it has no exact Hugging Face equivalent") -> None:
    raise ParamLensError(f"{source}: TransformerLens option {key}={value!r} is not supported ({why})")


def _sizes(t: Mapping[str, Tensor], source: str) -> dict[str, Any]:
    """Every size the weights tell: layers, widths, heads, vocabularies, context, attention-only, gated MLP."""
    anchors = {"embed.W_E": 2, "unembed.W_U": 2, "blocks.0.attn.W_Q": 3}
    for name, ndim in {**anchors, "blocks.0.attn._W_K": 3, "blocks.0.mlp.W_in": 2, "pos_embed.W_pos": 2}.items():
        if (name in anchors and name not in t) or (name in t and t[name].ndim != ndim):
            raise ParamLensError(f"{source}: not a HookedTransformer state dict: {name} should be a {ndim}-D tensor")
    layers = [int(m.group(1)) for n in t if (m := re.match(r"blocks\.(\d+)\.", n))]
    q, k, w_in, pos = (t.get(n) for n in ("blocks.0.attn.W_Q", "blocks.0.attn._W_K", "blocks.0.mlp.W_in",
                                          "pos_embed.W_pos"))
    return {"n_layers": max(layers) + 1, "d_model": t["embed.W_E"].shape[1], "n_heads": q.shape[0],
            "d_head": q.shape[2], "n_key_value_heads": None if k is None else k.shape[0],
            "d_mlp": None if w_in is None else w_in.shape[1], "d_vocab": t["embed.W_E"].shape[0],
            "d_vocab_out": t["unembed.W_U"].shape[1], "n_ctx": None if pos is None else pos.shape[0],
            "attn_only": w_in is None, "gated_mlp": "blocks.0.mlp.W_gate" in t}


def _require(sizes: dict, cfg: dict, has_config: bool, norm_weights: bool, source: str) -> None:
    """One error naming every option the computation needs that neither the weights nor the config give."""
    needed = ["positional_embedding_type"] + ([] if sizes["attn_only"] else ["act_fn"])
    needed += [] if norm_weights else ["normalization_type"]
    needed += ["eps"] if norm_weights or cfg.get("normalization_type", "LN") is not None else []
    missing = [key for key in needed if cfg.get(key) is None and not (key == "normalization_type" and key in cfg)]
    if missing:
        where = "its config lacks them" if has_config else "no config was given"
        raise ParamLensError(f"{source}: the weights of a TransformerLens model do not tell {', '.join(missing)}, "
                             f"and {where}; {FIX}")


def _norms(t: Mapping[str, Tensor], cfg: dict, source: str) -> tuple[str | None, str | None]:
    """The blocks' and the final norm's kind, from the weights (``ln1.w`` / ``ln1.b``) or the config."""
    found = ("LN" if "blocks.0.ln1.b" in t else "RMS") if "blocks.0.ln1.w" in t else None
    norm = cfg.get("normalization_type", found)
    if norm not in NORMS:
        _refuse(source, "normalization_type", norm, f"supported: {', '.join(map(str, NORMS))}")
    if (found is not None and norm != found) or (found is None and norm in ("LN", "RMS")):
        raise ParamLensError(f"{source}: the config says normalization_type={norm!r} but the weights have "
                             f"{'no norm weights' if found is None else repr(found) + ' norms'}")
    final_rms = "ln_final.b" not in t if norm == "LN" else bool(cfg.get("final_rms", False))
    return norm, {"LN": "RMS", "LNPre": "RMSPre"}.get(norm, norm) if final_rms else norm


def _check_target(spec: LensSpec, source: str) -> None:
    """Refuse what the chosen Hugging Face architecture cannot compute exactly."""
    if spec.target == "gpt2" and spec.gated:
        _refuse(source, "gated_mlp", True, "with learned positions; supported with rotary positions")
    if spec.target == "gpt2" and spec.parallel:
        _refuse(source, "parallel_attn_mlp", True, "with learned positions; supported with rotary positions")
    if spec.target == "llama" and spec.parallel:
        _refuse(source, "parallel_attn_mlp", True, "with a gated MLP or grouped-query attention")
    if spec.target == "llama" and spec.rotary_dim != spec.d_head:
        _refuse(source, "rotary_dim", spec.rotary_dim, f"< d_head={spec.d_head} with a gated MLP or grouped-query "
                "attention")
    if spec.target == "llama" and not spec.gated and spec.d_mlp is not None:
        _refuse(source, "gated_mlp", False, "with grouped-query attention")
    if spec.target != "llama" and spec.d_model % spec.n_heads:
        _refuse(source, "n_heads", spec.n_heads, f"d_model={spec.d_model} is not a multiple of it")


def _check_tensors(spec: LensSpec, t: Mapping[str, Tensor], source: str) -> None:
    """Every tensor the spec needs, with its shape, and nothing else."""
    d, h, dh, m = spec.d_model, spec.n_heads, spec.d_head, spec.d_mlp
    kv, g = (spec.n_kv_heads, "_") if spec.n_kv_heads is not None else (h, "")
    want = {"embed.W_E": (spec.d_vocab, d), "unembed.W_U": (d, spec.d_vocab_out), "unembed.b_U": (spec.d_vocab_out,)}
    want |= {} if spec.rotary else {"pos_embed.W_pos": (spec.n_ctx, d)}
    want |= _norm_shapes("ln_final", spec.final_norm, d)
    for layer in range(spec.n_layers):
        p = f"blocks.{layer}."
        want |= {p + "attn.W_Q": (h, d, dh), p + "attn.W_O": (h, dh, d), p + "attn.b_Q": (h, dh), p + "attn.b_O": (d,),
                 p + f"attn.{g}W_K": (kv, d, dh), p + f"attn.{g}W_V": (kv, d, dh), p + f"attn.{g}b_K": (kv, dh),
                 p + f"attn.{g}b_V": (kv, dh)}
        want |= _norm_shapes(p + "ln1", spec.norm, d)
        if m is not None:
            want |= _norm_shapes(p + "ln2", spec.norm, d)
            want |= {p + "mlp.W_in": (d, m), p + "mlp.b_in": (m,), p + "mlp.W_out": (m, d), p + "mlp.b_out": (d,)}
            want |= {p + "mlp.W_gate": (d, m)} if spec.gated else {}
    extra = sorted(set(t) - set(want))
    if extra:
        raise ParamLensError(f"{source}: tensor {extra[0]} has no place in a supported HookedTransformer with this "
                             f"config ({len(extra)} such tensors)")
    for name, shape in want.items():
        if name not in t:
            raise ParamLensError(f"{source}: missing tensor {name} {shape} that this config needs")
        if tuple(t[name].shape) != shape:
            raise ParamLensError(f"{source}: {name} has shape {tuple(t[name].shape)}, expected {shape}")


def _norm_shapes(prefix: str, kind: str | None, d: int) -> dict[str, tuple[int]]:
    return {f"{prefix}.{p}": (d,) for p in {"LN": "wb", "RMS": "w"}.get(kind or "", "")}
