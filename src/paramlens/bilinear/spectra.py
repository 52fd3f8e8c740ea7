"""Interaction matrices, their eigendecomposition, and output features of bilinear layers.

A bilinear layer ``y = P [(W x + b_w) * (V x + b_v)]`` is a third-order tensor: with the biases folded in
as a constant input ``x' = [x, 1]``, ``y_o = x'^T B_o x'`` where ``B_o = sym(W'^T diag(P[o]) V')``. For an
output direction ``u`` (a class logit, an unembedding row, a probe) the output ``u . y`` is the quadratic
form of the interaction matrix ``Q_u = sum_o u_o B_o = sym(W'^T diag(P^T u) V')``, computed here without
ever building ``B`` (``d_out x d_in^2`` numbers). Its eigenvectors are the input directions the output
squares: ``u . y = sum_k lambda_k (v_k . x')^2`` exactly.

Spectra are computed in float64. Eigenvalues are sorted by ``|lambda|``, largest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from paramlens.errors import ParamLensError
from paramlens.models.bilinear_nets.layers import Bilinear


def _sym(m: Tensor) -> Tensor:
    return 0.5 * (m + m.transpose(-1, -2))


def folded_weights(layer: Bilinear) -> tuple[Tensor, Tensor, Tensor]:
    """``(W', V', P)`` in float64: ``W'``, ``V'`` are ``(d_hidden, d_in + 1)`` with the bias as last column
    (zero without bias), ``P`` is ``(d_out, d_hidden)``."""
    if not layer.is_bilinear:
        raise ParamLensError(f"this layer is gated ({layer.gate}); interaction matrices need a bilinear layer "
                             "(gate=None); bilinearise it first (paramlens.bilinear.bilinearise)")

    def fold(lin: torch.nn.Linear) -> Tensor:
        w = lin.weight.detach().double()
        b = lin.bias.detach().double() if lin.bias is not None else w.new_zeros(len(w))
        return torch.cat([w, b[:, None]], dim=1)

    return fold(layer.w), fold(layer.v), layer.p.weight.detach().double()


def interaction_matrix(layer: Bilinear, u: Tensor) -> Tensor:
    """``Q_u`` ``(d_in + 1, d_in + 1)`` float64 for output direction ``u`` ``(d_out,)``; the last row and
    column belong to the constant input 1 (all zero for a layer without biases)."""
    W, V, P = folded_weights(layer)
    if u.shape != (P.shape[0],):
        raise ParamLensError(f"output direction has shape {tuple(u.shape)}; this layer writes {P.shape[0]} outputs")
    return _interaction(W, V, P, _output_bias(layer), u.double())


def _output_bias(layer: Bilinear) -> Tensor | None:
    return layer.p.bias.detach().double() if layer.p.bias is not None else None


def _interaction(W: Tensor, V: Tensor, P: Tensor, bias: Tensor | None, u: Tensor) -> Tensor:
    """``sym(W^T diag(P^T u) V)``, plus ``u . bias`` on the constant input's diagonal entry."""
    q = _sym(W.T @ ((P.T @ u)[:, None] * V))
    if bias is not None:
        q[-1, -1] += bias @ u
    return q


def bilinear_tensor(layer: Bilinear) -> Tensor:
    """The full symmetrised tensor ``B`` ``(d_out, d_in + 1, d_in + 1)`` float64. Memory ``d_out d_in^2``:
    for small layers and as a reference; the analyses here never need it."""
    W, V, P = folded_weights(layer)
    B = _sym(torch.einsum("oh,hi,hj->oij", P, W, V))
    if layer.p.bias is not None:
        B[:, -1, -1] += layer.p.bias.detach().double()
    return B


@dataclass
class Eigen:
    """Eigendecomposition of a symmetric matrix: ``values`` ``(n,)`` sorted by ``|lambda|`` descending,
    ``vectors`` ``(n, d)`` with eigenvector ``k`` in row ``k`` (unit norm)."""

    values: Tensor
    vectors: Tensor

    def __len__(self) -> int:
        return len(self.values)

    def top(self, k: int) -> Eigen:
        return Eigen(self.values[:k], self.vectors[:k])

    def evaluate(self, z: Tensor) -> Tensor:
        """``sum_k lambda_k (v_k . z)^2`` for inputs ``z`` ``(n, d)`` -> ``(n,)``."""
        return ((z.double() @ self.vectors.T) ** 2) @ self.values

    def mapped(self, input_map: Tensor | None) -> Tensor:
        """Eigenvectors in the model's input space ``(n, d_input)``: ``v @ input_map`` for a linear
        embedding ``input_map`` ``(d, d_input)`` (unnormalised, so ``v . (E x) = (v E) . x``)."""
        return self.vectors if input_map is None else self.vectors @ input_map.double()


def eigen(q: Tensor) -> Eigen:
    """Eigendecomposition of symmetric ``q`` ``(d, d)`` in float64, sorted by ``|lambda|``."""
    values, vectors = torch.linalg.eigh(q.double())
    order = values.abs().argsort(descending=True)
    return Eigen(values[order], vectors[:, order].T.contiguous())


def effective_rank(values: Tensor) -> float:
    """``(sum |lambda|)^2 / sum lambda^2``: 1 for one eigenvalue, ``n`` for ``n`` equal ones."""
    values = values.double()
    return float(values.abs().sum() ** 2 / values.pow(2).sum().clamp_min(1e-300))


@dataclass
class QuadraticForm:
    """``u . y`` as a function of the layer input ``z`` ``(n, d)``:
    ``z^T quadratic z + linear . z + constant`` (float64), from the folded interaction matrix."""

    quadratic: Tensor
    linear: Tensor
    constant: float

    @classmethod
    def from_folded(cls, q: Tensor) -> QuadraticForm:
        return cls(q[:-1, :-1], 2 * q[:-1, -1], float(q[-1, -1]))

    def terms(self, z: Tensor) -> Tensor:
        """``(n, 3)``: the quadratic, linear and constant parts of the output for each input."""
        z = z.double()
        quad = ((z @ self.quadratic) * z).sum(-1)
        return torch.stack([quad, z @ self.linear, torch.full_like(quad, self.constant)], dim=-1)

    def __call__(self, z: Tensor) -> Tensor:
        return self.terms(z).sum(-1)

    def eigen(self) -> Eigen:
        """Spectrum of the quadratic part."""
        return eigen(self.quadratic)


def quadratic_form(layer: Bilinear, u: Tensor) -> QuadraticForm:
    """The quadratic / linear / constant split of ``u . y`` for output direction ``u`` ``(d_out,)``."""
    return QuadraticForm.from_folded(interaction_matrix(layer, u))


@dataclass
class OutputFeatures:
    """The top singular directions of ``B`` flattened to ``(d_out, (d_in + 1)^2)``.

    ``directions`` ``(k, d_out)``: output features (left singular vectors); ``singular_values`` ``(k,)``;
    ``spectra[k]``: eigendecomposition of feature ``k``'s interaction matrix (``Q_{u_k}``, Frobenius norm
    ``singular_values[k]``), over the folded input ``[x, 1]``.
    """

    directions: Tensor
    singular_values: Tensor
    spectra: list[Eigen]


def output_features(layer: Bilinear, k: int, readout: Tensor | None = None) -> OutputFeatures:
    """Top-``k`` output features of ``layer``, from the Gram matrix ``P K P^T`` (``d_out x d_out``) with
    ``K = 1/2 [(W W^T) o (V V^T) + (W V^T) o (W V^T)^T]``; ``B`` is never built.

    Args:
        readout: ``(d_out, d_hidden)`` matrix reading the hidden products, default the layer's ``P``;
            pass ``torch.eye(d_hidden)`` for the features of the hidden products themselves.
    """
    W, V, P = folded_weights(layer)
    bias = _output_bias(layer)
    if readout is not None:
        if readout.shape[-1] != W.shape[0]:
            raise ParamLensError(f"readout has {readout.shape[-1]} columns; the layer has {W.shape[0]} hidden units")
        P, bias = readout.double(), None
    WV = W @ V.T
    K = 0.5 * ((W @ W.T) * (V @ V.T) + WV * WV.T)
    gram = P @ K @ P.T
    if bias is not None:  # B_o[-1, -1] also holds bias_o: add its inner products
        corner = P @ (W[:, -1] * V[:, -1])
        gram = gram + torch.outer(bias, corner) + torch.outer(corner, bias) + torch.outer(bias, bias)
    gram_values, gram_vectors = torch.linalg.eigh(gram)
    order = gram_values.argsort(descending=True)[:k]
    directions = gram_vectors[:, order].T.contiguous()  # (k, d_out)
    spectra = [eigen(_interaction(W, V, P, bias, u)) for u in directions]
    return OutputFeatures(directions, gram_values[order].clamp_min(0).sqrt(), spectra)
