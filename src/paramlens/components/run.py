"""A decompose run folder opened for reading: the decomposition, the model it decomposes and the data it read."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from paramlens.components.units import Units
from paramlens.core.loading import Loaded
from paramlens.core.resolve import resolve
from paramlens.core.text import TextOptions, lm_windows
from paramlens.core.weights import Target, select
from paramlens.decompose import METHODS, Decomposition
from paramlens.decompose.cli_run import saved_request
from paramlens.decompose.fit import Method

COMPONENTS = "components"
"""The sub-folder of a run folder where the harvest, the graph, the mechanisms and the browser go."""


@dataclass
class OpenRun:
    """Everything a reading of the run in ``folder`` needs.

    Attributes:
        result: the saved decomposition; method: its method; dec: its module (parameters loaded);
        loaded: the model as resolved from the run's record (same name, same seed); model: its runnable module,
        frozen; targets: the decomposed targets; units: the decomposition's units; text: the data options the run
        read (language models).
    """

    folder: Path
    result: Decomposition
    method: Method
    dec: nn.Module
    loaded: Loaded
    model: nn.Module
    targets: list[Target]
    units: Units
    text: TextOptions

    @property
    def language_model(self) -> bool:
        return bool(self.loaded.is_language_model)

    def data(self, text: dict[str, Any] | None = None, n_inputs: int = 16384, seed: int = 0) -> tuple[Tensor, dict]:
        """``(data, what it is)``: the token windows of the run's corpus (``text`` overrides its options), or
        ``n_inputs`` inputs drawn from a toy model's own source with ``seed``."""
        if self.language_model:
            options = replace(self.text, **{k: v for k, v in (text or {}).items() if v is not None})
            windows = lm_windows(self.loaded, options)
            return windows, {"corpus": str(options.corpus), "tokens": options.tokens, "context": options.context,
                             "windows": len(windows)}
        x = self.model.source().sample(n_inputs, torch.Generator().manual_seed(seed))
        return x, {"inputs": n_inputs, "seed": seed}


def open_run(folder: str | Path, trust_code: bool = False, progress: bool = True) -> OpenRun:
    """Open the decompose run in ``folder`` (a finished run: its result saved); the model is resolved again from
    the run's record, with the decomposition's seed."""
    folder = Path(folder)
    req = saved_request(folder)
    result = Decomposition.load(folder)
    loaded = resolve(req.model, trust_code=trust_code, seed=int(result.config.get("seed", 0)), progress=progress)
    model = loaded.runnable("decompose")
    for p in model.parameters():
        p.requires_grad_(False)
    targets = select(model, [t["name"] for t in result.targets])
    method = METHODS[result.method]
    dec = result.module()
    return OpenRun(folder, result, method, dec, loaded, model, targets,
                   Units.of(method, targets, int(result.config["C"])), req.text)
