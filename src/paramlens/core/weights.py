"""Target weight matrices of any ``nn.Module`` and forward passes with some of them substituted.

Every method in ParamLens stands on two calls:

- :func:`select` picks weight matrices by glob patterns over module names and returns :class:`Target`
  objects. Each target sees its weight as a ``(d_out, d_in)`` matrix whatever the module stores:

  ==============================  ======================  ============================================
  module                          stored ``weight``       matrix ``(d_out, d_in)``
  ==============================  ======================  ============================================
  ``nn.Linear``                   ``(out, in)``           the weight itself
  ``nn.Embedding``                ``(vocab, dim)``        ``weight.T``: maps a one-hot token to a row
  GPT-2 ``Conv1D`` (transformers) ``(in, out)``           ``weight.T``
  ``nn.Bilinear``                 ``(out, in1, in2)``     ``(out, in1 * in2)``: acts on ``x1 (x) x2``
  ``nn.Conv1d/2d/3d``             ``(out, in/g, *k)``     ``(out, in/g * prod(k))``: acts on one patch
  ==============================  ======================  ============================================

- :func:`run_with` runs the model with any subset of targets replaced by other ``(d_out, d_in)`` tensors
  (a sum of components, a masked or perturbed copy), or by a batch of per-example matrices
  ``(batch, d_out, d_in)``, through :func:`torch.func.functional_call`. The module is never edited or
  copied, and gradients flow into the replacement tensors.

Weights tied between modules (an embedding shared with an unembedding) stay tied: replacing one replaces
both uses, as in :func:`torch.func.functional_call`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from paramlens.errors import ParamLensError

SUPPORTED = "nn.Linear, nn.Embedding, GPT-2 Conv1D, nn.Bilinear, nn.Conv1d/2d/3d"


def _kind(module: nn.Module) -> str | None:
    """The storage convention of ``module``'s weight, or None for a module ParamLens cannot target."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.Bilinear):
        return "bilinear"
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "conv"
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and isinstance(weight, Tensor):
        return "conv1d"
    return None


@dataclass(frozen=True)
class Target:
    """One weight matrix of a model, seen as ``(d_out, d_in)``.

    Attributes:
        name: module path in the model, e.g. ``"blocks.0.mlp.W_in"``.
        kind: storage convention: ``"linear"``, ``"embedding"``, ``"conv1d"`` (GPT-2), ``"bilinear"`` or ``"conv"``
            (a convolution, seen as the matrix that maps one flattened input patch to the output channels).
        stored_shape: shape of the module's own ``weight`` parameter.
    """

    name: str
    kind: str
    stored_shape: tuple[int, ...]

    @property
    def param_name(self) -> str:
        """Full parameter name for ``state_dict`` and ``functional_call``."""
        return f"{self.name}.weight" if self.name else "weight"

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)`` of the matrix view."""
        s = self.stored_shape
        if self.kind == "linear":
            return (s[0], s[1])
        if self.kind in ("embedding", "conv1d"):
            return (s[1], s[0])
        return (s[0], math.prod(s[1:]))

    def to_matrix(self, stored: Tensor) -> Tensor:
        """Stored weight ``(..., *stored_shape)`` -> matrix ``(..., d_out, d_in)`` (a view where possible)."""
        if self.kind == "linear":
            return stored
        if self.kind in ("embedding", "conv1d"):
            return stored.transpose(-1, -2)
        return stored.flatten(-(len(self.stored_shape) - 1))

    def to_stored(self, matrix: Tensor) -> Tensor:
        """Matrix ``(..., d_out, d_in)`` -> the module's storage layout ``(..., *stored_shape)``.

        The result is contiguous, as the module's own weight is, so a forward pass with it gives the same
        bits as a module that holds this matrix (matmul kernels round differently on transposed memory).
        """
        if self.kind == "linear":
            stored = matrix
        elif self.kind in ("embedding", "conv1d"):
            stored = matrix.transpose(-1, -2)
        else:
            stored = matrix.unflatten(-1, self.stored_shape[1:])
        return stored.contiguous()

    def matrix(self, model: nn.Module) -> Tensor:
        """The current ``(d_out, d_in)`` matrix of this target in ``model`` (shares memory with it)."""
        return self.to_matrix(model.get_submodule(self.name).weight)

    def read_in(self, x: Tensor, V: Tensor) -> Tensor:
        """Project the module's input onto the columns of ``V`` ``(d_in, k)``: ``x @ V``, shape ``(..., k)``.

        ``x`` is what the module receives: activations ``(..., d_in)``, or token ids ``(...)`` for an
        embedding (the rows of ``V`` are looked up, as ``one_hot(x) @ V`` would give).
        """
        if self.kind == "embedding":
            return V[x]
        if self.kind in ("bilinear", "conv"):
            raise ParamLensError(f"'{self.name}' is a {self.kind} layer: its input is not one vector per example; "
                                 "read_in needs a Linear, Embedding or GPT-2 Conv1D target")
        return x @ V


def select(model: nn.Module, patterns: str | Sequence[str]) -> list[Target]:
    """Targets of ``model`` whose module names match any of the glob ``patterns``, in module order.

    ``"*"`` matches across dots (``"blocks.*.mlp.*"``); ``"?"`` and ``[seq]`` work as in :mod:`fnmatch`.
    A pattern with no wildcard must name a supported module; a pattern with wildcards skips modules
    that hold no weight matrix (containers, norms, activations).

    Raises:
        ParamLensError: a pattern matches no supported module, or names an unsupported module.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise ParamLensError("no target patterns given; pass module names or globs such as 'layers.*.mlp.*'")
    modules = dict(model.named_modules())
    chosen: dict[str, Target] = {}
    for pattern in patterns:
        if not pattern.strip():
            raise ParamLensError("an empty target pattern; give module names or globs such as 'layers.*.mlp.*'")
        wildcard = any(ch in pattern for ch in "*?[")
        if not wildcard and pattern in modules and _kind(modules[pattern]) is None:
            kind = type(modules[pattern]).__name__
            inside = [n for n, m in modules[pattern].named_modules() if n and _kind(m) is not None]
            fix = f"select its sub-modules instead, e.g. '{pattern}.*'" if inside else "it has no sub-module that does"
            raise ParamLensError(
                f"module '{pattern}' is a {kind}, which holds no weight matrix ParamLens can target ({SUPPORTED}); "
                + fix
            )
        hits = [n for n, m in modules.items() if fnmatch.fnmatchcase(n, pattern) and _kind(m) is not None]
        if not hits:
            available = [n for n, m in modules.items() if _kind(m) is not None]
            shown = ", ".join(available[:12]) + (" ..." if len(available) > 12 else "")
            raise ParamLensError(
                f"target pattern '{pattern}' matches no weight layer of {type(model).__name__}; "
                f"layers that can be targeted: {shown or 'none'}"
            )
        for name in hits:
            module = modules[name]
            chosen[name] = Target(name, _kind(module), tuple(module.weight.shape))
    order = {n: i for i, n in enumerate(modules)}
    return sorted(chosen.values(), key=lambda t: order[t.name])


def matrices(model: nn.Module, targets: Iterable[Target]) -> dict[str, Tensor]:
    """``{target name: (d_out, d_in) matrix}`` of the model's current weights."""
    return {t.name: t.matrix(model) for t in targets}


def _resolve(model: nn.Module, replacements: Mapping[Target | str, Tensor], batched: bool) -> dict[str, Tensor]:
    """Replacement matrices -> ``{parameter name: stored-layout tensor}``, with shapes checked."""
    params: dict[str, Tensor] = {}
    for key, value in replacements.items():
        target = key if isinstance(key, Target) else select(model, key)[0]
        if isinstance(key, str) and target.name != key:
            raise ParamLensError(f"replacement key '{key}' must be a module name, not a pattern")
        expected = target.shape
        got = tuple(value.shape)
        ok = got[-2:] == expected and len(got) == (3 if batched else 2)
        if not ok:
            want = f"(batch, {expected[0]}, {expected[1]})" if batched else f"{expected}"
            raise ParamLensError(
                f"replacement for '{target.name}' has shape {got}; expected {want} as (d_out, d_in)"
                + ("" if batched else "; pass batched=True for per-example weights")
            )
        params[target.param_name] = target.to_stored(value)
    return params


def run_with(
    model: nn.Module,
    replacements: Mapping[Target | str, Tensor],
    *args: Any,
    batched: bool = False,
    **kwargs: Any,
) -> Any:
    """Run ``model(*args, **kwargs)`` with target weights replaced, without touching the module.

    Args:
        model: any module.
        replacements: ``{target or module name: matrix}``; each matrix is ``(d_out, d_in)``, or
            ``(batch, d_out, d_in)`` with ``batched=True``. Targets not named keep their weights.
        batched: per-example weights: example ``b`` of every tensor argument whose first dimension is
            ``batch`` runs with matrix ``b``. Uses :func:`torch.func.vmap`, so the forward must be free of
            in-place updates to its inputs and of data-dependent Python control flow.

    Returns:
        Whatever the model returns.
    """
    params = _resolve(model, replacements, batched)
    if not batched:
        return torch.func.functional_call(model, params, args, kwargs)
    sizes = {v.shape[0] for v in params.values()}
    if len(sizes) != 1:
        raise ParamLensError(f"batched replacements disagree on the batch size: {sorted(sizes)}")
    (size,) = sizes
    flat, spec = pytree.tree_flatten((args, kwargs))
    mapped = [isinstance(x, Tensor) and x.dim() > 0 and x.shape[0] == size for x in flat]
    if not any(mapped):
        raise ParamLensError(f"batched=True needs at least one input whose first dimension is {size}")

    def one_example(p: dict[str, Tensor], *leaves: Any) -> Any:
        leaves = [x.unsqueeze(0) if m else x for x, m in zip(leaves, mapped)]
        a, kw = pytree.tree_unflatten(leaves, spec)
        out = torch.func.functional_call(model, p, a, kw)
        return pytree.tree_map(lambda t: t.squeeze(0) if isinstance(t, Tensor) else t, out)

    in_dims = (0, *[0 if m else None for m in mapped])
    return torch.func.vmap(one_example, in_dims=in_dims)(params, *flat)


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Within the block no parameter of ``model`` records gradients (a method learns replacements, masks or
    noise for its weights through :func:`run_with`, not the weights); on exit each parameter's
    ``requires_grad`` is as before, also on error."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


LinearMap = Callable[[Tensor], Tensor]


def _slot_forward(maps: dict[str, LinearMap], name: str, module: nn.Module, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """A target module's forward under :class:`MapSlots`: ``maps[name](x) + bias`` while that slot is filled, the
    module's own forward otherwise."""
    fn = maps.get(name)
    if fn is None:
        return type(module).forward(module, x, *args, **kwargs)
    out = fn(x)
    bias = getattr(module, "bias", None)
    return out if bias is None else out + bias


class MapSlots:
    """Slots through which the targets' maps are replaced: while :meth:`installed`, each target module computes
    ``maps[target](input) + bias`` for the maps put in by :meth:`filled`, ``input @ matrix.T + bias`` otherwise.

    For what a weight tensor cannot express cheaply: a different mix of rank-one components for every example or
    token (masked subcomponents), where a per-example ``(d_out, d_in)`` copy would cost ``batch x d_out x d_in``
    memory. A map receives the module's input (activations, or token ids for an embedding) and returns ``(..., d_out)``
    without bias. Nothing is copied; the modules are restored when the block ends, also on error.

    Filling slots only writes a dict, so it can happen inside a ``torch.compile``'d function; installing them (outside
    it) puts back the same forward objects every time, so a compiled graph stays valid from one call to the next.
    """

    def __init__(self, model: nn.Module, targets: Sequence[Target]):
        self.model = model
        self.maps: dict[str, LinearMap] = {}
        self.forwards: dict[str, tuple[nn.Module, Callable[..., Tensor]]] = {}
        for target in targets:
            module = model.get_submodule(target.name)
            if target.kind in ("bilinear", "conv"):
                raise ParamLensError(f"'{target.name}': replacing the map of a {target.kind} layer is not supported")
            self.forwards[target.name] = module, partial(_slot_forward, self.maps, target.name, module)

    @contextmanager
    def installed(self) -> Iterator[MapSlots]:
        patched = []
        try:
            for name, (module, forward) in self.forwards.items():
                if "forward" in vars(module):
                    raise ParamLensError(f"'{name}' already has its forward replaced (nested maps_replaced?)")
                module.forward = forward
                patched.append(module)
            yield self
        finally:
            for module in patched:
                del module.forward

    @contextmanager
    def filled(self, maps: Mapping[Target, LinearMap]) -> Iterator[None]:
        self.maps.update({t.name: fn for t, fn in maps.items()})
        try:
            yield
        finally:
            self.maps.clear()


@contextmanager
def maps_replaced(model: nn.Module, maps: Mapping[Target, LinearMap]) -> Iterator[None]:
    """Within the block, each target module computes ``maps[target](input) + bias`` instead of ``input @ matrix.T +
    bias`` (see :class:`MapSlots`)."""
    with MapSlots(model, list(maps)).installed() as slots, slots.filled(maps):
        yield
