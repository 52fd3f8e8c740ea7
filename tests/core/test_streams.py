import math

import pytest
import torch
from torch import nn

from paramlens.core.streams import (
    block_prefix,
    capture,
    layout_of,
    mlp_parts,
    norm_of,
    patched,
    residual_streams,
    run_until,
    stream_batches,
    token_embeddings,
    unembedding,
)
from paramlens.core.weights import select
from paramlens.errors import ParamLensError


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16,
                                      bos_token_id=0, eos_token_id=0)).eval()


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                        num_attention_heads=2, num_key_value_heads=2, vocab_size=50, bos_token_id=0,
                                        eos_token_id=0)).eval()


VOCAB = 100


def _tiny(model_type: str, **extra):
    """A 2-block, d = 32 model of ``model_type`` (random weights, eager attention) with its norm gains and biases
    moved off their initial values, so that a gain or bias read wrongly shows."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    sizes = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "vocab_size": VOCAB}
    ids = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    kw = {**sizes, **ids, "intermediate_size": 64, "num_key_value_heads": 2, "head_dim": 16,
          "max_position_embeddings": 16}
    if model_type in ("gpt2", "gptj"):
        kw = {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": VOCAB, "n_positions": 16, "rotary_dim": 8,
              "bos_token_id": 0, "eos_token_id": 0}
    elif model_type == "opt":
        kw = {**sizes, **ids, "pad_token_id": 1, "ffn_dim": 64, "word_embed_proj_dim": 32,
              "max_position_embeddings": 16}
    elif model_type == "bert":
        kw = {**sizes, "intermediate_size": 64}
    kw.update(extra)
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **kw)
    auto = AutoModel if model_type == "bert" else AutoModelForCausalLM
    model = auto.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        for module in model.modules():
            if "Norm" in type(module).__name__:
                for p in module.parameters():
                    p.add_(0.3 * torch.randn_like(p))
    return model


DECODERS = {
    "gpt2": lambda: _tiny("gpt2"),
    "llama": lambda: _tiny("llama"),
    "mistral": lambda: _tiny("mistral"),
    "qwen2": lambda: _tiny("qwen2"),
    "gemma": lambda: _tiny("gemma"),  # RMSNorm scales by 1 + weight; embeddings scaled by sqrt(d)
    "gemma2": lambda: _tiny("gemma2"),  # norms after each sublayer, logit soft-capping
    "gpt_neox": lambda: _tiny("gpt_neox"),  # parallel attention and MLP
    "gpt_neox_sequential": lambda: _tiny("gpt_neox", use_parallel_residual=False),
    "phi": lambda: _tiny("phi"),  # parallel, one norm for both, LM head with a bias
    "gptj": lambda: _tiny("gptj"),  # parallel
    "opt": lambda: _tiny("opt"),  # tokens flattened around the MLP
}
FAMILY = {"gpt2": "gpt2", "llama": "llama", "mistral": "llama", "qwen2": "llama", "gemma": "llama", "gemma2": "gemma2",
          "gpt_neox": "gpt_neox", "gpt_neox_sequential": "gpt_neox", "phi": "phi", "gptj": "gptj", "opt": "opt"}
PARALLEL = {"gpt_neox", "phi", "gptj"}
ALL = {**DECODERS, "bert": lambda: _tiny("bert")}


def _ids(n: int = 2, t: int = 7) -> torch.Tensor:
    return torch.randint(2, VOCAB, (n, t), generator=torch.Generator().manual_seed(1))


def _block_sites(model, *names: str) -> list[str]:
    return [f"blocks.{l}.{s}" for l in range(layout_of(model).n_layers) for s in names]


def _final_norm(model) -> nn.Module:
    return model.get_submodule(layout_of(model).final_norm)


def _logits_of(model, final_stream: torch.Tensor) -> torch.Tensor:
    """The LM head on the final norm of ``final_stream``, soft-capped where the model caps (Gemma 2)."""
    logits = model.get_output_embeddings()(_final_norm(model)(final_stream))
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


# ---- layouts --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ALL))
def test_each_family_gets_its_layout(name):
    layout = layout_of(ALL[name]())
    assert layout.family == FAMILY.get(name, "bert") and layout.n_layers == 2
    assert layout.parallel == (name in PARALLEL)
    assert layout.post_norm == (name == "bert")
    assert (layout.final_norm is None) == (name == "bert")
    assert "blocks.{l}.attn.hook_pattern" in layout.sites() and "blocks.{l}.mlp.hook_post" in layout.sites()


def test_post_norm_opt_and_unknown_blocks():
    """OPT-350m normalises after each addition: no norm in front of its MLP. Mixtral's MoE blocks are no known
    layout: its streams can be read, its sublayers cannot."""
    opt = layout_of(_tiny("opt", do_layer_norm_before=False))
    assert opt.post_norm and opt.mlp_norm is None
    mixtral = _tiny("mixtral", num_local_experts=2, num_experts_per_tok=1)
    layout = layout_of(mixtral)
    assert layout.family is None and layout.attn is None
    ids = _ids()
    hidden = mixtral(input_ids=ids, output_hidden_states=True).hidden_states
    assert torch.allclose(capture(mixtral, "blocks.1.hook_resid_pre", input_ids=ids)["blocks.1.hook_resid_pre"],
                          hidden[1])
    with pytest.raises(ParamLensError, match="not of a known layout.*llama.*hook_resid_pre"):
        capture(mixtral, "blocks.0.hook_attn_out", input_ids=ids)


# ---- reading: against the models' own outputs -----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ALL))
def test_streams_and_patterns_are_the_models_own(name):
    """``resid_pre`` of block l is Hugging Face's ``hidden_states[l]``; its last entry is the final norm of the
    last ``resid_post`` (decoders) or that stream itself (BERT, no final norm); the attention patterns are its
    ``attentions``; ``hook_embed`` is the embedding rows (Gemma: scaled by sqrt(d))."""
    model = ALL[name]()
    ids = _ids()
    sites = _block_sites(model, "hook_resid_pre", "hook_resid_post", "attn.hook_pattern") + ["hook_embed"]
    decoder = name != "bert"
    if decoder:
        sites.append("ln_final.hook_normalized")
    acts = capture(model, sites, input_ids=ids)
    out = model(input_ids=ids, output_hidden_states=True, output_attentions=True)
    for l in range(2):
        assert torch.allclose(acts[f"blocks.{l}.hook_resid_pre"], out.hidden_states[l], atol=1e-6)
        pattern = acts[f"blocks.{l}.attn.hook_pattern"]
        assert pattern.shape == (2, 2, 7, 7) and torch.allclose(pattern, out.attentions[l], atol=1e-6)
        assert torch.allclose(pattern.sum(-1), torch.ones(2, 2, 7), atol=1e-5)
    last = acts["blocks.1.hook_resid_post"]
    assert last.shape == (2, 7, 32)
    if decoder:
        assert torch.allclose(_final_norm(model)(last), out.hidden_states[-1], atol=1e-5)
        assert torch.allclose(acts["ln_final.hook_normalized"], out.hidden_states[-1], atol=1e-6)
        assert not torch.allclose(last, out.hidden_states[-1], atol=1e-3)
    else:
        assert torch.allclose(last, out.hidden_states[-1], atol=1e-6)
        assert torch.allclose(last, out.last_hidden_state, atol=1e-6)
    scale = math.sqrt(32) if name.startswith("gemma") else 1.0
    assert torch.allclose(acts["hook_embed"], token_embeddings(model)[ids] * scale, atol=1e-5)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_sublayers_add_up_to_the_block_output(name):
    """Pre-norm decoders, the parallel ones included: ``resid_pre + attn_out + mlp_out == resid_post``."""
    model = DECODERS[name]()
    acts = capture(model, _block_sites(model, "hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post"),
                   input_ids=_ids())
    for l in range(2):
        total = sum(acts[f"blocks.{l}.{s}"] for s in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out"))
        assert torch.allclose(total, acts[f"blocks.{l}.hook_resid_post"], atol=1e-5)


def test_bert_normalises_after_each_addition():
    """BERT (post-norm): ``resid_post = LN_2(LN_1(resid_pre + attn_out) + mlp_out)``."""
    model = ALL["bert"]()
    acts = capture(model, _block_sites(model, "hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post"),
                   input_ids=_ids())
    for l, block in enumerate(model.encoder.layer):
        mid = block.attention.output.LayerNorm(acts[f"blocks.{l}.hook_resid_pre"] + acts[f"blocks.{l}.hook_attn_out"])
        post = block.output.LayerNorm(mid + acts[f"blocks.{l}.hook_mlp_out"])
        assert torch.allclose(post, acts[f"blocks.{l}.hook_resid_post"], atol=1e-5)


@pytest.mark.parametrize("name", sorted(ALL))
def test_mlp_hidden_activations(name):
    """``mlp.hook_post`` through the down projection is ``hook_mlp_out`` (Gemma 2: then its post-MLP norm);
    ``mlp.hook_pre`` through the activation is ``hook_post`` (gated MLPs: times the up projection of the MLP's
    input, the norm in front of it applied to ``resid_pre + attn_out``, or to ``resid_pre`` where attention and
    MLP run in parallel); the MLP module on that input is ``hook_mlp_out``."""
    model = ALL[name]()
    layout = layout_of(model)
    acts = capture(model, _block_sites(model, "hook_resid_pre", "hook_attn_out", "mlp.hook_pre", "mlp.hook_post",
                                       "hook_mlp_out"), input_ids=_ids())
    blocks = model.get_submodule(layout.blocks)
    for l, block in enumerate(blocks):
        a = {s: acts[f"blocks.{l}.{s}"] for s in ("hook_resid_pre", "hook_attn_out", "mlp.hook_pre", "mlp.hook_post",
                                                   "hook_mlp_out")}
        d_mlp = 128 if name in ("gpt2", "gptj") else 64
        assert a["mlp.hook_post"].shape == a["mlp.hook_pre"].shape == (2, 7, d_mlp)
        out = block.get_submodule(layout.mlp_down)(a["mlp.hook_post"])
        if name == "gemma2":
            out = block.post_feedforward_layernorm(out)
        assert torch.allclose(out, a["hook_mlp_out"], atol=1e-6)
        act = block.get_submodule(layout.mlp_act)(a["mlp.hook_pre"])
        if layout.mlp is None:  # OPT, BERT: not gated
            assert torch.allclose(act, a["mlp.hook_post"], atol=1e-6)
            continue
        parts = mlp_parts(model, l)
        x = parts.norm(a["hook_resid_pre"] if layout.parallel else a["hook_resid_pre"] + a["hook_attn_out"])
        if hasattr(parts.mlp, "up_proj"):
            act = act * parts.mlp.up_proj(x)
        assert torch.allclose(act, a["mlp.hook_post"], atol=1e-5)
        mlp_out = parts.mlp(x)
        if name == "gemma2":
            mlp_out = block.post_feedforward_layernorm(mlp_out)
        assert torch.allclose(mlp_out, a["hook_mlp_out"], atol=1e-5)


def test_opt_mlp_sites_are_per_token():
    """OPT flattens tokens around its MLP; its sites are still ``(B, T, .)`` and replacing them works."""
    model = DECODERS["opt"]()
    ids = _ids(3, 5)
    acts = capture(model, ["blocks.0.mlp.hook_post", "blocks.0.hook_mlp_out"], input_ids=ids)
    assert acts["blocks.0.mlp.hook_post"].shape == (3, 5, 64) and acts["blocks.0.hook_mlp_out"].shape == (3, 5, 32)
    with patched(model, {"blocks.0.mlp.hook_post": torch.zeros_like}):
        zeroed = capture(model, "blocks.0.hook_mlp_out", input_ids=ids)["blocks.0.hook_mlp_out"]
    assert torch.allclose(zeroed, model.model.decoder.layers[0].fc2.bias.expand(3, 5, 32))


def test_residual_streams_are_the_captured_sites():
    model = llama()
    ids = torch.randint(0, 50, (3, 8))
    acts = capture(model, _block_sites(model, "hook_resid_pre") + ["blocks.1.hook_resid_post"], input_ids=ids)
    assert torch.equal(residual_streams(model, ids), torch.stack(list(acts.values())).float())


# ---- replacing and stopping -----------------------------------------------------------------------------------------

PATCH_SITES = ("hook_embed", "blocks.0.hook_resid_pre", "blocks.1.hook_attn_out", "blocks.0.mlp.hook_pre",
               "blocks.1.mlp.hook_post", "blocks.0.hook_mlp_out", "blocks.1.hook_resid_post",
               "ln_final.hook_normalized")


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_patching_a_site_with_its_own_value_changes_nothing_and_zeros_do(name):
    model = DECODERS[name]()
    ids = _ids()
    with torch.no_grad():
        clean = model(input_ids=ids).logits
        with patched(model, dict.fromkeys(PATCH_SITES, torch.clone)):
            assert torch.equal(model(input_ids=ids).logits, clean)
        for site in PATCH_SITES:
            with patched(model, {site: torch.zeros_like}):
                assert not torch.allclose(model(input_ids=ids).logits, clean, atol=1e-4), site


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_a_zeroed_mlp_output_matches_the_computation_by_hand(name):
    """With the last MLP's output zeroed the final stream is ``resid_pre + attn_out`` and the logits are the
    head on its final norm; a stream patched in front of block 1 comes out of block 1 as that block computes it;
    and a capture inside :func:`patched` reads the replaced values."""
    model = DECODERS[name]()
    ids = _ids()
    acts = capture(model, ["blocks.1.hook_resid_pre", "blocks.1.hook_attn_out"], input_ids=ids)
    with torch.no_grad(), patched(model, {"blocks.1.hook_mlp_out": torch.zeros_like}):
        logits = model(input_ids=ids).logits
        inside = capture(model, ["blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"], input_ids=ids)
        expected = acts["blocks.1.hook_resid_pre"] + acts["blocks.1.hook_attn_out"]
        assert torch.equal(inside["blocks.1.hook_mlp_out"], torch.zeros(2, 7, 32))
        assert torch.allclose(inside["blocks.1.hook_resid_post"], expected, atol=1e-6)
        assert torch.allclose(logits, _logits_of(model, expected), atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama", "gpt_neox", "opt", "bert"])
def test_stopping_after_a_site_returns_it_and_runs_nothing_later(name):
    model = ALL[name]()
    ids = _ids()
    full = capture(model, ["blocks.0.hook_resid_post", "blocks.0.hook_attn_out"], input_ids=ids)
    later = []
    handle = model.get_submodule(layout_of(model).blocks)[1].register_forward_pre_hook(lambda *_: later.append(1))
    try:
        out = run_until(model, "blocks.0.hook_resid_post", input_ids=ids)
        assert torch.allclose(out, full["blocks.0.hook_resid_post"], atol=1e-6) and not later
        assert torch.allclose(run_until(model, "blocks.0.hook_attn_out", input_ids=ids), full["blocks.0.hook_attn_out"])
    finally:
        handle.remove()
    stream = torch.randn(2, 7, 32, requires_grad=True)
    replaced = {"blocks.1.hook_resid_pre": lambda _h: stream}
    moved = run_until(model, "blocks.1.hook_resid_post", input_ids=ids, patches=replaced)
    (grad,) = torch.autograd.grad(moved.sum(), stream)  # differentiable through the block
    assert grad.abs().sum() > 0
    with torch.no_grad(), patched(model, replaced):
        assert torch.allclose(capture(model, "blocks.1.hook_resid_post", input_ids=ids)["blocks.1.hook_resid_post"],
                              moved, atol=1e-6)


# ---- errors ---------------------------------------------------------------------------------------------------------

def test_unknown_sites_and_unsupported_models_are_one_clear_error():
    model = llama()
    ids = torch.randint(0, 50, (1, 4))
    with pytest.raises(ParamLensError, match=r"unknown site 'blocks.0.resid'; sites are hook_embed, "
                                             r"blocks\.\{l\}\.hook_resid_pre.*\(l = 0\.\.1\)"):
        capture(model, "blocks.0.resid", input_ids=ids)
    with pytest.raises(ParamLensError, match="layer 2 does not exist; the model has 2 blocks"):
        capture(model, "blocks.2.hook_resid_pre", input_ids=ids)
    with pytest.raises(ParamLensError, match="no transformer blocks.*llama.*gpt2.*bert"):
        block_prefix(torch.nn.Linear(2, 2))
    with pytest.raises(ParamLensError, match="no transformer blocks"):
        capture(torch.nn.Linear(2, 2), "blocks.0.hook_resid_pre", torch.zeros(2))
    with pytest.raises(ParamLensError, match="read, not replaced"), \
            patched(model, {"blocks.0.attn.hook_pattern": torch.zeros_like}):
        pass
    with pytest.raises(ParamLensError, match=r"replacement for blocks.0.hook_resid_pre is \(1, 4, 31\)"), \
            patched(model, {"blocks.0.hook_resid_pre": lambda h: h[..., 1:]}):
        model(input_ids=ids)
    with pytest.raises(ParamLensError, match="BertModel has no known final norm"):
        capture(ALL["bert"](), "ln_final.hook_normalized", input_ids=ids)


def test_patterns_need_eager_attention():
    model = gpt2()  # sdpa, the default
    with pytest.raises(ParamLensError, match="sdpa attention implementation does not compute.*eager"):
        capture(model, "blocks.0.attn.hook_pattern", input_ids=torch.randint(0, 50, (1, 4)))


def test_sublayer_sites_of_blocks_of_no_known_layout():
    from tests.geometry.toy_lm import Tokenwise, ToyLM

    model = ToyLM([Tokenwise(torch.eye(4)), Tokenwise(torch.eye(4))], 4)
    ids = torch.randint(0, 40, (2, 3))
    streams = capture(model, ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"], ids)
    assert torch.allclose(streams["blocks.1.hook_resid_post"], 4 * streams["blocks.0.hook_resid_pre"])
    with pytest.raises(ParamLensError, match="Tokenwise blocks are not of a known layout"):
        capture(model, "blocks.0.mlp.hook_post", ids)


# ---- weights --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma", "gemma2", "phi", "gpt_neox", "opt"])
def test_the_final_norm_folds_into_the_unembedding(name):
    """RMSNorm: ``logits = (h / rms(h)) @ U_folded.T`` exactly (Gemma's gain 1 + weight included). LayerNorm:
    ``(h / std(h)) @ U_folded.T`` plus the constant logits of the norm's bias (and a head bias: Phi)."""
    model = DECODERS[name]()
    ids = _ids()
    h = capture(model, "blocks.1.hook_resid_post", input_ids=ids)["blocks.1.hook_resid_post"]
    folded = unembedding(model, fold_norm=True)
    norm = norm_of(_final_norm(model))
    if norm.centred:
        logits = h / torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + norm.eps) @ folded.T
        logits = logits + unembedding(model) @ norm.bias
        head_bias = model.get_output_embeddings().bias
        logits = logits if head_bias is None else logits + head_bias
    else:
        logits = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.eps) @ folded.T
    cap = getattr(model.config, "final_logit_softcapping", None)
    logits = torch.tanh(logits / cap) * cap if cap else logits
    assert torch.allclose(logits, model(input_ids=ids).logits, atol=1e-5)


def test_mlp_parts_of_families_without_one_mlp_module():
    with pytest.raises(ParamLensError, match="no single MLP module"):
        mlp_parts(DECODERS["opt"](), 0)
    with pytest.raises(ParamLensError, match="layer 2 does not exist; the model has 2 layers"):
        mlp_parts(llama(), 2)


# ---- the residual-stream reader -------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [gpt2, llama])
def test_streams_are_the_raw_residual_stream(build):
    """Before every block they equal Hugging Face's hidden states; after the last block they are the stream
    before the final norm, which Hugging Face does not return."""
    model = build()
    ids = torch.randint(0, 50, (3, 8))
    streams = residual_streams(model, ids)
    hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    assert streams.shape == (3, 3, 8, 32)
    for i in range(2):
        assert torch.allclose(streams[i], hidden[i], atol=1e-6)
    final_norm = model.transformer.ln_f if hasattr(model, "transformer") else model.model.norm
    assert torch.allclose(final_norm(streams[-1]), hidden[-1], atol=1e-5)


def test_streams_with_substituted_weights_and_in_batches():
    model = llama()
    target = select(model, f"{block_prefix(model)}.1.mlp.down_proj")[0]
    ids = torch.randint(0, 50, (4, 8))
    zeroed = residual_streams(model, ids, {target: torch.zeros(target.shape)})
    plain = residual_streams(model, ids)
    assert torch.equal(zeroed[:2], plain[:2]) and not torch.allclose(zeroed[2], plain[2])
    batches = list(stream_batches(model, ids, batch=3))
    assert [b[0].shape[0] for b in batches] == [3, 1]
    assert torch.allclose(torch.cat([h for _, h in batches], dim=1), plain, atol=1e-5)


@pytest.mark.parametrize("build", [gpt2, llama])
def test_embeddings_and_unembedding_of_each_architecture(build):
    model = build()
    assert token_embeddings(model).shape == unembedding(model).shape == (50, 32)
    ids = torch.randint(0, 50, (2, 5))
    streams = residual_streams(model, ids)
    final_norm = model.transformer.ln_f if hasattr(model, "transformer") else model.model.norm
    logits = final_norm(streams[-1]) @ unembedding(model).T
    assert torch.allclose(logits, model(input_ids=ids).logits, atol=1e-4)


def test_an_encoder_has_no_unembedding():
    from transformers import BertConfig, BertModel

    enc = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               vocab_size=30))
    assert token_embeddings(enc).shape == (30, 16)
    with pytest.raises(ParamLensError, match="no unembedding"):
        unembedding(enc)
