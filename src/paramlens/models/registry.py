"""Registers the zoo with :func:`paramlens.core.resolve.resolve`: built-in names trained on the spot, and the kinds
of run folder that hold a saved model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from paramlens.core.resolve import Builtin, register_builtin, register_folder_kind
from paramlens.models.bilinear_nets.classifier import load_classifier
from paramlens.models.toy import ZOO, load_toy
from paramlens.models.toy.modular_addition import ModularConfig, train_modular
from paramlens.models.transformers.induction import InductionConfig, load_induction, train_induction


def _modular(seed: int, progress: bool, **options: Any) -> nn.Module:
    return train_modular(ModularConfig(seed=seed, **options), progress=progress)[0]


def _induction(seed: int, progress: bool, **options: Any) -> nn.Module:
    return train_induction(InductionConfig(seed=seed, **options), progress=progress)[0]


def _toy(kind: str) -> Callable[..., nn.Module]:
    def build(seed: int, progress: bool, **options: Any) -> nn.Module:
        entry = ZOO[kind]
        return entry.train(entry.config(seed=seed, **options), progress=progress)[0]

    return build


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(k for k in cls.model_fields if k not in ("kind", "seed"))


register_builtin("modular-addition", Builtin("an MLP trained on (a + b) mod p", _modular, _fields(ModularConfig)))
for _kind, _entry in ZOO.items():
    register_builtin(_kind.replace("_", "-"), Builtin(f"the toy model {_kind} with its default settings", _toy(_kind),
                                                      _fields(_entry.config)))
    register_folder_kind(_kind, load_toy)
register_folder_kind("bilinear_classifier", load_classifier)
register_builtin("induction", Builtin("a two-layer attention-only transformer trained on repeated segments (a "
                                      "previous-token head and an induction head)", _induction,
                                      _fields(InductionConfig)))
register_folder_kind("induction", load_induction)
