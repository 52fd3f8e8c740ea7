"""What ``paramlens information`` does on the built-in modular-addition MLP (other models through
:func:`paramlens.information.weights_info.weight_information`)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from paramlens.core.runs import new_run_dir
from paramlens.core.weights import select
from paramlens.information.weights_info import InformationConfig, WeightInformation, weight_information
from paramlens.models.toy.modular_addition import ModularConfig, all_pairs, check_builtin, split, train_modular
from paramlens.report import Section, write_report


def run_information(model: str, p: int, seed: int, shuffled: bool, cfg: InformationConfig,
                    out_dir: Path) -> tuple[WeightInformation, Path]:
    """Information in the weights of the modular-addition MLP on its training pairs (``shuffled``: trained and
    measured on permuted labels)."""
    check_builtin(model)
    mcfg = ModularConfig(p=p, seed=seed)
    x, y = all_pairs(p)
    idx, _ = split(mcfg)
    if shuffled:
        y = y.clone()
        y[idx] = y[idx][torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]
    net, _ = train_modular(mcfg, progress=False, labels=y)
    targets = select(net, ["embed", "hidden", "unembed"])
    result = weight_information(net, targets, lambda run, step: F.cross_entropy(run(x[idx]), y[idx]), cfg)
    folder = new_run_dir(out_dir, "information")
    result.save(folder)
    write_report(folder, "ParamLens information in weights", [], [Section(
        title=f"Information in the weights ({'shuffled' if shuffled else 'real'} labels)", text=result.summary(),
        figures=result.figures(folder))])
    return result, folder
