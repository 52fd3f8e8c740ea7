"""Geometry of layer updates: how much of each layer's update is a function of the current token alone.

For layer ``l`` the update is ``D = h_{l+1} - h_l`` (residual stream after minus before the block). A
tokenwise approximation ``T(h_l[t])`` sees only the same token's state; it is fitted on held-in windows and
evaluated on held-out ones, and ``R = D - T`` is what needs other tokens (attention) or lies outside the
function class. Classes (all fitted per layer):

- ``ridge``: affine map ``[h, 1] W`` with ridge penalty ``alpha`` (closed form from streamed sums).
- ``lowrank``: the ridge map restricted to the top-``rank`` directions of its outputs (reduced-rank).
- ``diagonal``: ``a * h + b`` per coordinate.
- ``mlp``: one hidden layer (GELU), trained on a bounded sample of held-in tokens.

Per layer and class: mean cosine of ``D`` with ``T`` and with ``R``, mean angles ``(D, T)`` and ``(D, R)`` in
degrees, the share of the energy of ``D`` and of ``R`` inside the top-``k`` subspace of ``T``, and explained
variance ``1 - |R|^2 / |D - mean D|^2``. Intervention: the layer's update is replaced by ``T`` (of the
``primary`` class) and the KL divergence of the next-token distribution from the unchanged model is measured
per token; the Spearman correlation between per-token approximation error ``|R| / |D|`` and that KL is taken
across layers and tokens.

Activations are streamed one batch at a time: the ridge, low-rank and diagonal fits need only running sums
(``(d + 1)^2`` per layer, float64); only the MLP keeps a bounded sample of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, model_validator
from scipy.stats import spearmanr
from torch import Tensor, nn

from paramlens.core.fields import Seed
from paramlens.core.progress import track
from paramlens.core.runs import Result
from paramlens.core.streams import blocks_of, patched, require_tokens, stream_batches
from paramlens.errors import ParamLensError
from paramlens.geometry.ridge import RidgeSums, with_one

CLASSES = ("ridge", "lowrank", "diagonal", "mlp")


class GeometryConfig(BaseModel):
    classes: list[Literal["ridge", "lowrank", "diagonal", "mlp"]] = Field(list(CLASSES), min_length=1)
    primary: Literal["ridge", "lowrank", "diagonal", "mlp"] = Field("ridge", description="class used for the KL intervention")
    alpha: float = Field(1e-3, gt=0, description="ridge penalty, in units of the mean input second moment")
    rank: int = Field(16, ge=1)
    top_k: int = Field(16, ge=1, description="size of T's dominant subspace for the energy shares")
    mlp_hidden: int = Field(256, ge=1)
    mlp_steps: int = Field(300, ge=1)
    mlp_tokens: int = Field(4096, ge=16, description="held-in tokens kept per layer to train the MLP")
    held_out: float = Field(0.25, gt=0, lt=1, description="share of windows held out for evaluation")
    batch: int = Field(8, ge=1)
    seed: Seed = 0

    @model_validator(mode="after")
    def _primary_is_fitted(self) -> "GeometryConfig":
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes {self.classes} name a class twice")
        if self.primary not in self.classes:
            raise ValueError(f"the primary class '{self.primary}' must be one of the fitted classes {self.classes}")
        return self


def _affine_maps(s: RidgeSums, cfg: GeometryConfig) -> dict[str, Tensor]:
    """``(d + 1, d)`` float64 maps ``[h, 1] -> T`` for the affine classes."""
    d = s.xy.shape[1]
    ridge = s.solve(cfg.alpha, relative=True)
    out: dict[str, Tensor] = {}
    if "ridge" in cfg.classes or cfg.primary == "ridge":
        out["ridge"] = ridge
    if "lowrank" in cfg.classes or cfg.primary == "lowrank":
        _, vecs = torch.linalg.eigh(ridge.T @ s.xx @ ridge)  # second moment of the fitted outputs
        top = vecs[:, -min(cfg.rank, d):]
        out["lowrank"] = ridge @ top @ top.T
    if "diagonal" in cfg.classes or cfg.primary == "diagonal":
        n = s.n
        mx, my = s.xx[:d, d] / n, s.xy[d] / n
        vx = torch.diagonal(s.xx)[:d] / n - mx**2
        cov = torch.diagonal(s.xy[:d]) / n - mx * my
        a = cov / (vx + cfg.alpha * vx.mean() / max(n, 1))
        w = torch.zeros(d + 1, d, dtype=torch.float64)
        w[:d] = torch.diag(a)
        w[d] = my - a * mx
        out["diagonal"] = w
    return out


def _fit_mlp(x: Tensor, y: Tensor, cfg: GeometryConfig) -> nn.Module:
    """A one-hidden-layer GELU network ``x -> y`` on standardised inputs and outputs (Adam, seeded)."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    d = x.shape[1]
    mx, sx = x.mean(0), x.std(0).clamp_min(1e-6)
    my, sy = y.mean(0), y.std(0).clamp_min(1e-6)
    net = nn.Sequential(nn.Linear(d, cfg.mlp_hidden), nn.GELU(), nn.Linear(cfg.mlp_hidden, d))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xs, ys = (x - mx) / sx, (y - my) / sy
    for _ in range(cfg.mlp_steps):
        idx = torch.randint(0, len(x), (min(512, len(x)),), generator=g)
        loss = F.mse_loss(net(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.requires_grad_(False)
    return _Standardised(net, mx, sx, my, sy)


class _Standardised(nn.Module):
    def __init__(self, net: nn.Module, mx: Tensor, sx: Tensor, my: Tensor, sy: Tensor):
        super().__init__()
        self.net, self.mx, self.sx, self.my, self.sy = net, mx, sx, my, sy

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mx) / self.sx) * self.sy + self.my


class TokenwiseMaps:
    """The fitted ``T`` of every layer and class: ``apply(layer, cls, h (N, d)) -> (N, d)``."""

    def __init__(self, affine: list[dict[str, Tensor]], mlps: list[nn.Module | None]):
        self.affine, self.mlps = affine, mlps

    def apply(self, layer: int, cls: str, h: Tensor) -> Tensor:
        if cls == "mlp":
            return self.mlps[layer](h.float())
        return (with_one(h.double()) @ self.affine[layer][cls]).float()


@dataclass
class LayerGeometry(Result):
    """Layer-update geometry of one model.

    Attributes:
        model: name. classes: fitted classes; primary: the one used for the intervention.
        layers: per layer and class, ``{"layer", "class", "cos_DT", "cos_DR", "angle_DT", "angle_DR",
            "energy_D_topk", "energy_R_topk", "explained_variance", "rel_error"}`` (means over held-out tokens).
        kl: per layer, mean KL (nats) of the next-token distribution when the update is replaced by ``T``
            (NaN for encoders, which have no next-token distribution).
        spearman: Spearman rho between per-token ``|R|/|D|`` and KL, across layers and tokens (primary class).
        n_fit_tokens, n_eval_tokens: tokens used to fit and to evaluate.
    """

    kind = "layer_geometry"
    model: str
    classes: list[str]
    primary: str
    layers: list[dict]
    kl: list[float]
    spearman: float
    n_fit_tokens: int
    n_eval_tokens: int

    def rows(self, cls: str) -> list[dict]:
        return [r for r in self.layers if r["class"] == cls]

    def summary(self) -> str:
        lines = [f"{self.model}: layer-update geometry on {self.n_eval_tokens} held-out tokens "
                 f"(fitted on {self.n_fit_tokens})"]
        for cls in self.classes:
            rows = self.rows(cls)
            mean = {k: float(np.mean([r[k] for r in rows])) for k in ("cos_DT", "cos_DR", "angle_DT", "angle_DR",
                                                                      "energy_D_topk", "energy_R_topk",
                                                                      "explained_variance")}
            lines.append(f"  {cls:9s} cos(D,T) {mean['cos_DT']:.3f}  cos(D,R) {mean['cos_DR']:.3f}  "
                         f"angle(D,T) {mean['angle_DT']:.1f}  angle(D,R) {mean['angle_DR']:.1f} deg  "
                         f"top-k energy D {mean['energy_D_topk']:.2f} R {mean['energy_R_topk']:.2f}  "
                         f"EV {mean['explained_variance']:.3f}")
        if all(np.isnan(self.kl)):
            lines.append("  no next-token distribution (an encoder): the KL intervention does not apply")
        else:
            lines.append(f"  replacing an update by its {self.primary} T: mean KL per layer "
                         + " ".join(f"{v:.3g}" for v in self.kl))
            lines.append(f"  Spearman(|R|/|D|, KL) across layers and tokens: {self.spearman:.3f}")
        return "\n".join(lines)

    def table(self) -> list[dict]:
        return [{**r, "KL": self.kl[r["layer"]]} for r in self.rows(self.primary)]

    def figures(self, folder: Path, prefix: str = "") -> list[tuple[str, str]]:
        from paramlens.report import plots

        fig, axes = plots.panels(3, 4.4, 3.5)
        for cls in self.classes:
            rows = self.rows(cls)
            idx = [r["layer"] for r in rows]
            axes[0].plot(idx, [r["cos_DT"] for r in rows], marker=".", label=f"{cls}: cos(D,T)")
            axes[0].plot(idx, [r["cos_DR"] for r in rows], marker="x", linestyle="--", label=f"{cls}: cos(D,R)")
            axes[1].plot(idx, [r["explained_variance"] for r in rows], marker=".", label=cls)
        axes[0].set_title("alignment of the update D with T and with R")
        axes[1].set_title("explained variance of D by T")
        axes[2].semilogy(range(len(self.kl)), [max(v, 1e-12) for v in self.kl], marker=".")
        axes[2].set_title(f"KL when D is replaced by T ({self.primary})")
        for ax in axes:
            ax.set_xlabel("layer")
        axes[0].legend(fontsize=6)
        axes[1].legend(fontsize=7)
        return [plots.save(fig, folder / f"{prefix}geometry_layers.png", "Per layer: cosine of the update with its tokenwise part T and with the "
                 "residual R; explained variance; output KL when the update is replaced by T.")]


def _angle(cos: Tensor) -> Tensor:
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def _split(n_windows: int, cfg: GeometryConfig) -> Tensor:
    """A boolean mask of held-out windows (seeded)."""
    g = torch.Generator().manual_seed(cfg.seed)
    held = torch.zeros(n_windows, dtype=torch.bool)
    k = max(1, round(cfg.held_out * n_windows))
    held[torch.randperm(n_windows, generator=g)[:k]] = True
    if held.all():
        raise ParamLensError(f"{n_windows} windows leave nothing to fit on once {cfg.held_out:.0%} are held out; give "
                             "more tokens")
    return held


@torch.no_grad()
def _logprobs_with_replaced(model: nn.Module, ids: Tensor, layer: int, replace) -> Tensor:
    """Next-token log-probabilities with block ``layer``'s output set to ``input + replace(input)``."""
    store: dict[str, Tensor] = {}

    def keep(h: Tensor) -> Tensor:
        store["h"] = h
        return h

    def update(_out: Tensor) -> Tensor:
        h = store["h"]
        return h + replace(h.reshape(-1, h.shape[-1])).reshape(h.shape).to(h.dtype)

    with patched(model, {f"blocks.{layer}.hook_resid_pre": keep, f"blocks.{layer}.hook_resid_post": update}):
        return F.log_softmax(model(input_ids=ids).logits.float(), dim=-1)


@dataclass
class _Fitted:
    """What the held-in pass leaves: per layer the ridge sums, a bounded token sample ``(h, D)`` for the MLP
    class, the fitted maps and the top-k subspace of ``T`` per class."""

    sums: list[RidgeSums]
    samples: list[tuple[Tensor, Tensor]]
    maps: TokenwiseMaps
    subspace: dict[tuple[int, str], Tensor]


def _fit(model: nn.Module, windows: Tensor, n_layers: int, cfg: GeometryConfig, progress: bool) -> _Fitted:
    sums: list[RidgeSums] = []
    parts: list[list[tuple[Tensor, Tensor]]] = [[] for _ in range(n_layers)]
    kept = 0
    batches = range(0, len(windows), cfg.batch)
    stream = stream_batches(model, windows, cfg.batch)
    for (_, h), _ in zip(stream, track(batches, description="fitting tokenwise maps", disable=not progress)):
        flat = h.flatten(1, 2)  # (L + 1, N, d)
        if not sums:
            sums = [RidgeSums(flat.shape[-1], flat.shape[-1]) for _ in range(n_layers)]
        take = min(len(flat[0]), cfg.mlp_tokens - kept) if "mlp" in cfg.classes else 0
        for layer in range(n_layers):
            delta = flat[layer + 1] - flat[layer]
            sums[layer].add(flat[layer], delta)
            if take > 0:
                parts[layer].append((flat[layer][:take], delta[:take]))
        kept += max(take, 0)
    samples = [(torch.cat([a for a, _ in p]), torch.cat([b for _, b in p])) if p else (None, None) for p in parts]
    affine = [_affine_maps(s, cfg) for s in sums]
    mlps = [_fit_mlp(x, y, cfg) if "mlp" in cfg.classes else None for x, y in samples]
    maps = TokenwiseMaps(affine, mlps)
    subspace = {}
    for layer in range(n_layers):
        for cls in cfg.classes:
            if cls == "mlp":
                t = maps.apply(layer, cls, samples[layer][0]).double()
                second = t.T @ t
            else:
                w = affine[layer][cls]
                second = w.T @ sums[layer].xx @ w
            vecs = torch.linalg.eigh(second)[1]
            subspace[layer, cls] = vecs[:, -min(cfg.top_k, vecs.shape[0]):].float()
    return _Fitted(sums, samples, maps, subspace)


STATS = ("cos_DT", "cos_DR", "angle_DT", "angle_DR", "eD", "eR", "D", "R", "var", "rel")


def _accumulate(a: dict[str, float], delta: Tensor, t: Tensor, centre: Tensor, u: Tensor) -> Tensor:
    """Add one batch's sums to ``a``; returns the per-token relative error ``|R| / |D|``."""
    r = delta - t
    cos_t = F.cosine_similarity(delta, t, dim=1)
    cos_r = F.cosine_similarity(delta, r, dim=1)
    rel = r.norm(dim=1) / delta.norm(dim=1).clamp_min(1e-12)
    for key, value in (("cos_DT", cos_t), ("cos_DR", cos_r), ("angle_DT", _angle(cos_t)), ("angle_DR", _angle(cos_r)),
                       ("eD", (delta @ u) ** 2), ("eR", (r @ u) ** 2), ("D", delta**2), ("R", r**2),
                       ("var", (delta - centre) ** 2), ("rel", rel)):
        a[key] += float(value.sum())
    return rel


def _row(layer: int, cls: str, a: dict[str, float], n: int) -> dict:
    return {"layer": layer, "class": cls, "cos_DT": a["cos_DT"] / n, "cos_DR": a["cos_DR"] / n,
            "angle_DT": a["angle_DT"] / n, "angle_DR": a["angle_DR"] / n, "energy_D_topk": a["eD"] / a["D"],
            "energy_R_topk": a["eR"] / max(a["R"], 1e-30), "explained_variance": 1 - a["R"] / max(a["var"], 1e-30),
            "rel_error": a["rel"] / n}


def layer_geometry(model: nn.Module, windows: Tensor, cfg: GeometryConfig | None = None, name: str = "model",
                   progress: bool = True) -> LayerGeometry:
    """Fit tokenwise maps of every layer's update on token ``windows`` ``(n, T)`` and measure the geometry."""
    cfg = cfg or GeometryConfig()
    held = _split(len(windows), cfg)
    require_tokens(model, int((~held).sum()) * windows.shape[1], "tokenwise maps fitted on the held-in windows")
    n_layers = len(blocks_of(model))
    fit = _fit(model, windows[~held], n_layers, cfg, progress)
    acc = {(layer, cls): dict.fromkeys(STATS, 0.0) for layer in range(n_layers) for cls in cfg.classes}
    centre = [(s.xy[-1] / s.n).float() for s in fit.sums]  # mean update (held-in), for explained variance
    kl_sum, errors, kls, n_eval = np.zeros(n_layers), [], [], 0
    batches = range(0, int(held.sum()), cfg.batch)
    stream = stream_batches(model, windows[held], cfg.batch)
    for (ids, h), _ in zip(stream, track(batches, description="evaluating", disable=not progress)):
        flat = h.flatten(1, 2)
        n_eval += flat.shape[1]
        with torch.no_grad():
            logits = getattr(model(input_ids=ids), "logits", None)  # encoders have none: no KL intervention
        for layer in range(n_layers):
            delta = flat[layer + 1] - flat[layer]
            for cls in cfg.classes:
                t = fit.maps.apply(layer, cls, flat[layer])
                rel = _accumulate(acc[layer, cls], delta, t, centre[layer], fit.subspace[layer, cls])
                if cls == cfg.primary:
                    errors.append(rel.view(ids.shape))
            if logits is None:
                continue
            base = F.log_softmax(logits.float(), dim=-1)
            replaced = _logprobs_with_replaced(model, ids, layer,
                                               lambda z, layer=layer: fit.maps.apply(layer, cfg.primary, z))
            kl = (base.exp() * (base - replaced)).sum(-1)  # (B, T)
            kl_sum[layer] += float(kl.sum())
            kls.append(kl)
    rows = [_row(layer, cls, acc[layer, cls], n_eval) for layer in range(n_layers) for cls in cfg.classes]
    if not kls:  # an encoder: no next-token distribution to perturb
        return LayerGeometry(name, list(cfg.classes), cfg.primary, rows, [float("nan")] * n_layers, float("nan"),
                             int(fit.sums[0].n), n_eval)
    err = torch.cat([e.flatten() for e in errors]).numpy()
    kl_all = torch.cat([k.flatten() for k in kls]).numpy()
    rho = float(spearmanr(err, kl_all)[0]) if len(err) > 2 else float("nan")
    return LayerGeometry(name, list(cfg.classes), cfg.primary, rows, (kl_sum / n_eval).tolist(), rho,
                         int(fit.sums[0].n), n_eval)
