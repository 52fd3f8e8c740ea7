"""core.lens: TransformerLens HookedTransformer state dicts run as Hugging Face models with TransformerLens's logits.

The fixtures in tests/data/lens/ are tiny random HookedTransformers with non-zero biases and norm gains, saved as
TransformerLens saves them, with TransformerLens's logits for a few token sequences (tests/data/make_lens_fixtures.py).
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paramlens import ParamLensError
from paramlens.core.lens import LENS_KEYS, is_lens_state_dict, lens_to_hf
from paramlens.core.weights import matrices, run_with, select

DATA = Path(__file__).parent.parent / "data" / "lens"
ARCH = {"gpt2_ln": "GPT2", "attn_only": "GPT2", "grokking": "GPT2", "ln_pre": "GPT2", "llama_gqa": "Llama",
        "neox_parallel": "GPTNeoX", "rms_pre_pairs": "Llama", "gptj_pairs": "GPTNeoX"}
BLOCKS = {"GPT2": "transformer.h", "Llama": "model.layers", "GPTNeoX": "gpt_neox.layers"}


def fixture(name):
    """(TransformerLens state dict as saved, its config dict, {"tokens", "logits"} from TransformerLens)."""
    state = torch.load(DATA / f"{name}.pt", weights_only=True)
    config = json.loads((DATA / f"{name}.config.json").read_text())
    return state, config, load_file(DATA / f"{name}.expected.safetensors")


def one_line_error(match, state, config, source="m.pt"):
    with pytest.raises(ParamLensError, match=match) as info:
        lens_to_hf(state, config, source)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{source}: ")
    return str(info.value)


@pytest.mark.parametrize("name", sorted(ARCH))
def test_logits_match_transformer_lens(name):
    state, config, expected = fixture(name)
    assert torch.isinf(state["blocks.0.attn.IGNORE"])  # the saved buffers are dropped, not read
    model = lens_to_hf(state, config, f"{name}.pt")
    assert type(model).__name__ == f"{ARCH[name]}ForCausalLM".replace("GPT2ForCausalLM", "GPT2LMHeadModel")
    assert not model.training
    with torch.no_grad():
        logits = model(input_ids=expected["tokens"]).logits
    assert logits.dtype == torch.float32 and logits.shape == expected["logits"].shape
    assert (logits - expected["logits"]).abs().max() <= 1e-4
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    blocks = model.get_submodule(BLOCKS[ARCH[name]])
    assert len(blocks) == config["n_layers"]
    assert torch.equal(model.get_input_embeddings().weight, state["embed.W_E"])
    assert torch.equal(model.get_output_embeddings().weight, state["unembed.W_U"].T)


def test_targets_have_transformer_lens_shapes_and_run_through_run_with():
    state, config, expected = fixture("llama_gqa")
    model = lens_to_hf(state, config, "m.pt")
    targets = select(model, ["model.layers.*.self_attn.k_proj", "model.layers.*.mlp.up_proj"])
    mats = matrices(model, targets)
    w_k = state["blocks.1.attn._W_K"]  # (n_kv_heads, d_model, d_head)
    assert torch.equal(mats["model.layers.1.self_attn.k_proj"], w_k.transpose(1, 2).reshape(-1, 32))
    assert torch.equal(mats["model.layers.0.mlp.up_proj"], state["blocks.0.mlp.W_in"].T)
    with torch.no_grad():
        same = run_with(model, mats, input_ids=expected["tokens"]).logits
        zeroed = run_with(model, {"model.layers.0.mlp.up_proj": torch.zeros(48, 32)}, input_ids=expected["tokens"])
    assert torch.allclose(same, expected["logits"], atol=1e-4)
    assert not torch.allclose(zeroed.logits, expected["logits"], atol=1e-2)

    gpt2 = lens_to_hf(*fixture("ln_pre")[:2], "m.pt")  # d_head * n_heads (16) != d_model (24)
    c_attn, c_fc = select(gpt2, ["transformer.h.0.attn.c_attn", "transformer.h.0.mlp.c_fc"])
    assert c_attn.shape == (3 * 16, 24) and c_fc.shape == (48, 24)


def test_grokking_model_has_its_own_output_vocabulary():
    state, config, _ = fixture("grokking")
    model = lens_to_hf(state, config, "m.pt")
    assert model.get_input_embeddings().weight.shape == (24, 32)
    assert model.get_output_embeddings().weight.shape == (23, 32)
    assert model.get_output_embeddings().bias is not None
    assert isinstance(model.transformer.h[0].ln_1, torch.nn.Identity)


def test_missing_config_names_the_fields_and_the_fix():
    state, config, _ = fixture("grokking")
    text = one_line_error(r"positional_embedding_type, act_fn, normalization_type, eps, and no config was given",
                          state, None)
    assert "json.dumps(model.cfg.to_dict(), default=str)" in text and "config.json" in text
    one_line_error(r"do not tell act_fn, and its config lacks them", state,
                   {k: v for k, v in config.items() if k != "act_fn"})
    state, config, _ = fixture("gpt2_ln")  # norm weights give the normalisation, not eps
    one_line_error(r"do not tell positional_embedding_type, act_fn, eps, and no", state, None)
    one_line_error(r"do not tell positional_embedding_type, and its", state,
                   {"act_fn": "gelu_new", "eps": 1e-5})


def test_keys_absent_from_an_older_config_take_transformer_lens_defaults():
    state, config, expected = fixture("gpt2_ln")
    needed = {k: config[k] for k in ("positional_embedding_type", "act_fn", "eps")}
    with torch.no_grad():
        logits = lens_to_hf(state, needed, "m.pt")(input_ids=expected["tokens"]).logits
    assert (logits - expected["logits"]).abs().max() <= 1e-4
    state, config, expected = fixture("ln_pre")
    config = {**config, "final_rms": "True", "clip_qkv": "None"}  # spelled as strings
    with torch.no_grad():
        logits = lens_to_hf(state, config, "m.pt")(input_ids=expected["tokens"]).logits
    assert (logits - expected["logits"]).abs().max() <= 1e-4


@pytest.mark.parametrize("name, change, match", [
    ("attn_only", {"positional_embedding_type": "shortformer"}, "positional_embedding_type='shortformer'"),
    ("gpt2_ln", {"positional_embedding_type": "alibi"}, "positional_embedding_type='alibi'"),
    ("gpt2_ln", {"attention_dir": "bidirectional"}, "attention_dir='bidirectional'"),
    ("gpt2_ln", {"use_local_attn": True}, "use_local_attn=True"),
    ("gpt2_ln", {"attn_scores_soft_cap": 50.0}, "attn_scores_soft_cap=50.0"),
    ("gpt2_ln", {"output_logits_soft_cap": 30.0}, "output_logits_soft_cap=30.0"),
    ("gpt2_ln", {"act_fn": "solu_ln"}, r"act_fn='solu_ln' is not supported \(supported: relu"),
    ("gpt2_ln", {"parallel_attn_mlp": True}, "parallel_attn_mlp=True is not supported .*learned positions"),
    ("llama_gqa", {"use_NTK_by_parts_rope": True}, "use_NTK_by_parts_rope=True"),
    ("llama_gqa", {"rotary_dim": 4}, "rotary_dim=4 is not supported .*d_head=8"),
    ("llama_gqa", {"parallel_attn_mlp": True}, "parallel_attn_mlp=True is not supported .*gated MLP or grouped-query"),
    ("llama_gqa", {"original_architecture": "Olmo2ForCausalLM"}, "original_architecture='Olmo2ForCausalLM'"),
])
def test_unsupported_options_are_refused_in_one_line(name, change, match):
    state, config, _ = fixture(name)
    one_line_error(rf"TransformerLens option {match}", state, {**config, **change})


def test_config_and_weights_that_disagree_are_refused():
    state, config, _ = fixture("grokking")
    one_line_error(r"config says d_model=64 but the weights have 32", state, {**config, "d_model": 64})
    one_line_error(r"config says normalization_type='LN' but the weights have no norm weights", state,
                   {**config, "normalization_type": "LN"})
    one_line_error(r"tensor pos_embed.W_pos has no place in a supported HookedTransformer with this config", state,
                   {**config, "positional_embedding_type": "rotary"})
    extra = {**state, "blocks.0.attn.q_norm.w": torch.ones(8)}
    one_line_error(r"tensor blocks.0.attn.q_norm.w has no place in a supported HookedTransformer", extra, config)
    missing = {k: v for k, v in state.items() if k != "unembed.b_U"}
    one_line_error(r"missing tensor unembed.b_U \(23,\)", missing, config)
    wrong = {**state, "blocks.0.mlp.b_in": torch.zeros(5)}
    one_line_error(r"blocks.0.mlp.b_in has shape \(5,\), expected \(64,\)", wrong, config)
    one_line_error(r"not a HookedTransformer state dict: embed.W_E", {"blocks.0.attn.W_Q": torch.ones(1, 2, 2)}, config)


def test_recognises_transformer_lens_names_only():
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    for name in ARCH:
        assert is_lens_state_dict(fixture(name)[0])
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=11, n_positions=16))
    llama = LlamaForCausalLM(LlamaConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=11))
    assert not is_lens_state_dict(gpt2.state_dict()) and not is_lens_state_dict(llama.state_dict())
    assert not is_lens_state_dict(["embed.W_E", "blocks.0.mlp.W_in"])
    assert {"positional_embedding_type", "act_fn", "normalization_type", "eps"} <= set(LENS_KEYS)
