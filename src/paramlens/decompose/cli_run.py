"""What ``paramlens decompose`` does: resolve the model and its data, check everything, fit, write a report.

A run folder records what it decomposes (``run.json``: model, targets, method, data) beside the method's
``config.json``. ``--resume`` reads both back, refuses a command line that asks for something else (unless the
differing fields are named in ``--override``) and writes nothing before that check. Under ``torchrun``
(``WORLD_SIZE > 1``) it joins the process group (gloo for the CPU tensors it trains on) for the run, trains
data-parallel (``--set parallel=fsdp``: sharded), and leaves the group at the end; process 0 writes the run folder.
``--device`` says where to train (``auto``: a CUDA GPU when torch sees one, each ``torchrun`` process its
``LOCAL_RANK``'s).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from paramlens.core.data import TokenRows
from paramlens.core.memory import check_fits
from paramlens.core.resolve import resolve
from paramlens.core.runs import atomic_write, new_run_dir, resume_config
from paramlens.core.streams import blocks_of
from paramlens.core.text import TextOptions, lm_windows
from paramlens.core.weights import select
from paramlens.decompose import METHODS, Decomposition, decompose
from paramlens.errors import ParamLensError, UsageError
from paramlens.report.run import write_run
from paramlens.terminal import torchrun_worker

RUN_RECORD = "run.json"
# On a language model: 8 windows a step, outputs compared by KL, and (SPD) no layerwise passes, one per target a
# step otherwise: on the in-project LM, 12,000 steps without them reached a lower CE unrecovered (13.4 %) in less
# time than 2,000 steps with them (16.4 %; benchmarks/decompose_transformers.py --lm).
LM_DEFAULTS = {"output_loss": "kl", "batch_size": 8, "layerwise_recon_coeff": 0.0}


@dataclass
class Request:
    """What the command line asks for; ``None`` fields were not given (on resume they come from the run folder)."""

    model: str | None
    targets: list[str]
    method: str | None
    text: TextOptions
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def record(self) -> dict[str, Any]:
        text = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.text).items()}
        return {"model": self.model, "targets": self.targets, "method": self.method, **text}


@contextlib.contextmanager
def _process_group() -> Iterator[int]:
    """Under ``torchrun`` (``WORLD_SIZE > 1``) join its process group for the block, unless one is already joined,
    and leave it at the end; yields this process's rank. The decomposition's tensors are on the CPU: gloo carries
    them (nccl only CUDA tensors). The process still ends without interpreter finalization
    (:func:`paramlens.terminal.run_cli`): leaving the group does not stop its threads."""
    joins = torchrun_worker() and not dist.is_initialized()
    if joins:
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield dist.get_rank() if dist.is_initialized() else 0
    finally:
        if joins:
            dist.destroy_process_group()


def write_record(folder: Path, req: Request) -> None:
    """Write what the run in ``folder`` decomposes (``run.json``: read back by ``--resume`` and by
    ``paramlens components``)."""
    atomic_write(folder / RUN_RECORD, lambda p: p.write_text(json.dumps(req.record(), indent=2)))


def saved_request(folder: Path) -> Request:
    """What the run in ``folder`` decomposes, from its ``run.json`` (a missing or damaged record: one error)."""
    path = folder / RUN_RECORD
    if not path.is_file():
        raise ParamLensError(f"{folder}: not a decompose run folder (no {RUN_RECORD}); give the folder "
                             "paramlens decompose wrote")
    try:
        saved = json.loads(path.read_text())
        text = TextOptions(corpus=saved["corpus"], tokens=saved["tokens"], context=saved["context"],
                           token_ids=Path(saved["token_ids"]) if saved.get("token_ids") else None)
        if saved["method"] not in METHODS or not all(isinstance(t, str) for t in saved["targets"]):
            raise ValueError(f"method {saved['method']!r} or targets {saved['targets']!r} are not what decompose wrote")
        return Request(str(saved["model"]), list(saved["targets"]), saved["method"], text)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise ParamLensError(f"{path}: damaged ({type(e).__name__}: {e}); the run cannot be read") from None


def _resumed(req: Request, folder: Path, given_text: set[str], override: list[str]) -> Request:
    """The request of the run in ``folder``, with what the command line gave checked against it: a differing field
    is an error unless ``override`` names it (then the new value is used)."""
    saved = saved_request(folder)
    asked = {"model": req.model, "targets": req.targets or None, "method": req.method,
             **{k: getattr(req.text, k) for k in given_text}}
    was = {**saved.record(), "token_ids": saved.text.token_ids}
    changed = {k: v for k, v in asked.items() if v is not None and str(v) != str(was.get(k))}
    refused = [k for k in changed if k not in override]
    if refused:
        shown = ", ".join(f"{k} differs (saved {was.get(k)!r}, now {changed[k]!r})" for k in refused)
        raise ParamLensError(f"resume {folder}: {shown}; rerun without them to continue the saved run, or pass "
                             f"--override {','.join(refused)} to change them")
    text = replace(saved.text, **{k: getattr(req.text, k) for k in given_text if k in changed})
    return Request(*(changed.get(k, getattr(saved, k)) for k in ("model", "targets", "method")), text,
                   req.settings, req.seed)


def _model_and_data(req: Request, trust_code: bool) -> tuple[Any, Any, Any, dict]:
    """``(model, data source, ground truth or None, default settings)``."""
    loaded = resolve(req.model, trust_code=trust_code, seed=req.seed or 0)
    model = loaded.runnable("decompose")
    if loaded.is_language_model:
        return model, TokenRows(lm_windows(loaded, req.text)), None, dict(LM_DEFAULTS)
    if not hasattr(model, "source"):
        raise ParamLensError(f"{req.model}: a {loaded.kind} model brings no inputs to decompose it on; decompose "
                             "reads toy models (which sample their own inputs) and language models (which read text)")
    return model, model.source(), model.ground_truth(), {"tied": getattr(model, "tied_targets", {})}


def training_device(name: str) -> torch.device:
    """The device ``--device`` names (``auto``, ``cpu``, ``cuda``, ``cuda:N``), made current when it is a GPU; a
    ``cuda`` without index is this process's ``LOCAL_RANK``'s (0 outside ``torchrun``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParamLensError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ParamLensError(f"--device {name}: decompose trains on cpu or cuda")
    if not torch.cuda.is_available():
        raise ParamLensError(f"--device {name}: torch sees no CUDA device on this machine")
    index = device.index if device.index is not None else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise ParamLensError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def step_bytes(model: Any, data: Any, targets: list, cfg: Any) -> float:
    """The estimated peak memory of one training step: the decomposition's parameters with their
    gradients and Adam states, and one target's components as ``(C, d_out, d_in)`` matrices; per input token,
    every target's ``C`` component activations and importance-function hidden units (with their gradients); and on
    a language model the activations of every forward pass of a step (the target pass, the masked passes, one
    layerwise pass per target when that loss is on, two for adversarial masks), each about ``3 V + 20 d L`` floats a token (logits, their
    softmax, and the blocks' saved activations)."""
    per_subcomponent = getattr(cfg, "ci_fn", "mlp_per_subcomponent") == "mlp_per_subcomponent"
    gate = getattr(cfg, "gate_hidden", 0) if per_subcomponent else 0
    hidden = 0 if per_subcomponent else cfg.ci_fn_hidden  # one importance network's units per target and token
    params = 16 * cfg.C * sum(t.shape[0] + t.shape[1] + 3 * gate for t in targets)
    params += 8 * cfg.C * max(t.shape[0] * t.shape[1] for t in targets)  # evaluation reads each component's matrix
    micro = cfg.batch_size // cfg.grad_accum_steps  # inputs held at once
    tokens = micro * (data.windows.shape[1] if isinstance(data, TokenRows) else 1)
    per_token = 8 * len(targets) * (cfg.C * (gate + 8) + 4 * hidden)
    if isinstance(data, TokenRows):
        vocab, d = model.get_input_embeddings().weight.shape
        layerwise = len(targets) if getattr(cfg, "layerwise_recon_coeff", 0) else 0
        adversarial = 2 if getattr(cfg, "adversarial_recon_coeff", 0) else 0  # the search's pass and the loss's
        passes = 2 + getattr(cfg, "n_mask_samples", 1) + layerwise + adversarial
        per_token += 4 * passes * (3 * vocab + 20 * d * len(blocks_of(model)))
    return params + tokens * per_token


def _check_settings(method: str, given: dict) -> None:
    """Unknown or invalid settings are refused before the model is read (pydantic's error is one line in the CLI)."""
    fields = METHODS[method].config.model_fields
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise UsageError(f"{method} has no setting {', '.join(unknown)}; settings: {', '.join(fields)}")
    METHODS[method].config(**given)


def _config(method: str, model: Any, targets: list[str], given: dict, defaults: dict) -> Any:
    fields = METHODS[method].config.model_fields
    names = {t.name for t in select(model, targets)}
    tied = {k: v for k, v in defaults.pop("tied", {}).items() if k in names and v in names}
    if tied:
        defaults["tied"] = tied
    return METHODS[method].config(**{**{k: v for k, v in defaults.items() if k in fields}, **given})


def run_decompose(req: Request, *, out_dir: Path, resume: Path | None, override: list[str], trust_code: bool,
                  given_text: set[str], device: str = "auto") -> tuple[Decomposition, Path | None]:
    """Fit and report; returns the result and (on process 0) the run folder. ``given_text``: the data options the
    command line set explicitly (checked against the saved run on resume); ``device``: see
    :func:`training_device`."""
    where = training_device(device)
    with _process_group() as rank:
        return _run(req, rank, where, out_dir=out_dir, resume=resume, override=override, trust_code=trust_code,
                    given_text=given_text)


def _run(req: Request, rank: int, device: torch.device, *, out_dir: Path, resume: Path | None, override: list[str],
         trust_code: bool, given_text: set[str]) -> tuple[Decomposition, Path | None]:
    """:func:`run_decompose` in process ``rank``."""
    if resume is not None:
        req = _resumed(req, resume, given_text, override)
    if req.model is None or not req.targets:
        raise ParamLensError("decompose needs a model and at least one --targets pattern (or --resume FOLDER)")
    req.method = req.method or "spd"
    given = {**req.settings, **({"seed": req.seed} if req.seed is not None else {})}
    if resume is None:
        _check_settings(req.method, given)
    model, data, truth, defaults = _model_and_data(req, trust_code)
    cfg = (resume_config(resume, METHODS[req.method].config, given, override) if resume is not None
           else _config(req.method, model, req.targets, given, defaults))
    check_fits(step_bytes(model, data, select(model, req.targets), cfg),
               f"decompose with C={cfg.C}, batch_size={cfg.batch_size}", "lower --C or --batch-size", device=device)
    model.to(device)
    folder = resume if resume is not None else (new_run_dir(out_dir, req.method) if rank == 0 else None)

    result = decompose(model, data, req.targets, req.method, config=cfg, ground_truth=truth, folder=folder,
                       resume=resume is not None, eval_every=max(cfg.steps // 20, 1),
                       on_start=lambda: write_record(folder, req))  # once the run is known to be valid
    if rank != 0:
        return result, None
    write_run(result, folder, f"ParamLens {req.method.upper()}: {req.model}",
              heading=f"{req.method.upper()} of {req.model}")
    return result, folder
