"""Running the SPD paper's code (``../shared/anchors/spd-v1``) from a benchmark: its private venv, its TMS 5-2
trainer, its own timed decomposition loop, and its checkpoints read back as tensors (nothing of it is imported
here: it runs in its own process and Python)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from paramlens.decompose.metrics import mechanism_outputs, mmcs_ml2r
from paramlens.models.toy.tms import TMS, TMSConfig

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "spd-v1"


@dataclass
class Reference:
    folder: Path
    threads: int

    def __post_init__(self) -> None:
        out = subprocess.run(["bash", str(self.folder / "setup.sh")], check=True, capture_output=True, text=True)
        self.driver = [out.stdout.strip(), str(self.folder / "tms.py"), "--threads", str(self.threads)]

    def train(self, seed: int, out: Path) -> Path:
        """The TMS 5-2 target trained by the reference's trainer with ``seed``: ``out/tms.pth``."""
        subprocess.run([*self.driver, "train", "--seed", str(seed), "--out", str(out)], check=True, capture_output=True)
        return out / "tms.pth"

    def decompose(self, target: Path, steps: int, out: Path, *, a: int = 100, b: int | None = None,
                  save_every: int | None = None) -> dict:
        """The reference's decomposition of ``target`` with its own TMS 5-2 schedule (40k-step cosine), stopped after
        ``steps``; its record: ``steps_per_s`` between steps ``a`` and ``b``, ``checkpoints`` folder, ..."""
        cmd = [*self.driver, "decompose", "--model", str(target), "--steps", "40000", "--stop-after", str(steps),
               "--a", str(a), "--b", str(b or steps), "--json", str(out)]
        if save_every:
            cmd += ["--save-every", str(save_every)]
        subprocess.run(cmd, check=True, capture_output=True)
        return json.loads(out.read_text())


def as_paramlens(target: Path) -> TMS:
    """The reference's TMS 5-2 target loaded into ParamLens's TMS model (tied ``W``, bias)."""
    state = torch.load(target, weights_only=True)
    model = TMS(TMSConfig())
    with torch.no_grad():
        model.linear1.weight.copy_(state["linear1.weight"])
        model.linear2.bias.copy_(state["linear2.bias"])
    model.tie()
    return model


def checkpoint_scores(folder: Path, model: TMS) -> list[tuple[int, float, float]]:
    """``[(step, MMCS, ML2R)]`` of the reference's ``model_<step>.pth`` checkpoints (linear1's components ``A``
    ``(n_features, C)``, ``B`` ``(C, d_hidden)``) against ``model``'s ground truth on linear1 (the features it
    represents), as ParamLens scores its own runs."""
    gt = model.ground_truth()
    directions = gt.input_directions["linear1"]  # (n_live, n_features)
    truth = mechanism_outputs(gt.matrices["linear1"], directions)  # (n_live, d_hidden)
    scores = []
    for path in sorted(Path(folder).glob("model_*.pth"), key=lambda p: int(p.stem.split("_")[1])):
        state = torch.load(path, weights_only=True)
        A = next(v for k, v in state.items() if k.endswith("linear1.A"))
        B = next(v for k, v in state.items() if k.endswith("linear1.B"))
        outputs = (directions @ A).unsqueeze(-1) * B.unsqueeze(0)  # (n_live, C, d_hidden): what c writes for each
        mmcs, ml2r, _ = mmcs_ml2r(outputs, truth)
        scores.append((int(path.stem.split("_")[1]), mmcs, ml2r))
    return scores
