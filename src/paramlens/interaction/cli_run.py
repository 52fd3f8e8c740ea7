"""What ``paramlens interaction`` and ``paramlens degeneracy`` do: on the built-in modular-addition MLP, or on
a language model's residual stream (``smollm2``, ``minilm``, a Hugging Face folder or a ``.gguf`` file). Other
MLPs go through the Python API (:func:`paramlens.interaction.basis.segments_of`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from paramlens.core.loading import Loaded
from paramlens.core.resolve import builtin, resolve
from paramlens.core.runs import Result
from paramlens.core.text import TextOptions, lm_windows
from paramlens.errors import ParamLensError
from paramlens.interaction.degeneracy import Degeneracy, residual_degeneracy
from paramlens.interaction.lm_summary import lm_interaction
from paramlens.interaction.modular import modular_degeneracy, modular_interaction
from paramlens.report.run import write_run

BUILTIN = "modular-addition"


@dataclass
class LMOptions:
    """How a language model is read: ``text`` says which token windows; ``sources`` random vectors per batch for
    Jacobian moments and edges; edges among the ``top`` directions per layer."""

    text: TextOptions = field(default_factory=TextOptions)
    sources: int = 4
    top: int = 16


def _model(spec: str, p: int, seed: int, command: str, trust_code: bool) -> Loaded:
    """The built-in modular-addition MLP (trained with modulus ``p``) or a language model; anything else is an
    error naming what the command reads."""
    name = builtin(spec)
    if name not in (None, BUILTIN):
        raise ParamLensError(f"{spec}: a built-in toy model; {command} reads the built-in '{BUILTIN}' MLP or a "
                             "transformer language model")
    loaded = resolve(spec, trust_code=trust_code, seed=seed, options={"p": p} if name == BUILTIN else None)
    loaded.runnable(command)
    if loaded.kind != "modular_addition" and not loaded.is_language_model:
        raise ParamLensError(f"{spec}: a {loaded.kind} model; {command} reads the built-in '{BUILTIN}' MLP or a "
                             "transformer language model (other MLPs: paramlens.interaction.basis.segments_of)")
    return loaded


def _settings(model: str, p: int, seed: int, loaded: Loaded, lm: LMOptions) -> dict:
    base = {"model": model, "seed": seed}
    return {**base, "p": p} if not loaded.is_language_model else {**base, **asdict(lm)}


def run_interaction(model: str, p: int, seed: int, out_dir: Path, lm: LMOptions | None = None,
                    trust_code: bool = False) -> tuple[Result, Path]:
    """The built-in modular-addition MLP (``p``), or any language model read as ``lm`` says."""
    loaded, lm = _model(model, p, seed, "interaction", trust_code), lm or LMOptions()
    if not loaded.is_language_model:
        result: Result = modular_interaction(loaded.module)
        heading = f"Interaction basis of a modular-addition MLP (p = {p})"
    else:
        result = lm_interaction(loaded.module, lm_windows(loaded, lm.text), loaded.name, sources=lm.sources,
                                top=lm.top, seed=seed)
        heading = f"Interaction basis of {loaded.name}'s residual stream"
    folder = write_run(result, out_dir, "ParamLens interaction basis", name="interaction", heading=heading,
                       config=_settings(model, p, seed, loaded, lm))
    return result, folder


def run_degeneracy(model: str, p: int, seed: int, out_dir: Path, lm: LMOptions | None = None,
                   trust_code: bool = False) -> tuple[Degeneracy, Path]:
    """The built-in modular-addition MLP (``p``), or any language model read as ``lm`` says."""
    loaded, lm = _model(model, p, seed, "degeneracy", trust_code), lm or LMOptions()
    if not loaded.is_language_model:
        result = modular_degeneracy(loaded.module, seed)
    else:
        result = residual_degeneracy(loaded.module, lm_windows(loaded, lm.text), sources=lm.sources, seed=seed,
                                     progress=True)
    folder = write_run(result, out_dir, "ParamLens degeneracy", name="degeneracy", heading=f"Degeneracy of {loaded.name}",
                       config=_settings(model, p, seed, loaded, lm))
    return result, folder
