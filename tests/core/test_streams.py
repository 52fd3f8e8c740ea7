import pytest
import torch

from paramlens.core.weights import select
from paramlens.errors import ParamLensError
from paramlens.core.streams import block_prefix, residual_streams, stream_batches, token_embeddings, unembedding


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16,
                                      bos_token_id=0, eos_token_id=0)).eval()


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                        num_key_value_heads=2, vocab_size=50, bos_token_id=0, eos_token_id=0)).eval()


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


def test_unsupported_models_are_a_clear_error():
    with pytest.raises(ParamLensError, match="no transformer blocks"):
        block_prefix(torch.nn.Linear(2, 2))


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
