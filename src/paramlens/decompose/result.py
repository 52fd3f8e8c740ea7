"""The result of a decomposition: components, importance function, metrics, and their figures."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from paramlens.core.runs import Result
from paramlens.core.weights import Target
from paramlens.report import plots

SUMMARY_KEYS = ("mmcs", "ml2r", "recon/ci", "recon/stochastic", "recon/unmasked", "recon/zero", "ce_unrecovered_pct",
                "kl_unrecovered_pct")


@dataclasses.dataclass
class Decomposition(Result):
    """Components of every target and how well they explain the model.

    Attributes:
        method: ``"spd"`` or ``"apd"``.
        config: the method's settings (as saved in ``config.json``).
        targets: ``[{"name", "kind", "stored_shape"}]``, in model order.
        params: the decomposition's parameters (for SPD: ``components.<target>.V`` ``(d_in, C)``,
            ``.U`` ``(C, d_out)``, and the gate MLPs: the importance function).
        metrics: final scores on the evaluation batch (see :mod:`paramlens.decompose.evaluate`).
        chance: the same scores for the decomposition at its random initialisation.
        history: losses (and periodic scores) during training.
        probes: tensors for figures: one-hot importances ``ci_one_hot/<target>`` ``(n_features, C)`` and
            component-vs-mechanism cosines ``cos/<target>`` ``(n_mechanisms, C)``.
    """

    kind = "decomposition"
    method: str
    config: dict[str, Any]
    targets: list[dict[str, Any]]
    params: dict[str, Tensor]
    metrics: dict[str, float]
    chance: dict[str, float]
    history: list[dict[str, float]]
    probes: dict[str, Tensor] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_fit(cls, method: str, cfg: BaseModel, targets: list[Target], dec: nn.Module, history: list[dict[str, float]],
                 final: Any, chance: Any) -> Decomposition:
        return cls(
            method=method,
            config=cfg.model_dump(),
            targets=[{"name": t.name, "kind": t.kind, "stored_shape": list(t.stored_shape)} for t in targets],
            params={k: v.detach().clone() for k, v in dec.state_dict().items()},
            metrics=final.scalars,
            chance=chance.scalars,
            history=history,
            probes=final.tensors,
        )

    def target_list(self) -> list[Target]:
        return [Target(t["name"], t["kind"], tuple(t["stored_shape"])) for t in self.targets]

    def module(self) -> nn.Module:
        """Rebuild the method's module (components and importance function) with the fitted parameters."""
        from paramlens.decompose import METHODS

        method = METHODS[self.method]
        return rebuilt(method, self.target_list(), method.config.model_validate(self.config), self.params)

    def summary(self) -> str:
        lines = [f"{self.method.upper()} decomposition of {len(self.targets)} target(s), C={self.config['C']}"]
        keys = [k for k in self.metrics if k in SUMMARY_KEYS or k.startswith(("ci_l0/", "alive/", "ci_error/",
                                                                               "directions_recovered/"))]
        width = max((len(k) for k in keys), default=0)
        lines.append(f"  {'metric':<{width}}  {'fitted':>10}  {'random init':>11}")
        for k in keys:
            lines.append(f"  {k:<{width}}  {self.metrics[k]:>10.4g}  {self.chance.get(k, float('nan')):>11.4g}")
        return "\n".join(lines)

    def table(self) -> list[dict[str, Any]]:
        """Rows ``{metric, fitted, random init}`` for reports."""
        return [{"metric": k, "fitted": v, "random init": self.chance.get(k, float("nan"))}
                for k, v in self.metrics.items()]

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        folder = Path(folder)
        figs = []
        curves = {k: [(h["step"], h[k]) for h in self.history if k in h]
                  for k in ("faithfulness", "stochastic_recon", "layerwise_recon", "importance_minimality",
                            "topk_recon", "schatten", "total")}
        curves = {k: v for k, v in curves.items() if v and any(y > 0 for _, y in v)}
        figs.append((plots.curves(folder / f"{prefix}losses.png", curves, f"{self.method.upper()} losses", "loss"),
                     "training losses"))
        for key, tensor in self.probes.items():
            kind, target = key.split("/", 1)
            safe = target.replace(".", "_")
            if kind == "ci_one_hot":
                order = _order_columns(tensor)
                figs.append((plots.heatmap(folder / f"{prefix}ci_{safe}.png", tensor[:, order], f"{target}: importance",
                                           "subcomponent (sorted)", "feature alone on", value_range=(0.0, 1.0)),
                             f"causal importance of each subcomponent of {target} with one feature active"))
            elif kind == "cos":
                ci = self.probes.get(f"ci_one_hot/{target}")
                used = ci.max(dim=0).values > 0.1 if ci is not None else torch.ones(tensor.shape[1], dtype=torch.bool)
                shown = tensor[:, used]
                shown = shown[:, _order_columns(shown)]
                figs.append((plots.heatmap(folder / f"{prefix}cos_{safe}.png", shown,
                                           f"{target}: cosine to true features", "subcomponent in use (sorted)",
                                           "feature"),
                             (f"cosine between each true feature's mechanism and each subcomponent of {target} that "
                             f"some feature turns on ({int(used.sum())} of {tensor.shape[1]})")))
        return figs


def rebuilt(method: Any, targets: list[Target], cfg: BaseModel, state: dict[str, Tensor]) -> nn.Module:
    """``method``'s module for ``targets`` holding ``state`` (full tensors), built without compiling (analyses and
    evaluations call it a few times) and without touching the global RNG."""
    if "compile" in type(cfg).model_fields:
        cfg = cfg.model_copy(update={"compile": False})
    with torch.random.fork_rng(devices=[]):
        dec = method.build_empty(targets, cfg)
    dec.load_state_dict(state)
    return dec


def _order_columns(m: Tensor) -> Tensor:
    """Columns sorted by the row of their largest entry, then dead columns last: a diagonal where one exists."""
    strength = m.abs().max(dim=0)
    key = strength.indices.float() + (strength.values < 0.1).float() * m.shape[0]
    return key.argsort()
