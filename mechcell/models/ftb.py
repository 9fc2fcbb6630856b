"""f-Trajectory Balance (f-TB): a convex loss for every f-divergence, on- and off-policy (pure torch).

Method note: ../shared/methods/ftb.md (Fawkes & Hartford, ICML 2026). A generator q_θ is trained towards
p ∝ R through the per-sample log-ratio Δ = log q − log p ("model minus target"). For each divergence D_f the
loss ℓ_f(Δ) is convex, ℓ_f(0) = 0, ℓ_f''(0) = 1, its on-policy expected gradient is ∇D_f(p‖q_θ), and its
minimiser under any behaviour distribution that covers p is still q = p (so replay buffers and logged data
need no importance weights).

Why a registry: every divergence is one `Divergence` record (pointwise loss, gradient weight, DevGrad
offset); `ftb_loss`, the tests and the benchmarks all read `DIVERGENCES`, so adding one is one record.

Conventions: `delta` is Δ̃ = model minus target *without* log Z, shaped (..., G). The normaliser is either
learned (`log_z` is added, classic TB) or DevGrad: a per-group stop-gradient offset ĉ = argmin_c Σ ℓ(Δ̃ + c)
(an implicit baseline; the gradient weights of each group sum to zero). Tempering (small β, rewards on
[0, 1]) evaluates (1/β) ℓ(β·Δ̃ + c), which keeps gradients O(1) whatever β.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from mechcell.errors import InputError

__all__ = [
    "ALPHA_PRESETS",
    "DIVERGENCES",
    "AlphaSchedule",
    "ConditionalLogZ",
    "Divergence",
    "FTBConfig",
    "LearnedLogZ",
    "devgrad_offset",
    "ftb_loss",
    "ftb_pointwise",
    "ftb_weight",
    "tempered_alpha",
]

DivergenceName = Literal["alpha", "js", "tv"]
NormaliserName = Literal["devgrad", "learned"]
ReductionName = Literal["mean", "none"]

#: Named members of the α-family (the table of the method note). Lower α = more mass-covering.
ALPHA_PRESETS: dict[str, float] = {
    "neyman_chi2": -1.0,
    "forward_kl": 0.0,
    "hellinger": 0.5,
    "reverse_kl": 1.0,  # = trajectory balance / VarGrad
    "tb": 1.0,
    "pearson_chi2": 2.0,
}

_A_ZERO = 1e-8  # |α − 1| below which the α-member is the reverse-KL limit (1/a² would overflow)
_SERIES_X = 1e-2  # |(α − 1)Δ| below which ℓ_α uses its Taylor series (expm1(x) − x cancels)
_OFFSET_SERIES_A = 1e-4  # |α − 1| below which the DevGrad offset uses its cumulant expansion
_LOG2 = math.log(2.0)
_PI2_6 = math.pi**2 / 6.0


# ---------------------------------------------------------------------------------------------------------
# Grouping: DevGrad needs per-group reductions. Both layouts (last dimension, or integer labels) are turned
# into a flat vector plus a dense group index so each offset is written once, with scatter ops.
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Groups:
    """Flat view of `delta` with a dense group index (0..n_groups−1) per element."""

    values: Tensor  # (N,) float64, detached
    index: Tensor  # (N,) long
    n_groups: int
    counts: Tensor  # (n_groups,) float64


def _make_groups(delta: Tensor, groups: Tensor | None) -> _Groups:
    values = delta.detach().to(torch.float64).reshape(-1)
    if groups is None:
        if delta.ndim == 0:
            raise InputError("ftb_loss: delta must have at least one dimension (..., G); got a scalar")
        g = delta.shape[-1]
        m = values.numel() // max(g, 1)
        index = torch.arange(m, device=delta.device).repeat_interleave(g)
        n_groups = m
    else:
        if not isinstance(groups, Tensor):
            groups = torch.as_tensor(groups)
        if groups.shape != delta.shape:
            raise InputError(
                f"ftb_loss: groups has shape {tuple(groups.shape)} but delta has {tuple(delta.shape)}; "
                "pass one integer group label per sample"
            )
        if groups.dtype.is_floating_point or groups.dtype == torch.bool:
            raise InputError(f"ftb_loss: groups must hold integer labels, got dtype {groups.dtype}")
        _, index = torch.unique(groups.reshape(-1), return_inverse=True)
        n_groups = int(index.max().item()) + 1 if index.numel() else 0
    counts = torch.zeros(n_groups, dtype=torch.float64, device=delta.device)
    counts.index_add_(0, index, torch.ones_like(values))
    return _Groups(values=values, index=index, n_groups=n_groups, counts=counts)


def _group_sum(g: _Groups, x: Tensor) -> Tensor:
    out = torch.zeros(g.n_groups, dtype=x.dtype, device=x.device)
    return out.index_add_(0, g.index, x)


def _group_max(g: _Groups, x: Tensor) -> Tensor:
    out = torch.full((g.n_groups,), -math.inf, dtype=x.dtype, device=x.device)
    return out.scatter_reduce(0, g.index, x, reduce="amax", include_self=True)


def _group_logmeanexp(g: _Groups, x: Tensor) -> Tensor:
    mx = _group_max(g, x)
    s = _group_sum(g, torch.exp(x - mx[g.index]))
    return torch.log(s) + mx - torch.log(g.counts)


def _group_median(g: _Groups, x: Tensor) -> Tensor:
    """Midpoint of the two middle order statistics of each group (any point between them minimises Σ|·|)."""
    order = torch.argsort(x)
    order = order[torch.argsort(g.index[order], stable=True)]
    xs = x[order]
    counts = g.counts.to(torch.long)
    starts = torch.cumsum(counts, 0) - counts
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    return 0.5 * (xs[lo] + xs[hi])


# ---------------------------------------------------------------------------------------------------------
# The α-family: ℓ(Δ) = (e^{aΔ} − 1 − aΔ)/a², a = α − 1; ℓ' = (e^{aΔ} − 1)/a; a → 0 is Δ²/2 (TB).
# ---------------------------------------------------------------------------------------------------------


def _alpha_loss(delta: Tensor, alpha: float) -> Tensor:
    a = float(alpha) - 1.0
    if abs(a) < _A_ZERO:
        return 0.5 * delta * delta
    x = a * delta
    small = x.abs() < _SERIES_X
    # Both branches are fed safe inputs so the unused one never produces inf/NaN gradients.
    xs = torch.where(small, x, torch.zeros_like(x))
    series = 0.5 * delta * delta * (1.0 + xs / 3.0 + xs * xs / 12.0 + xs * xs * xs / 60.0)
    xe = torch.where(small, torch.ones_like(x), x)
    exact = (torch.expm1(xe) - xe) / (a * a)
    return torch.where(small, series, exact)


def _alpha_weight(delta: Tensor, alpha: float) -> Tensor:
    a = float(alpha) - 1.0
    if abs(a) < _A_ZERO:
        return delta.clone()
    return torch.expm1(a * delta) / a


def _alpha_offset(g: _Groups, alpha: float) -> Tensor:
    """ĉ = −(1/a) log mean exp(aΔ̃); for small a the cumulant expansion −mean − a·var/2 avoids cancellation."""
    a = float(alpha) - 1.0
    mean = _group_sum(g, g.values) / g.counts
    if abs(a) < _OFFSET_SERIES_A:
        centred = g.values - mean[g.index]
        var = _group_sum(g, centred * centred) / g.counts
        return -mean - 0.5 * a * var
    centred = g.values - mean[g.index]  # centring keeps a·Δ̃ small in the exponent
    return -mean - _group_logmeanexp(g, a * centred) / a


# ---------------------------------------------------------------------------------------------------------
# Jensen–Shannon (×4): ℓ' = 2 log 2 − 2 softplus(−Δ); ℓ(Δ) = 2Δ log 2 − 2 Li₂(−e^{−Δ}) − π²/6.
# ---------------------------------------------------------------------------------------------------------

# Bernoulli numbers B_0..B_22 (B_1 = −1/2, odd ones beyond vanish) for Li₂(z) = Σ B_n w^{n+1}/(n+1)!,
# w = −log(1 − z); for z ∈ [−1, 0] |w| ≤ log 2, so 12 terms reach float64 precision.
_BERNOULLI = {
    0: 1.0,
    1: -0.5,
    2: 1 / 6,
    4: -1 / 30,
    6: 1 / 42,
    8: -1 / 30,
    10: 5 / 66,
    12: -691 / 2730,
    14: 7 / 6,
    16: -3617 / 510,
    18: 43867 / 798,
    20: -174611 / 330,
    22: 854513 / 138,
}
_LI2_COEFS = [(n + 1, b / math.factorial(n + 1)) for n, b in _BERNOULLI.items()]


def _li2_neg_exp(s: Tensor) -> Tensor:
    """Li₂(−e^{−s}) for s ≥ 0 (float64), via the Bernoulli series in w = −log(1 + e^{−s}) ∈ [−log 2, 0)."""
    w = -torch.nn.functional.softplus(-s)
    out = torch.zeros_like(s)
    for power, coef in _LI2_COEFS:
        out = out + coef * w**power
    return out


def _js_weight(delta: Tensor, alpha: float = 1.0) -> Tensor:
    return 2.0 * _LOG2 - 2.0 * torch.nn.functional.softplus(-delta)


def _js_loss_value(delta: Tensor) -> Tensor:
    d = delta.detach().to(torch.float64)
    pos = d >= 0
    s = d.abs()
    li = _li2_neg_exp(s)
    # Δ ≥ 0: 2Δ log 2 − 2 Li₂(−e^{−Δ}) − π²/6; Δ < 0 uses the inversion Li₂(z) + Li₂(1/z) = −π²/6 − ½ log²(−z).
    val_pos = 2.0 * d * _LOG2 - 2.0 * li - _PI2_6
    val_neg = 2.0 * d * _LOG2 + d * d + 2.0 * li + _PI2_6
    return torch.where(pos, val_pos, val_neg).to(delta.dtype)


class _JSLoss(torch.autograd.Function):
    """Closed-form JS loss (dilogarithm) with the exact weight ℓ' as its (twice-differentiable) backward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, delta: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(delta)
        return _js_loss_value(delta)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (delta,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * _js_weight(delta)


def _js_loss(delta: Tensor, alpha: float = 1.0) -> Tensor:
    return _JSLoss.apply(delta)


def _js_offset(g: _Groups, alpha: float = 1.0) -> Tensor:
    """Root of h(c) = Σ_i ℓ'(Δ̃_i + c): h is increasing and concave, so Newton from any start overshoots to
    the left once and then climbs monotonically to the root."""
    c = -_group_sum(g, g.values) / g.counts
    for _ in range(100):
        z = g.values + c[g.index]
        h = _group_sum(g, 2.0 * _LOG2 - 2.0 * torch.nn.functional.softplus(-z))
        dh = _group_sum(g, 2.0 * torch.sigmoid(-z))
        step = h / dh
        c = c - step
        if bool((step.abs() <= 1e-12 * (1.0 + c.abs())).all()):
            break
    return c


# ---------------------------------------------------------------------------------------------------------
# Total variation: ℓ = ½|Δ|, ℓ' = ½ sign(Δ); DevGrad offset = −median.
# ---------------------------------------------------------------------------------------------------------


def _tv_loss(delta: Tensor, alpha: float = 1.0) -> Tensor:
    return 0.5 * delta.abs()


def _tv_weight(delta: Tensor, alpha: float = 1.0) -> Tensor:
    return 0.5 * torch.sign(delta)


def _tv_offset(g: _Groups, alpha: float = 1.0) -> Tensor:
    return -_group_median(g, g.values)


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """One member of the f-TB family: ℓ(Δ), ℓ'(Δ) and the DevGrad offset argmin_c Σ ℓ(Δ̃ + c) per group."""

    name: str
    description: str
    loss: Callable[[Tensor, float], Tensor]
    weight: Callable[[Tensor, float], Tensor]
    offset: Callable[[_Groups, float], Tensor]
    uses_alpha: bool


DIVERGENCES: dict[str, Divergence] = {
    "alpha": Divergence(
        name="alpha",
        description="α-divergence: α=0 forward KL (mass-covering), ½ Hellinger, 1 reverse KL = TB, 2 Pearson",
        loss=_alpha_loss,
        weight=_alpha_weight,
        offset=_alpha_offset,
        uses_alpha=True,
    ),
    "js": Divergence(
        name="js",
        description="Jensen–Shannon (×4): weights bounded above by 2 log 2",
        loss=_js_loss,
        weight=_js_weight,
        offset=_js_offset,
        uses_alpha=False,
    ),
    "tv": Divergence(
        name="tv",
        description="total variation: ½|Δ|, a median/MAD fit, robust to outlying log-ratios",
        loss=_tv_loss,
        weight=_tv_weight,
        offset=_tv_offset,
        uses_alpha=False,
    ),
}


def _divergence(name: str) -> Divergence:
    try:
        return DIVERGENCES[name]
    except KeyError:
        raise InputError(f"unknown f-TB divergence {name!r} (have: {', '.join(DIVERGENCES)})") from None


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise InputError(f"f-TB alpha must be finite, got {alpha!r}")
    return alpha


def _check_beta(beta: float | None) -> float | None:
    if beta is None:
        return None
    beta = float(beta)
    if not (math.isfinite(beta) and beta > 0):
        raise InputError(f"f-TB temperature beta must be a positive finite number, got {beta!r}")
    return beta


# ---------------------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------------------


def tempered_alpha(alpha: float, beta: float) -> float:
    """α' = 1 + β(α − 1): the tempered α-loss (1/β)ℓ_α(βΔ) equals β·ℓ_α'(Δ) — tempering pulls towards TB."""
    return 1.0 + float(beta) * (float(alpha) - 1.0)


def ftb_pointwise(delta: Tensor, *, divergence: DivergenceName = "alpha", alpha: float = 1.0) -> Tensor:
    """ℓ_f(Δ) elementwise, with no normaliser: Δ must already include log Z (or be exact)."""
    return _divergence(divergence).loss(delta, _check_alpha(alpha))


def ftb_weight(delta: Tensor, *, divergence: DivergenceName = "alpha", alpha: float = 1.0) -> Tensor:
    """ℓ_f'(Δ) elementwise: the weight multiplying ∇Δ in the gradient (Δ for TB)."""
    return _divergence(divergence).weight(delta, _check_alpha(alpha))


def devgrad_offset(
    delta: Tensor,
    *,
    divergence: DivergenceName = "alpha",
    alpha: float = 1.0,
    groups: Tensor | None = None,
) -> Tensor:
    """DevGrad's ĉ = argmin_c Σ_{i∈group} ℓ_f(Δ̃_i + c), broadcast back to `delta`'s shape (no gradient).

    Groups are the last dimension (one per leading index) unless `groups` gives integer labels per sample.
    Computed in float64 and returned in `delta`'s dtype.
    """
    div = _divergence(divergence)
    g = _make_groups(delta, groups)
    with torch.no_grad():
        c = div.offset(g, _check_alpha(alpha))
    return c[g.index].reshape(delta.shape).to(delta.dtype)


def ftb_loss(
    delta: Tensor,
    *,
    divergence: DivergenceName = "alpha",
    alpha: float = 1.0,
    normaliser: NormaliserName = "devgrad",
    log_z: Tensor | float | None = None,
    groups: Tensor | None = None,
    beta: float | None = None,
    reduction: ReductionName = "mean",
) -> Tensor:
    """The f-TB loss of a batch of log-ratios.

    delta: Δ̃ = model minus target without log Z, shaped (..., G) — e.g. Σ log P_F − Σ log P_B − log R for
        GFlowNet trajectories, or log π_θ − log π_ref − r/β for a language model.
    normaliser: "devgrad" (per-group stop-gradient offset, no parameter; groups = last dimension unless
        `groups` labels are given) or "learned" (`log_z`, a scalar or a tensor broadcastable to `delta`,
        e.g. a conditional head's output, is added and receives gradient).
    beta: tempering. The residual becomes d = β(Δ̃ + log Z) (learned) or βΔ̃ + ĉ (DevGrad on d's scale) and
        the loss (1/β)ℓ_f(d); use it when rewards are on [0, 1] and β is small.
    reduction: "mean" over every element, or "none" (same shape as `delta`).
    """
    if not isinstance(delta, Tensor):
        raise InputError(f"ftb_loss: delta must be a torch.Tensor, got {type(delta).__name__}")
    if not delta.dtype.is_floating_point:
        raise InputError(f"ftb_loss: delta must be floating point, got dtype {delta.dtype}")
    if delta.numel() == 0:
        raise InputError("ftb_loss: delta is empty")
    div = _divergence(divergence)
    alpha = _check_alpha(alpha)
    beta = _check_beta(beta)
    scale = 1.0 if beta is None else beta

    if normaliser == "learned":
        if log_z is None:
            raise InputError("ftb_loss: normaliser='learned' needs log_z (a scalar or a conditional head's output)")
        if groups is not None:
            raise InputError("ftb_loss: groups only apply to normaliser='devgrad'")
        resid = scale * (delta + log_z)
    elif normaliser == "devgrad":
        if log_z is not None:
            raise InputError("ftb_loss: log_z is only used with normaliser='learned' (DevGrad estimates it)")
        scaled = scale * delta
        resid = scaled + devgrad_offset(scaled, divergence=divergence, alpha=alpha, groups=groups)
    else:
        raise InputError(f"ftb_loss: unknown normaliser {normaliser!r} (have: devgrad, learned)")

    loss = div.loss(resid, alpha)
    if beta is not None:
        loss = loss / beta
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise InputError(f"ftb_loss: unknown reduction {reduction!r} (have: mean, none)")


# ---------------------------------------------------------------------------------------------------------
# Learned normalisers and the α schedule
# ---------------------------------------------------------------------------------------------------------


class LearnedLogZ(nn.Module):
    """A scalar log Z (classic TB). Give it a ~100× larger learning rate than the policy."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.log_z = nn.Parameter(torch.tensor(float(init)))

    def forward(self) -> Tensor:
        return self.log_z


class ConditionalLogZ(nn.Module):
    """log Z_φ(x) for conditional models: a small MLP from query features (B, F) to (B,)."""

    def __init__(self, in_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)


class AlphaSchedule(BaseModel):
    """α as a function of the optimisation step: hold `start` for `warmup` steps, then move to `end` over
    `steps` steps (linear or cosine), then hold `end`. Annealing from < 1 (find modes) to > 1 (sharpen) gave
    the best diversity–reward trade-off in the paper."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = 1
    start: float = 0.5
    end: float = 1.2
    steps: int = Field(default=1000, ge=1)
    warmup: int = Field(default=0, ge=0)
    kind: Literal["linear", "cosine"] = "linear"

    def __call__(self, step: int) -> float:
        t = min(max(step - self.warmup, 0) / self.steps, 1.0)
        if self.kind == "cosine":
            t = 0.5 * (1.0 - math.cos(math.pi * t))
        return self.start + (self.end - self.start) * t


class FTBConfig(BaseModel):
    """Everything that defines an f-TB objective, stored with a checkpoint; `loss()` applies it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = 1
    divergence: DivergenceName = "alpha"
    alpha: float = 1.0
    alpha_schedule: AlphaSchedule | None = None
    normaliser: NormaliserName = "devgrad"
    beta: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _schedule_needs_alpha_family(self) -> FTBConfig:
        if self.alpha_schedule is not None and self.divergence != "alpha":
            raise ValueError(f"an alpha_schedule only applies to divergence='alpha', not {self.divergence!r}")
        return self

    def alpha_at(self, step: int) -> float:
        return self.alpha_schedule(step) if self.alpha_schedule is not None else self.alpha

    def loss(
        self,
        delta: Tensor,
        *,
        step: int = 0,
        log_z: Tensor | float | None = None,
        groups: Tensor | None = None,
        reduction: ReductionName = "mean",
    ) -> Tensor:
        return ftb_loss(
            delta,
            divergence=self.divergence,
            alpha=self.alpha_at(step),
            normaliser=self.normaliser,
            log_z=log_z,
            groups=groups,
            beta=self.beta,
            reduction=reduction,
        )
