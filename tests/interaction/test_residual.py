import torch

from paramlens.interaction.residual import residual_basis, run_block
from tests.geometry.toy_lm import PreviousToken, Tokenwise, ToyLM

D, T = 6, 16


def toy():
    g = torch.Generator().manual_seed(0)
    a = 0.4 * torch.randn(D, D, generator=g)
    b = 0.4 * torch.randn(D, D, generator=g)
    model = ToyLM([Tokenwise(a), PreviousToken(b)], D, vocab=40).eval()
    return model, a.detach(), b.detach(), torch.randint(0, 40, (64, T), generator=g)


def test_running_one_block_in_place_matches_the_block():
    model, a, _, tokens = toy()
    ids = tokens[:2]
    h = torch.randn(2, T, D)
    assert torch.allclose(run_block(model, 0, ids, h), h + h @ a, atol=1e-6)


def test_jacobian_second_moments_match_their_closed_forms():
    """Block 0 (tokenwise, h -> h (I + A)): M = P'^T (I + A) C' C'^T (I + A)^T P'. Block 1 (h_t -> h_t +
    h_(t-1) B): M = P'^T C' C'^T P' + (T - 1) / T * P'^T B C' C'^T B^T P' (P', C': the stream rows, the
    constant row dropped). In the LIB's own rotation both must be diag(importance), up to the sampling error of
    the random sources."""
    model, a, b, tokens = toy()
    bases = residual_basis(model, tokens, batch=16, sources=64)
    eye = torch.eye(D, dtype=torch.float64)
    maps = {0: [(eye + a.double(), 1.0)], 1: [(eye, 1.0), (b.double(), (T - 1) / T)]}
    for layer, terms in maps.items():
        basis, nxt = bases[layer], bases[layer + 1]
        p, c = basis.vectors[:D], nxt.coords[:D]
        m = sum(w * p.T @ j @ c @ c.T @ j.T @ p for j, w in terms)
        top = float(basis.importance[0])
        assert torch.allclose(m, torch.diag(basis.importance), atol=0.08 * top), (layer, m, basis.importance)


def test_a_llama_model_runs_block_by_block_with_its_positional_machinery():
    from paramlens.core.streams import residual_streams
    from tests.core.test_streams import llama

    model = llama()
    ids = torch.randint(0, 50, (2, 8))
    streams = residual_streams(model, ids)
    for layer in range(2):
        with torch.no_grad():
            assert torch.allclose(run_block(model, layer, ids, streams[layer]), streams[layer + 1], atol=1e-5)
    bases = residual_basis(model, torch.randint(0, 50, (32, 8)), sources=4)
    assert len(bases) == 3 and all(b.size > 0 for b in bases)
    assert torch.all(bases[0].importance[:-1] >= bases[0].importance[1:])


def test_edges_summed_over_token_pairs_match_their_closed_forms():
    """Unit coordinates y are white, so edge (j -> i) = sum over the token offsets the block reads of K_ji^2,
    with K = V'^T J C' per offset: (I + A) for the tokenwise block; I and, for all but the first token, B for
    the previous-token block."""
    from paramlens.interaction.residual import residual_edges

    model, a, b, tokens = toy()
    bases = residual_basis(model, tokens, batch=16, sources=16)
    edges = residual_edges(model, tokens, bases, batch=16, sources=32)
    eye = torch.eye(D, dtype=torch.float64)
    maps = {0: [(eye + a.double(), 1.0)], 1: [(eye, 1.0), (b.double(), (T - 1) / T)]}
    for layer, terms in maps.items():
        v, c = bases[layer].vectors[:D], bases[layer + 1].coords[:D]
        expected = sum(w * (v.T @ j @ c).T ** 2 for j, w in terms)
        assert torch.allclose(edges[layer], expected, atol=0.1 * float(expected.max())), layer


def test_edges_among_the_top_directions_are_the_top_block_of_all_edges():
    from paramlens.interaction.residual import residual_edges

    model, _, _, tokens = toy()
    tokens = tokens[:8]  # one batch: the random signs are drawn in the same order either way
    bases = residual_basis(model, tokens, batch=8, sources=8)
    full = residual_edges(model, tokens, bases, batch=8, sources=4)
    top = residual_edges(model, tokens, bases, batch=8, sources=4, top=3)
    for f, t in zip(full, top):
        assert t.shape == (3, 3) and torch.allclose(t, f[:3, :3])


def low_rank_toy(rank: int = 3):
    """The toy LM with token embeddings in a ``rank``-dimensional subspace: every stream spans at most
    ``rank + 1`` directions (with the constant), so keeping that many loses nothing."""
    model, _, _, tokens = toy()
    with torch.no_grad():
        model.embed.weight[:, rank:] = 0
    return model, tokens


def test_ablation_curves_recover_the_intact_loss_once_the_planted_rank_is_kept():
    from paramlens.interaction.residual import stream_ablation_curve

    model, tokens = low_rank_toy(3)
    for kind, centred in [("lib", False), ("pca", False), ("lib", True), ("pca", True)]:
        bases = residual_basis(model, tokens, batch=16, sources=8, kind=kind, centred=centred)
        rank = 3 if centred else 4  # rank 3, plus the constant unless centred (the mean is the offset)
        assert bases[1].size == rank, (kind, centred)
        full, losses = stream_ablation_curve(model, tokens, 1, bases[1], [1, 2, rank], batch=16)
        # untrained, so one direction may lower or raise the loss; rank + 1 directions leave it intact
        assert abs(losses[2] - full) < 1e-5 and abs(losses[0] - full) > 1e-3, (kind, full, losses)


def test_an_encoder_curve_is_the_fraction_of_the_final_stream_lost():
    from transformers import BertConfig, BertModel

    from paramlens.interaction.residual import stream_ablation_curve

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32)).eval()
    tokens = torch.randint(0, 50, (8, 16))
    bases = residual_basis(bert, tokens, kind="pca")
    full, losses = stream_ablation_curve(bert, tokens, 1, bases[1], [1, 17])
    assert full == 0.0 and losses[1] < 1e-8 and 0.05 < losses[0] <= 2.0
