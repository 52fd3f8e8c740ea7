"""Token-to-token interactions read from a bilinear language model's weights, without running data.

For layer ``l``'s bilinear MLP and an output token ``o``, the interaction matrix ``Q_o`` (in the MLP's input
space) comes from the unembedding row of ``o`` (final norm gain folded in,
:func:`paramlens.core.streams.unembedding`) pushed back through the MLP's down projection. Tokens enter as their
embeddings passed through the norm in front of the MLP, each on its own;
``T_o[i, j] = x_i^T Q_o x_j`` is how much tokens ``i`` and ``j`` present together in the residual stream
raise the logit of ``o`` through this MLP (``T_o[t, t]``: token ``t`` alone). This reads the direct
embedding -> MLP -> unembedding path; attention and other layers are not in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from paramlens.bilinear.spectra import eigen, interaction_matrix
from paramlens.core.streams import mlp_parts, token_embeddings, unembedding
from paramlens.errors import ParamLensError
from paramlens.models.bilinear_nets.layers import Bilinear


@dataclass
class TokenInteractions:
    """Strongest interactions for one output token.

    Attributes:
        output_token: the token id whose logit is explained.
        pairs: ``[(i, j, T[i, j])]`` with ``i <= j``, the largest values first (pairs that raise the logit).
        against: the most negative pairs (pairs that lower it).
        eigenvalues: top eigenvalues of ``Q_o`` by ``|lambda|``.
        eigen_tokens: for each of those eigenvectors, the tokens with the largest ``|x_t . v|`` (signed ids:
            ``(token, projection)``).
    """

    output_token: int
    pairs: list[tuple[int, int, float]]
    against: list[tuple[int, int, float]]
    eigenvalues: list[float]
    eigen_tokens: list[list[tuple[int, float]]]


def mlp_inputs(model: nn.Module, layer: int) -> Tensor:
    """``(vocab, d_model)`` float64: every token embedding through the norm in front of ``layer``'s MLP."""
    return mlp_parts(model, layer).norm(token_embeddings(model).double())


def _top_pairs(X: Tensor, M: Tensor, ids: Tensor, k: int, largest: bool, chunk: int = 1024) -> list[tuple[int, int, float]]:
    """Top-``k`` entries of ``X M`` over ``i <= j`` (upper triangle), as ``(ids[i], ids[j], value)``."""
    n = len(X)
    best_v, best_i = torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.long)
    for start in range(0, n, chunk):
        block = X[start:start + chunk] @ M  # (rows, n)
        rows = torch.arange(start, min(start + chunk, n))
        block = block.masked_fill(torch.arange(n)[None, :] < rows[:, None], float("-inf") if largest else float("inf"))
        v, flat = block.flatten().topk(min(k, block.numel()), largest=largest)
        best_v = torch.cat([best_v, v])
        best_i = torch.cat([best_i, flat + start * n])
        keep = best_v.topk(min(k, len(best_v)), largest=largest).indices
        best_v, best_i = best_v[keep], best_i[keep]
    return [(int(ids[i // n]), int(ids[i % n]), float(v)) for v, i in zip(best_v, best_i)]


def token_interactions(model: nn.Module, layer: int, output_tokens: list[int], top: int = 10,
                       max_candidates: int = 8192, n_eigen: int = 3) -> list[TokenInteractions]:
    """Top token pairs for each output token through ``layer``'s bilinear MLP.

    With more than ``max_candidates`` tokens in the vocabulary, pairs are searched among the
    ``max_candidates`` tokens with the largest ``|Q_o x_t|`` (the ones that interact at all).
    """
    mlp = Bilinear.view_of(mlp_parts(model, layer).mlp)
    if not mlp.is_bilinear:
        raise ParamLensError(f"layer {layer}'s MLP is gated ({mlp.gate}); token interactions need a bilinear MLP "
                             "(bilinearise the model first)")
    X = mlp_inputs(model, layer)
    X = torch.cat([X, X.new_ones(len(X), 1)], dim=1)  # the constant input of the folded interaction matrix
    U = unembedding(model, fold_norm=True).double()
    results = []
    for o in output_tokens:
        if not 0 <= o < len(U):
            raise ParamLensError(f"token {o} is outside the vocabulary (size {len(U)})")
        Q = interaction_matrix(mlp, U[o])
        ids = torch.arange(len(X))
        if len(X) > max_candidates:
            ids = (X @ Q).norm(dim=-1).topk(max_candidates).indices.sort().values
        Xc = X[ids]
        M = Q @ Xc.T
        eig = eigen(Q).top(n_eigen)
        proj = X @ eig.vectors.T  # (vocab, n_eigen)
        eigen_tokens = []
        for col in proj.T:
            idx = col.abs().topk(min(top, len(col))).indices
            eigen_tokens.append([(int(t), float(col[t])) for t in idx])
        results.append(TokenInteractions(o, _top_pairs(Xc, M, ids, top, True), _top_pairs(Xc, M, ids, top, False),
                                         eig.values.tolist(), eigen_tokens))
    return results
