"""Reading what a re-assembly starts from: the piece files of a folder and the data rows of a CSV.

Pieces: every file of the folder with a weights suffix (:data:`WEIGHT_SUFFIXES`), or without one whose content
:func:`paramlens.core.loading.sniff` recognises, is read with :func:`paramlens.core.loading.load` (safetensors,
``torch.save`` files of any kind without running their code, ``.npz``, ...); it must hold one 2-d weight and one
1-d bias. Other files (the CSV, notes) are skipped and listed.

Data: a CSV with a header. The target columns (the network's own outputs) are the ones named, else the column
``pred``, else, when the CSV has exactly as many named columns as the pieces have inputs and outputs, the last
ones; anything else is refused with the list of columns. The inputs are the first ``d_in`` other named columns;
columns left over (a label; an unnamed index column, as pandas writes) are listed and never read.

Pieces and data rows must hold finite numbers within float32's range (the search runs in float32); a NaN, an
infinity or a larger value is refused, naming the piece file and tensor or the CSV row and column.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from paramlens.core.loading import FORMATS, load, regular_file, sniff
from paramlens.errors import ParamLensError
from paramlens.reverse.chain import natural_key
from paramlens.reverse.values import nonfinite_counts

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz", ".npy", ".gguf")
DEFAULT_TARGET = "pred"
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
USABLE = "finite numbers within float32's range (±3.4e38; the search runs in float32)"


@dataclass
class Piece:
    """One linear layer: ``weight`` ``(out, in)`` and ``bias`` ``(out,)``, float64; ``name``: its file's name."""

    name: str
    weight: Tensor
    bias: Tensor


def piece_files(folder: str | Path) -> tuple[list[Path], list[str]]:
    """The piece files of ``folder`` in natural name order, and the names of its other entries (skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ParamLensError(f"{folder}: not a folder of pieces")
    files, skipped = [], []
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if path.is_file() and (path.suffix.lower() in WEIGHT_SUFFIXES or _holds_weights(path)):
            files.append(path)
        else:
            skipped.append(path.name)
    if not files:
        found = f"; found only {listed(skipped)}" if skipped else "; it is empty"
        raise ParamLensError(f"{folder}: no piece files ({FORMATS}){found}")
    return files, skipped


def load_pieces(folder: str | Path) -> tuple[list[Piece], list[str]]:
    """Every piece in ``folder`` (natural name order), and the names of the entries that are not pieces."""
    files, skipped = piece_files(folder)
    return [load_piece(path) for path in files], skipped


def _holds_weights(path: Path) -> bool:
    try:
        sniff(path)
    except ParamLensError:
        return False
    return True


def load_piece(path: Path) -> Piece:
    """The one weight and one bias in ``path``, float64 (torch files are read without running pickled code)."""
    tensors = load(path, check_finite=False).tensors
    mats = [k for k, t in tensors.items() if t.dim() == 2]
    vecs = [k for k, t in tensors.items() if t.dim() == 1]
    if len(mats) != 1 or len(vecs) != 1 or tensors[vecs[0]].shape[0] != tensors[mats[0]].shape[0]:
        raise ParamLensError(f"{path}: not a piece; a piece holds one weight (out, in) and one bias (out,), this file "
                             f"holds { {k: list(t.shape) for k, t in tensors.items()} }")
    piece = Piece(path.name, tensors[mats[0]].double(), tensors[vecs[0]].double())
    for name, t in ((mats[0], piece.weight), (vecs[0], piece.bias)):
        if (problem := _unusable(t)) is not None:
            raise ParamLensError(f"{path}: tensor '{name}' holds {problem}; pieces must hold {USABLE}")
    return piece


def _unusable(t: Tensor) -> str | None:
    """How many NaN, infinities and values beyond float32's range ``t`` holds, in words (None: none)."""
    parts = [f"{n} {k}" for k, n in nonfinite_counts(t).items()]
    big = int((t.isfinite() & (t.abs() > FLOAT32_MAX)).sum())
    if big:
        parts.append(f"{big} value{'s' if big > 1 else ''} beyond float32's range")
    return ", ".join(parts) or None


def listed(names: list[str]) -> str:
    """``names`` joined by commas, runs of numbered names shortened: ``x0..x47, pred, true``."""
    names = [n or "(unnamed)" for n in names]
    out, k = [], 0
    while k < len(names):
        end = k + 1
        m = re.fullmatch(r"(.*?)(\d+)", names[k])
        while m and end < len(names) and names[end] == f"{m[1]}{int(m[2]) + end - k}":
            end += 1
        out += [f"{names[k]}..{names[end - 1]}"] if end - k > 2 else names[k:end]
        k = end
    return ", ".join(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class Columns:
    """The CSV columns read: ``inputs`` in order, ``targets`` (the network's outputs), ``unused`` (never read),
    and ``chosen``: how the targets were chosen (``"named"``, ``"default"`` or ``"by position"``)."""

    inputs: list[str]
    targets: list[str]
    unused: list[str]
    chosen: str


def _target_indices(path: Path, names: list[str], d_in: int, d_out: int,
                    target: list[str] | None) -> tuple[list[int], str]:
    """Which columns hold the network's outputs, and how they were chosen (see the module docstring)."""
    named = [i for i, n in enumerate(names) if n]
    if target:
        if len(target) != d_out or len(set(target)) != len(target):
            raise ParamLensError(f"{path}: --target-column names {', '.join(target)}; the readout has {d_out} "
                                 f"output{'s' if d_out > 1 else ''}, so name {d_out} different column(s)")
        for t in target:
            if names.count(t) != 1:
                raise ParamLensError(f"{path}: {'no' if t not in names else 'more than one'} column '{t}'; "
                                     f"columns: {listed(names)}")
        return [names.index(t) for t in target], "named"
    if d_out == 1 and names.count(DEFAULT_TARGET) == 1:
        return [names.index(DEFAULT_TARGET)], "default"
    if len(named) == d_in + d_out:
        return named[d_in:], "by position"
    why = f"no single '{DEFAULT_TARGET}' column holds the network's output" if d_out == 1 else \
        f"the readout has {d_out} outputs"
    raise ParamLensError(f"{path}: {why}, and {len(named)} named columns are not {d_in} inputs + {d_out} "
                         f"output{'s' if d_out > 1 else ''}; name the output column{'s' if d_out > 1 else ''} with "
                         f"--target-column (columns: {listed(names)})")


def pick_columns(path: Path, names: list[str], d_in: int, d_out: int,
                 target: list[str] | None) -> tuple[Columns, list[int]]:
    """The input, target and unused columns of a CSV with header ``names``, and the indices of the inputs then
    the targets."""
    targets, chosen = _target_indices(path, names, d_in, d_out, target)
    rest = [i for i, n in enumerate(names) if n and i not in targets]
    if len(rest) < d_in:
        raise ParamLensError(f"{path}: {len(rest)} named columns besides the target column(s) "
                             f"{', '.join(names[i] for i in targets)}; the pieces need {d_in} inputs "
                             f"(columns: {listed(names)})")
    inputs = rest[:d_in]
    unused = [names[i] or f"(column {i + 1}, unnamed)" for i in range(len(names)) if i not in inputs + targets]
    return Columns([names[i] for i in inputs], [names[i] for i in targets], unused, chosen), inputs + targets


def load_rows(path: str | Path, d_in: int, d_out: int, target: list[str] | None = None
              ) -> tuple[Tensor, Tensor, Columns]:
    """Inputs ``(R, d_in)`` and target outputs ``(R, d_out)`` (float64) from a CSV with a header, and the
    columns read (see the module docstring); blank lines are not rows."""
    path = regular_file(path)
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise ParamLensError(f"{path}: needs a header and at least one row")
    names, body = [h.strip() for h in rows[0]], rows[1:]
    if all(_is_number(n) for n in names):
        raise ParamLensError(f"{path}: the first line holds numbers, not column names; the CSV needs a header")
    cols, index = pick_columns(path, names, d_in, d_out, target)
    try:
        values = np.array([[float(r[i]) for i in index] for r in body])
    except (ValueError, IndexError) as e:
        raise ParamLensError(f"{path}: a row is short or not numeric ({e})") from None
    bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise ParamLensError(f"{path}: data row {r + 1} (line {r + 2}), column '{names[index[c]]}' holds "
                             f"{body[r][index[c]].strip()!r}; data values must be {USABLE}")
    t = torch.from_numpy(values)
    return t[:, :d_in].contiguous(), t[:, d_in:].contiguous(), cols
