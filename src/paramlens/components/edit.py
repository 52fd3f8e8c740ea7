"""Edits: the model with some units ablated (their pieces taken out of the real weights), saved so that every
command loads it, and what the edit changes.

The edited model is saved in the form it came in: a Hugging Face model as a model folder (with its tokenizer), a
zoo model as a model folder of its kind (``config.json`` + ``model.safetensors``), anything else as its state dict in
``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from safetensors.torch import save_file
from torch import Tensor, nn

from paramlens.components.run import OpenRun
from paramlens.components.units import ablated
from paramlens.core.mechanism_task import MechanismTask
from paramlens.core.runs import Result, atomic_write, save_config
from paramlens.core.weights import run_with
from paramlens.decompose.forward import logits_of


@dataclasses.dataclass
class Edit(Result):
    """What ablating ``units`` does.

    Attributes:
        units: the ablated units; model: the folder or file holding the edited model.
        loss: ``{"before", "after"}``: next-token cross-entropy per token on the data (language models); the KL
            divergence from the unedited output on other token sequences (``before`` is 0); the output's mean squared
            distance to the input for a toy model that reconstructs its input (else to the unedited output).
        changed: the positions (inputs) whose output changes most: on token sequences ``{"window", "position",
            "token", "before", "after", "kl"}`` (token ids; top-1 outputs), else ``{"input", "change"}``.
        mechanisms: on a model with known mechanisms, ``{mechanism: {"before", "after"}}`` task accuracies.
    """

    kind = "edit"
    units: list[str]
    model: str
    loss: dict[str, float]
    changed: list[dict[str, Any]]
    mechanisms: dict[str, dict[str, float]]

    def summary(self) -> str:
        lines = [f"ablated {', '.join(self.units)}; edited model: {self.model}",
                 f"  loss {self.loss['before']:.4g} -> {self.loss['after']:.4g}"]
        lines += [f"  {name}: accuracy {acc['before']:.3f} -> {acc['after']:.3f}" for name, acc in self.mechanisms.items()]
        return "\n".join(lines)


def _loss(out: Tensor, x: Tensor, reference: Tensor, language_model: bool) -> Tensor:
    """Per row: a language model's mean next-token cross-entropy; on other token sequences the mean KL divergence
    from the ``reference`` output; on inputs the output's mean squared distance to ``x`` (same shape) or to
    ``reference``."""
    if language_model:
        ce = F.cross_entropy(out[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten(), reduction="none")
        return ce.view(len(x), -1).mean(1)
    if not x.is_floating_point():
        return _kl(reference, out).mean(1)
    goal = x if out.shape == x.shape else reference
    return (out - goal).pow(2).flatten(1).mean(1)


def _kl(base: Tensor, edited: Tensor) -> Tensor:
    """``KL(softmax(base) || softmax(edited))`` over the last dimension."""
    logp, logq = F.log_softmax(base.float(), -1), F.log_softmax(edited.float(), -1)
    return (logp.exp() * (logp - logq)).sum(-1)


def compare(model: nn.Module, replaced: dict[str, Tensor], data: Tensor, language_model: bool, batch_size: int,
            n_changed: int = 10) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """``(loss before/after, most changed positions)`` of the model with ``replaced`` weights against itself on
    ``data`` (see :class:`Edit`)."""
    sequences = not data.is_floating_point()
    before, after, scores, tops = [], [], [], []
    with torch.no_grad():
        for x in data.split(batch_size):
            base, edited = logits_of(model(x)), logits_of(run_with(model, replaced, x))
            before.append(_loss(base, x, base, language_model))
            after.append(_loss(edited, x, base, language_model))
            if sequences:
                scores.append(_kl(base, edited).flatten())
                tops.append(torch.stack([base.argmax(-1).flatten(), edited.argmax(-1).flatten()], 1))
            else:
                scores.append((edited - base).pow(2).flatten(1).mean(1))
    score = torch.cat(scores)
    best = score.topk(min(n_changed, len(score)))
    if sequences:
        T, top = data.shape[1], torch.cat(tops)
        changed = [{"window": int(i) // T, "position": int(i) % T, "token": int(data.reshape(-1)[i]),
                    "before": int(top[i, 0]), "after": int(top[i, 1]), "kl": float(v)}
                   for v, i in zip(best.values, best.indices)]
    else:
        changed = [{"input": int(i), "change": float(v)} for v, i in zip(best.values, best.indices)]
    return {"before": float(torch.cat(before).mean()), "after": float(torch.cat(after).mean())}, changed


def task_accuracies(model: nn.Module, replaced: dict[str, Tensor], task: MechanismTask) -> dict[str, dict[str, float]]:
    """``{mechanism: {"before", "after"}}``: accuracy of the outputs each known mechanism serves."""
    with torch.no_grad():
        base, edited = logits_of(model(task.x)), logits_of(run_with(model, replaced, task.x))
    return {name: {"before": task.accuracy(base, name), "after": task.accuracy(edited, name)} for name in task.names}


def save_edited(run: OpenRun, replaced: dict[str, Tensor], folder: Path) -> Path:
    """Write the model with ``replaced`` weights into ``folder`` in the form it came in (see the module doc); the
    path every command loads."""
    module = run.loaded.module
    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    prefix = _prefix(module, run.model)
    for t in run.targets:
        if t.name in replaced:
            state[prefix + t.param_name] = t.to_stored(replaced[t.name]).to(state[prefix + t.param_name].dtype)
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(module, "save_pretrained"):
        module.save_pretrained(folder, state_dict=state, safe_serialization=True)
        if run.loaded.tokenizer is not None:
            run.loaded.tokenizer.save_pretrained(folder)
        return folder
    cfg = getattr(module, "cfg", None)
    if isinstance(cfg, BaseModel) and "kind" in type(cfg).model_fields:
        save_config(folder, cfg)
    atomic_write(folder / "model.safetensors", lambda p: save_file(state, str(p)))
    return folder if isinstance(cfg, BaseModel) else folder / "model.safetensors"


def _prefix(module: nn.Module, runnable: nn.Module) -> str:
    """The name of ``runnable`` inside ``module`` plus a dot ("" when it is the module itself)."""
    for name, sub in module.named_modules():
        if sub is runnable:
            return f"{name}." if name else ""
    return ""


def edit(run: OpenRun, specs: Sequence[str], folder: Path, data: Tensor, *, task: MechanismTask | None = None,
         batch_size: int = 16) -> Edit:
    """Ablate the units named in ``specs`` (``target:index``, or ``component:index`` for APD), save the edited model
    under ``folder`` and the :class:`Edit` report in ``folder``."""
    indices = [run.units.index(s) for s in specs]
    replaced = ablated(run.method, run.dec, run.model, run.targets, [run.units.parts[i] for i in indices])
    where = save_edited(run, replaced, folder / "model")
    loss, changed = compare(run.model, replaced, data, run.language_model, batch_size)
    report = Edit(units=[run.units.names[i] for i in indices], model=str(where), loss=loss, changed=changed,
                  mechanisms=task_accuracies(run.model, replaced, task) if task is not None else {})
    report.save(folder)
    return report
