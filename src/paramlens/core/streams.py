"""Reading and replacing activations of Hugging Face transformers at named sites, one way for every family.

Site names follow TransformerLens (``l``: the block index, from 0):

- ``hook_embed``: output of the token embedding module ``(B, T, d)`` (positions not added; Gemma's module
  scales by ``sqrt(d)``, so its value is scaled too).
- ``blocks.{l}.hook_resid_pre`` / ``blocks.{l}.hook_resid_post``: the residual stream ``(B, T, d)`` going into /
  coming out of block ``l`` (no final norm: ``resid_post`` of the last block is the stream before it).
- ``blocks.{l}.hook_attn_out`` / ``blocks.{l}.hook_mlp_out``: the attention / MLP sublayer output ``(B, T, d)`` as
  it is added to the stream (output projection and its bias included; Gemma 2/3: after the norm that follows the
  sublayer). For pre-norm decoders ``resid_pre + attn_out + mlp_out = resid_post``, also for the parallel ones
  (GPT-NeoX with ``use_parallel_residual``, Phi, GPT-J), whose MLP reads ``resid_pre`` rather than
  ``resid_pre + attn_out``. Post-norm blocks (BERT, OPT-350m) normalise after each addition instead.
- ``blocks.{l}.mlp.hook_pre``: input of the MLP's activation function ``(B, T, d_mlp)`` (gated MLPs: the gate
  projection); ``blocks.{l}.mlp.hook_post``: input of the down projection ``(B, T, d_mlp)`` (after the
  nonlinearity and, for gated MLPs, the product with the up projection).
- ``blocks.{l}.attn.hook_pattern``: attention probabilities ``(B, heads, T_query, T_key)``, rows summing to 1;
  only the eager attention implementation computes them (``attn_implementation="eager"``), and they can be
  read, not replaced.
- ``ln_final.hook_normalized``: output of the final norm ``(B, T, d)`` (what the unembedding reads).

Values are in the model's own units and dtype. :func:`capture` reads sites in one forward pass,
:func:`patched` replaces them while active, :func:`run_until` stops the forward after a site. Every site is a
forward (pre-)hook on one module; where those modules are comes from a :class:`Layout` detected
from the module tree (:func:`layout_of`): the block list (``model.layers``, ``transformer.h``, ``gpt_neox.layers``,
``model.decoder.layers``, ``encoder.layer``, ...) and, for the known block layouts (:data:`FAMILIES`), the
attention, MLP, activation, down projection and norms. The residual-stream sites need only the block list, so
any model with blocks at one of :data:`LAYER_PATHS` has them. Dropout runs as the model's mode says: the
identities above hold in eval mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.core.weights import run_with
from paramlens.errors import ParamLensError

LAYER_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "encoder.layer", "bert.encoder.layer",
               "layers", "h",  # these two: base models without a head (LlamaModel, GPT2Model)
               "model.decoder.layers", "decoder.layers")  # OPT

Patch = Callable[[Tensor], Tensor]

BLOCK_SITES = ("hook_resid_pre", "hook_attn_out", "attn.hook_pattern", "mlp.hook_pre", "mlp.hook_post",
               "hook_mlp_out", "hook_resid_post")
SITES = ("hook_embed", *(f"blocks.{{l}}.{s}" for s in BLOCK_SITES), "ln_final.hook_normalized")
_NEEDS = {"hook_attn_out": "attn_out", "attn.hook_pattern": "attn", "mlp.hook_pre": "mlp_act",
          "mlp.hook_post": "mlp_down", "hook_mlp_out": "mlp_out"}
_SITE = re.compile(r"blocks\.(\d+)\.(" + "|".join(re.escape(s) for s in BLOCK_SITES) + ")")
_ACTIVATIONS = ("act_fn", "act", "intermediate_act_fn", "activation_fn", "gelu_impl")


@dataclass(frozen=True)
class Layout:
    """Where a model's parts are. ``blocks`` is a module path from the model; the block parts are paths inside
    each block (``None``: the family does not have it, or the blocks are not of a known layout).

    Attributes:
        family: the block layout (one of :data:`FAMILIES`), or ``None`` when only the block list is known.
        blocks: the list of blocks (``"model.layers"``). n_layers: its length.
        attn: the attention module (its second output is the pattern). attn_out: the module whose output is
            the attention sublayer's output. mlp: the MLP module (``None`` where the MLP is not one module: OPT,
            BERT). mlp_act: the activation function module. mlp_down: the down projection. mlp_out: the module
            whose output is the MLP sublayer's output. mlp_norm: the norm whose output the MLP reads (``None``
            for post-norm blocks).
        final_norm: module path of the final norm from the model, or ``None`` (encoders).
        parallel: attention and MLP both read the block's input stream.
        post_norm: the stream is normalised after each sublayer's addition (BERT, OPT-350m).
        flat_mlp: the block flattens tokens to ``(B * T, .)`` around its MLP (OPT); the MLP sites are still
            given as ``(B, T, .)``.
    """

    family: str | None
    blocks: str
    n_layers: int
    attn: str | None = None
    attn_out: str | None = None
    mlp: str | None = None
    mlp_act: str | None = None
    mlp_down: str | None = None
    mlp_out: str | None = None
    mlp_norm: str | None = None
    final_norm: str | None = None
    parallel: bool = False
    post_norm: bool = False
    flat_mlp: bool = False

    def sites(self) -> list[str]:
        """The site names this model has, ``{l}`` standing for ``0..n_layers - 1``."""
        block = [s for s in BLOCK_SITES if s not in _NEEDS or getattr(self, _NEEDS[s]) is not None]
        return ["hook_embed", *(f"blocks.{{l}}.{s}" for s in block),
                *(["ln_final.hook_normalized"] if self.final_norm else [])]


def _family(name: str, attn: str, attn_out: str, mlp: str | None, act: str, down: str, mlp_out: str,
            mlp_norm: str | None, final_norm: str | None, **flags: bool) -> Layout:
    return Layout(name, "", 0, attn=attn, attn_out=attn_out, mlp=mlp, mlp_act=act, mlp_down=down, mlp_out=mlp_out,
                  mlp_norm=mlp_norm, final_norm=final_norm, **flags)


FAMILIES: dict[str, Layout] = {  # block parts per family; the first whose parts all exist in every block wins
    # name: attention, attention output, MLP, activation, down projection, MLP output, the norm in front of the MLP,
    # the final norm (next to the block list)
    "gemma2": _family("gemma2", "self_attn", "post_attention_layernorm", "mlp", "mlp.act_fn", "mlp.down_proj",
                      "post_feedforward_layernorm", "pre_feedforward_layernorm", "norm"),
    "llama": _family("llama", "self_attn", "self_attn", "mlp", "mlp.act_fn", "mlp.down_proj", "mlp",
                     "post_attention_layernorm", "norm"),
    "gpt2": _family("gpt2", "attn", "attn", "mlp", "mlp.act", "mlp.c_proj", "mlp", "ln_2", "ln_f"),
    "gpt_neox": _family("gpt_neox", "attention", "attention", "mlp", "mlp.act", "mlp.dense_4h_to_h", "mlp",
                        "post_attention_layernorm", "final_layer_norm"),
    "phi": _family("phi", "self_attn", "self_attn", "mlp", "mlp.activation_fn", "mlp.fc2", "mlp", "input_layernorm",
                   "final_layernorm", parallel=True),
    "gptj": _family("gptj", "attn", "attn", "mlp", "mlp.act", "mlp.fc_out", "mlp", "ln_1", "ln_f", parallel=True),
    "opt": _family("opt", "self_attn", "self_attn", None, "activation_fn", "fc2", "fc2", "final_layer_norm",
                   "final_layer_norm", flat_mlp=True),
    "bert": _family("bert", "attention.self", "attention.output.dense", None, "intermediate.intermediate_act_fn",
                    "output.dense", "output.dense", None, None, post_norm=True),
}
_FAMILY_NOTE = ("gemma2 (Gemma 2/3), llama (Llama, Mistral, Qwen2/3, Gemma, OLMo, SmolLM2), gpt2, gpt_neox (Pythia), "
                "phi, gptj, opt, bert (BERT-style encoders)")
_BLOCK_PARTS = ("attn", "attn_out", "mlp", "mlp_act", "mlp_down", "mlp_out", "mlp_norm")


def block_prefix(model: nn.Module) -> str:
    """The module name of the list of transformer blocks (``"model.layers"``, ``"transformer.h"``, ...)."""
    for path in LAYER_PATHS:
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return path
    raise ParamLensError(f"{type(model).__name__}: no transformer blocks found at {', '.join(LAYER_PATHS)}; "
                         "supported are Hugging Face transformers with blocks there, with sublayer sites for "
                         f"{_FAMILY_NOTE}")


def blocks_of(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks, in order."""
    return model.get_submodule(block_prefix(model))


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def _activation_of(blocks: nn.ModuleList) -> str | None:
    """The path of the one parameter-free activation module (``act_fn``, ``act``, ...) every block has."""
    found = [name for name, m in blocks[0].named_modules()
             if name.rsplit(".", 1)[-1] in _ACTIVATIONS and not list(m.parameters())]
    return found[0] if len(found) == 1 and all(_has(b, found[0]) for b in blocks) else None


def layout_of(model: nn.Module) -> Layout:
    """The :class:`Layout` of ``model``: its block list, and the block parts of the first family in
    :data:`FAMILIES` whose parts every block has (none found: only the block list and, if every block has
    exactly one, the MLP activation module)."""
    prefix = block_prefix(model)
    blocks = model.get_submodule(prefix)
    parent = prefix.rsplit(".", 1)[0] + "." if "." in prefix else ""
    for family in FAMILIES.values():
        parts = [getattr(family, p) for p in _BLOCK_PARTS if getattr(family, p) is not None]
        if all(_has(b, p) for b in blocks for p in parts):
            final = family.final_norm and parent + family.final_norm
            final = final if final and _has(model, final) else None
            first = blocks[0]
            post_norm = family.post_norm or getattr(first, "do_layer_norm_before", True) is False  # OPT-350m
            return replace(family, blocks=prefix, n_layers=len(blocks), final_norm=final, post_norm=post_norm,
                           mlp_norm=None if post_norm else family.mlp_norm,
                           parallel=bool(getattr(first, "use_parallel_residual", family.parallel)))
    return Layout(None, prefix, len(blocks), mlp_act=_activation_of(blocks))


# ---- hooks: the one place that knows how a block receives its stream -------------------------------------------

def _stream_in(args: tuple, kwargs: dict) -> Tensor:
    """The first input of a module call: a block's (or sublayer's) input stream."""
    return args[0] if args else kwargs["hidden_states"]


def _with_stream_in(args: tuple, kwargs: dict, value: Tensor) -> tuple[tuple, dict]:
    if args:
        return (value, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": value}


class _Stop(Exception):
    def __init__(self, value: Tensor):
        self.value = value


@dataclass
class _Point:
    """Site ``name`` is input ``"in"``, first output ``"out"`` or attention probabilities ``"pattern"`` of
    ``module``; ``block``: the block, for sites inside a block that flattens tokens (OPT's MLP)."""

    name: str
    module: nn.Module
    where: str
    block: nn.Module | None = None


def _point(model: nn.Module, layout: Layout, site: str) -> _Point:
    if site == "hook_embed":
        embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        if embed is None:
            raise ParamLensError(f"hook_embed: {type(model).__name__} has no input embedding module")
        return _Point(site, embed, "out")
    if site == "ln_final.hook_normalized":
        if layout.final_norm is None:
            raise ParamLensError(f"{site}: {type(model).__name__} has no known final norm; its sites are "
                                 f"{', '.join(layout.sites())}")
        return _Point(site, model.get_submodule(layout.final_norm), "out")
    match = _SITE.fullmatch(site) if isinstance(site, str) else None
    if match is None:
        raise ParamLensError(f"unknown site {site!r}; sites are {', '.join(SITES)} (l = 0..{layout.n_layers - 1})")
    layer, name = int(match[1]), match[2]
    if layer >= layout.n_layers:
        raise ParamLensError(f"{site}: layer {layer} does not exist; the model has {layout.n_layers} blocks "
                             f"(0..{layout.n_layers - 1})")
    block = model.get_submodule(layout.blocks)[layer]
    if name in ("hook_resid_pre", "hook_resid_post"):
        return _Point(site, block, "in" if name == "hook_resid_pre" else "out")
    part = getattr(layout, _NEEDS[name])
    if part is None:
        what = (f"{type(block).__name__} blocks are not of a known layout ({_FAMILY_NOTE})" if layout.family is None
                else f"{layout.family} blocks have no such part")
        raise ParamLensError(f"{site}: {what}; the sites of {type(model).__name__} are {', '.join(layout.sites())}")
    where = "pattern" if name == "attn.hook_pattern" else "in" if name in ("mlp.hook_pre", "mlp.hook_post") else "out"
    flat = layout.flat_mlp and name in ("mlp.hook_pre", "mlp.hook_post", "hook_mlp_out")
    return _Point(site, block.get_submodule(part), where, block if flat else None)


def _check(site: str, new: object, old: Tensor) -> Tensor:
    if not isinstance(new, Tensor) or new.shape != old.shape:
        got = tuple(new.shape) if isinstance(new, Tensor) else type(new).__name__
        raise ParamLensError(f"the replacement for {site} is {got}; it must keep the shape {tuple(old.shape)}")
    return new


class _Hooks:
    """The hooks of one :func:`_hooked` call: ``patches`` replace values, sites in ``keep`` are recorded in
    ``seen`` (detached with ``detach``), and the forward ends after site ``stop`` (:class:`_Stop`)."""

    def __init__(self, model: nn.Module, patches: Mapping[str, Patch], keep: set[str], stop: str | None,
                 detach: bool):
        self.model, self.patches, self.keep, self.stop, self.detach = model, patches, keep, stop, detach
        self.seen: dict[str, Tensor] = {}
        self.leads: dict[int, torch.Size] = {}  # id(block) -> (B, T) of its input, for blocks that flatten tokens

    def visit(self, p: _Point, old: Tensor) -> Tensor:
        """Patch, keep and stop at one site; returns the value the model goes on with (``old`` if unchanged)."""
        value = old
        lead = self.leads.get(id(p.block)) if p.block is not None else None
        if lead is not None and old.dim() == 2 and len(lead) == 2:
            value = old.view(*lead, old.shape[-1])
        fn = self.patches.get(p.name)
        new = value if fn is None else _check(p.name, fn(value), value)
        if p.name in self.keep:
            if p.name in self.seen:
                raise ParamLensError(f"{p.name} ran twice in one forward pass (a block used twice?); read it in "
                                     "separate passes")
            self.seen[p.name] = new.detach() if self.detach else new
        if p.name == self.stop:
            raise _Stop(new)
        return old if new is value else new.reshape(old.shape)

    def pre(self, p: _Point) -> Callable:
        def hook(_m, args, kwargs):
            old = _stream_in(args, kwargs)
            new = self.visit(p, old)
            return None if new is old else _with_stream_in(args, kwargs, new)
        return hook

    def post(self, p: _Point) -> Callable:
        def hook(_m, _args, out):
            old = out[0] if isinstance(out, tuple) else out
            if p.where == "pattern":
                self.visit(p, self.pattern(p, out))
                return None
            new = self.visit(p, old)
            if new is old:
                return None
            return (new, *out[1:]) if isinstance(out, tuple) else new
        return hook

    def pattern(self, p: _Point, out: object) -> Tensor:
        """The attention probabilities an attention module returned beside its output."""
        weights = out[1] if isinstance(out, tuple) and len(out) > 1 else None
        if weights is None:
            impl = getattr(getattr(self.model, "config", None), "_attn_implementation", "this")
            raise ParamLensError(f"{p.name}: the {impl!s} attention implementation does not compute attention "
                                 "probabilities; load the model with attn_implementation='eager' (or call "
                                 "model.set_attn_implementation('eager'))")
        return weights

    def lead_of(self, block: nn.Module) -> Callable:
        def hook(_m, args, kwargs):
            self.leads[id(block)] = _stream_in(args, kwargs).shape[:-1]
        return hook

    def install(self, points: list[_Point], handles: list) -> None:
        """Register the hooks for ``points``, appending each handle to ``handles`` (so all are removed even when a
        registration fails)."""
        for block in {id(p.block): p.block for p in points if p.block is not None}.values():
            handles.append(block.register_forward_pre_hook(self.lead_of(block), with_kwargs=True))
        for p in points:
            if p.where == "in":
                handles.append(p.module.register_forward_pre_hook(self.pre(p), with_kwargs=True))
            else:
                handles.append(p.module.register_forward_hook(self.post(p)))


@contextmanager
def _hooked(model: nn.Module, read: Iterable[str] = (), patches: Mapping[str, Patch] | None = None,
            stop: str | None = None, detach: bool = True) -> Iterator[dict[str, Tensor]]:
    """While active: every site in ``patches`` is replaced by ``fn(value)``, then the sites in ``read`` are kept
    in the yielded dict (detached with ``detach``), and after site ``stop`` the forward ends (:class:`_Stop`)."""
    layout = layout_of(model)
    patches = dict(patches or {})
    read = [read] if isinstance(read, str) else list(read)
    names = list(dict.fromkeys([*patches, *read, *([stop] if stop else [])]))
    points = [_point(model, layout, name) for name in names]
    for p in points:
        if p.where == "pattern" and p.name in patches:
            raise ParamLensError(f"{p.name}: attention probabilities can be read, not replaced; patch "
                                 f"{p.name.replace('attn.hook_pattern', 'hook_attn_out')} instead")
    hooks = _Hooks(model, patches, set(read), stop, detach)
    handles: list = []
    try:
        hooks.install(points, handles)
        yield hooks.seen
    finally:
        for h in handles:
            h.remove()


def _missing(sites: Iterable[str], seen: Mapping[str, Tensor]) -> None:
    missing = [s for s in sites if s not in seen]
    if missing:
        raise ParamLensError(f"{', '.join(missing)} did not run in the forward pass (the model skipped blocks?)")


# ---- the public primitive ---------------------------------------------------------------------------------------

@torch.no_grad()
def capture(model: nn.Module, sites: str | Iterable[str], *args, weights: Mapping | None = None,
            **inputs) -> dict[str, Tensor]:
    """Run ``model(*args, **inputs)`` once and return ``{site: value}`` (detached, the model's dtype, shapes as in
    the module docstring: ``(B, T, d)`` for the streams and sublayer outputs). With ``weights``
    (``{target: (d_out, d_in) matrix}``) the model runs with those matrices substituted
    (:func:`paramlens.core.weights.run_with`). Sites replaced by an enclosing :func:`patched` are read replaced."""
    sites = [sites] if isinstance(sites, str) else list(sites)
    with _hooked(model, read=sites) as seen:
        if weights:
            run_with(model, weights, *args, **inputs)
        else:
            model(*args, **inputs)
    _missing(sites, seen)
    return {s: seen[s] for s in sites}


@contextmanager
def patched(model: nn.Module, patches: Mapping[str, Patch]) -> Iterator[None]:
    """While active, the value at each site of ``patches`` is replaced by ``fn(value)`` (same shape; return the
    value itself to leave it alone) in every forward pass of ``model``, gradients flowing through ``fn``."""
    with _hooked(model, patches=patches):
        yield


def run_until(model: nn.Module, site: str, *args, patches: Mapping[str, Patch] | None = None, **inputs) -> Tensor:
    """The value at ``site`` (differentiable, not detached) when ``model(*args, **inputs)`` runs with ``patches``
    (as in :func:`patched`) applied; the forward ends there, so nothing after the site runs."""
    try:
        with _hooked(model, patches=patches, stop=site, detach=False):
            model(*args, **inputs)
    except _Stop as stop:
        return stop.value
    raise ParamLensError(f"{site} did not run in the forward pass (the model skipped blocks?)")


# ---- weights ----------------------------------------------------------------------------------------------------

def token_embeddings(model: nn.Module) -> Tensor:
    """``(vocab, d_model)`` input token embeddings (no positions), detached."""
    return model.get_input_embeddings().weight.detach()


@dataclass
class Norm:
    """A norm module read as weights: ``gain`` ``(d,)`` (Gemma-style RMSNorms scale by ``1 + weight``; that is
    folded in), ``bias`` ``(d,)`` or ``None``, ``eps`` and ``centred`` (LayerNorm; RMSNorm does not centre)."""

    module: nn.Module
    gain: Tensor
    bias: Tensor | None
    eps: float
    centred: bool

    def __call__(self, x: Tensor) -> Tensor:
        """The norm of ``x`` ``(..., d)`` computed in ``x``'s dtype (float64 for exact weight-based reads)."""
        if self.centred:
            bias = None if self.bias is None else self.bias.to(x.dtype)
            return F.layer_norm(x, x.shape[-1:], self.gain.to(x.dtype), bias, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.gain.to(x.dtype)


def norm_of(module: nn.Module) -> Norm:
    """:class:`Norm` of a LayerNorm or RMSNorm module (anything else: ParamLensError)."""
    name = type(module).__name__
    weight = getattr(module, "weight", None)
    centred = isinstance(module, nn.LayerNorm) or "LayerNorm" in name
    eps = float(getattr(module, "variance_epsilon", getattr(module, "eps", 1e-5 if centred else 1e-6)))
    if centred:
        gain = weight.detach() if isinstance(weight, Tensor) else torch.ones(module.normalized_shape[-1])
        bias = getattr(module, "bias", None)
        return Norm(module, gain, bias.detach() if isinstance(bias, Tensor) else None, eps, True)
    if "RMSNorm" in name and isinstance(weight, Tensor):
        gain = weight.detach()
        with torch.no_grad():  # RMSNorm(1) = gain / sqrt(1 + eps): tells a gain of w from one of 1 + w (Gemma)
            probe = module.forward(torch.ones(1, len(gain), dtype=gain.dtype)).flatten().double() * (1 + eps) ** 0.5
        if (probe - 1 - gain.double()).abs().max() < (probe - gain.double()).abs().max():
            gain = 1 + gain
        return Norm(module, gain, None, eps, False)
    raise ParamLensError(f"{name} is neither a LayerNorm nor an RMSNorm; its gain cannot be read")


def unembedding(model: nn.Module, fold_norm: bool = False) -> Tensor:
    """``(vocab, d_model)`` unembedding (the LM head's weight), detached.

    With ``fold_norm`` the final norm's gain ``g`` is folded in (``h``: the stream ``(..., d)`` after the last
    block). RMSNorm: ``U * g``, exact: ``logits = (h / rms(h)) @ U_folded.T`` with ``rms(h) = sqrt(mean(h^2) + eps)``.
    LayerNorm: ``U * g`` with each row's mean over ``d`` removed (the centring folded in), so ``logits = (h / std(h))
    @ U_folded.T + U @ b`` with ``std(h) = sqrt(var(h) + eps)``: the norm's bias ``b`` (and an LM head bias, e.g.
    Phi's) adds a logit per output token that does not depend on the input and is not in the matrix. Logit
    soft-capping (Gemma 2) comes after either."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ParamLensError(f"{type(model).__name__} has no unembedding (an encoder?); a causal LM is needed")
    U = head.weight.detach()
    if not fold_norm:
        return U
    layout = layout_of(model)
    if layout.final_norm is None:
        raise ParamLensError(f"{type(model).__name__}: no known final norm to fold into the unembedding")
    norm = norm_of(model.get_submodule(layout.final_norm))
    folded = U * norm.gain
    return folded - folded.mean(-1, keepdim=True) if norm.centred else folded


@dataclass
class MLPParts:
    """Block ``index``'s MLP module and the norm whose output it reads (``norm.gain``: ``(d_model,)``)."""

    index: int
    mlp: nn.Module
    norm: Norm


def mlp_parts(model: nn.Module, layer: int) -> MLPParts:
    """The MLP of block ``layer`` and the norm in front of it (pre-norm families with one MLP module)."""
    layout = layout_of(model)
    if not 0 <= layer < layout.n_layers:
        raise ParamLensError(f"layer {layer} does not exist; the model has {layout.n_layers} layers")
    if layout.mlp is None or layout.mlp_norm is None:
        raise ParamLensError(f"{type(model).__name__}: its blocks have no single MLP module behind a norm "
                             f"(known: {_FAMILY_NOTE}; post-norm blocks and OPT/BERT have none)")
    block = model.get_submodule(layout.blocks)[layer]
    return MLPParts(layer, block.get_submodule(layout.mlp), norm_of(block.get_submodule(layout.mlp_norm)))


# ---- residual streams -------------------------------------------------------------------------------------------

@torch.no_grad()
def residual_streams(model: nn.Module, input_ids: Tensor, weights: Mapping | None = None) -> Tensor:
    """``(L + 1, B, T, d)`` float32: the residual stream before each of the ``L`` blocks and after the last
    (``hook_resid_pre`` of every block, ``hook_resid_post`` of the last), for ``input_ids`` ``(B, T)``; with
    ``weights`` (``{target: (d_out, d_in) matrix}``) the model runs with those matrices substituted
    (:func:`paramlens.core.weights.run_with`)."""
    n = len(blocks_of(model))
    sites = [f"blocks.{l}.hook_resid_pre" for l in range(n)] + [f"blocks.{n - 1}.hook_resid_post"]
    seen = capture(model, sites, weights=weights, input_ids=input_ids)
    return torch.stack([seen[s].float() for s in sites])


def require_tokens(model: nn.Module, n_tokens: int, what: str) -> None:
    """Refuse fits of a ``d``-dimensional stream from ``n_tokens <= d`` tokens: their maps, bases and null spaces
    describe the sample, not the model (explained variance goes negative, every direction looks degenerate)."""
    d = model.get_input_embeddings().weight.shape[1]
    if n_tokens <= d:
        raise ParamLensError(f"{what} from {n_tokens} tokens of a {d}-dimensional residual stream: fewer tokens than "
                             f"dimensions; give more than {d} tokens (--tokens)")


def batches_of(windows: Tensor, batch: int = 8) -> Iterator[Tensor]:
    """``windows`` ``(n, T)`` token ids, ``batch`` rows ``(B, T)`` at a time."""
    if windows.dim() != 2 or len(windows) == 0:
        raise ParamLensError(f"token windows must be a non-empty (n, T) tensor, got {tuple(windows.shape)}")
    for s in range(0, len(windows), batch):
        yield windows[s: s + batch]


def stream_batches(model: nn.Module, windows: Tensor, batch: int = 8,
                   weights: Mapping | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """:func:`batches_of` with each batch's residual streams: ``(ids (B, T), streams (L + 1, B, T, d))``, so
    only one batch of activations is held; ``weights`` as in :func:`residual_streams`."""
    model.eval()
    for ids in batches_of(windows, batch):
        yield ids, residual_streams(model, ids, weights)
