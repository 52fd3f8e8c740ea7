"""Toy models with known mechanisms: TMS, residual MLP (compressed computation), cross-layer MLP.

:data:`ZOO` maps each ``kind`` to its config class, model class and trainer; :func:`load_toy` rebuilds a
saved model from its run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

from pydantic import BaseModel
from torch import nn

from paramlens.errors import ParamLensError
from paramlens.models.toy.cross_layer import CrossLayerConfig, CrossLayerMLP, train_cross_layer
from paramlens.models.toy.residual_mlp import ResidualMLP, ResidualMLPConfig, train_residual_mlp
from paramlens.models.toy.tms import TMS, TMSConfig, train_tms
from paramlens.models.train import read_saved, save_model, validated


class ZooEntry(NamedTuple):
    config: type[BaseModel]
    model: type[nn.Module]
    train: Callable[..., tuple[Any, list[dict[str, float]]]]


ZOO: dict[str, ZooEntry] = {
    "tms": ZooEntry(TMSConfig, TMS, train_tms),
    "residual_mlp": ZooEntry(ResidualMLPConfig, ResidualMLP, train_residual_mlp),
    "cross_layer": ZooEntry(CrossLayerConfig, CrossLayerMLP, train_cross_layer),
}


def load_toy(folder: str | Path) -> nn.Module:
    """Rebuild a toy model saved with :func:`~paramlens.models.train.save_model`."""

    def build(raw: dict) -> nn.Module:
        kind = raw.get("kind")
        if kind not in ZOO:
            raise ParamLensError(f"{folder}: config kind '{kind}' is not a toy model ({', '.join(ZOO)})")
        return ZOO[kind].model(validated(ZOO[kind].config, raw, Path(folder)))

    return read_saved(folder, build)[1]


__all__ = ["ZOO", "TMS", "TMSConfig", "ResidualMLP", "ResidualMLPConfig", "CrossLayerMLP",
           "CrossLayerConfig", "load_toy", "save_model"]
