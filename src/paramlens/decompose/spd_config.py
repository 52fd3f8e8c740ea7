"""The settings of SPD: the paper's losses, and the training options of later versions of the method (importance
functions that read more than one subcomponent, adversarial masks, an annealed minimality exponent, a frequency
term, a delta component), each off by default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from paramlens.core.fields import LearningRate, Seed
from paramlens.decompose.forward import Coefficient
from paramlens.decompose.importance_fns import CIFunction
from paramlens.decompose.schedule import Schedule


class SPDConfig(Schedule):
    """SPD settings; the defaults (with :class:`Schedule`'s) are the paper's for TMS 5-2."""

    method: Literal["spd"] = "spd"
    C: int = Field(20, ge=1, description="subcomponents per target")
    p: float = Field(1.0, gt=0, description="exponent of the importance-minimality loss (at the start, if annealed)")
    p_final: float | None = Field(None, gt=0, description="anneal the exponent linearly to this value (None: keep p)")
    p_anneal_start: float = Field(0.0, ge=0, le=1, description="share of the steps before the annealing starts")
    p_anneal_end: float = Field(1.0, ge=0, le=1, description="share of the steps at which p reaches p_final")
    faithfulness_coeff: Coefficient = 1.0
    stochastic_recon_coeff: Coefficient = 1.0
    layerwise_recon_coeff: Coefficient = 1.0
    importance_minimality_coeff: Coefficient = 3e-3
    frequency_coeff: Coefficient = Field(
        0.0, description="weight of sum_c f_c^2 per target, f_c the mean importance of subcomponent c over the "
        "batch's inputs (positions): a use costs more for subcomponents used often")
    adversarial_recon_coeff: Coefficient = Field(
        0.0, description="weight of the output loss under masks whose sources are pushed by PGD to the worst case")
    pgd_steps: int = Field(2, ge=1, description="projected signed-gradient steps per adversarial search")
    pgd_step_size: float = Field(0.1, gt=0, le=1, description="size of each PGD step on the sources in [0, 1]")
    pgd_persistent: bool = Field(
        False, description="keep one source per subcomponent across steps (shared by all inputs) instead of fresh "
        "per-input sources started from a uniform draw")
    delta_component: bool = Field(
        False, description="add the part of each weight the subcomponents miss (W - sum_c U_c V_c^T) to every masked "
        "forward: at 1 when importances are the masks (so masks ablate subcomponents from the real weights), under a "
        "uniform random mask in the stochastic losses (so nothing can hide in it)")
    ci_fn: CIFunction = Field("mlp_per_subcomponent", description="what a subcomponent's importance reads")
    ci_fn_hidden: int = Field(64, ge=1, description="width of the importance function (all but the per-subcomponent)")
    gate_hidden: int = Field(16, ge=1, description="width of each per-subcomponent importance MLP")
    leaky_slope: float = Field(0.01, ge=0)
    n_mask_samples: int = Field(1, ge=1)
    faithfulness_warmup_steps: int = Field(
        0, ge=0, description="steps of fitting the subcomponents' sum to the weights alone (AdamW) before training")
    faithfulness_warmup_lr: LearningRate = 1e-2
    faithfulness_warmup_weight_decay: float = Field(0.1, ge=0)
    output_loss: Literal["mse", "kl"] = "mse"
    tied: dict[str, str] = Field(
        default_factory=dict, description="{target: owner}: target's matrix is owner's transpose (tied weights); "
        "it is decomposed with the owner's subcomponents, transposed, and gated on its own")
    compile: bool | None = Field(
        None, description="compile the importance function with torch.compile (about 20 s once, then ~3x faster); "
        "None: only for runs of 3000 steps or more")
    compile_losses: bool | None = Field(
        None, description="with compile: compile all of a batch's losses, the model's masked forward passes included, "
        "into one graph (a few seconds more once; ~1.25x faster steps on toy models); None: when the output loss is "
        "MSE (toy models: a language model's forward compiles slowly)")
    seed: Seed = 0

    @model_validator(mode="after")
    def _anneal_window(self) -> SPDConfig:
        if self.p_anneal_end < self.p_anneal_start:
            raise ValueError(f"p_anneal_end {self.p_anneal_end} is before p_anneal_start {self.p_anneal_start}")
        return self

    def compiles(self) -> bool:
        return self.compile if self.compile is not None else self.steps >= 3000

    def compiles_losses(self) -> bool:
        wanted = self.compile_losses if self.compile_losses is not None else self.output_loss == "mse"
        return self.compiles() and wanted

    def exponent(self, step: int) -> float:
        """The importance-minimality exponent at ``step``: ``p`` until ``p_anneal_start`` of the steps, then linear
        to ``p_final`` at ``p_anneal_end``, then ``p_final``."""
        if self.p_final is None:
            return self.p
        frac = step / max(self.steps - 1, 1)
        span = self.p_anneal_end - self.p_anneal_start
        t = 1.0 if frac >= self.p_anneal_end else max(0.0, (frac - self.p_anneal_start) / span) if span else 0.0
        return self.p + t * (self.p_final - self.p)


# On toy models ParamLens runs SPD with the paper's losses and coefficients but a 3x higher, constant
# learning rate: the same solution in a quarter of the steps (benchmarks/decompose_tms.py). At 1e-2 some
# seeds of TMS 5-2 settle with two features on one subcomponent.
FAST_TOY_SCHEDULE = {"lr": 3e-3, "lr_schedule": "constant"}
