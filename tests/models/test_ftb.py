"""The five checks of ../shared/methods/ftb.md, plus the loss's numerics, API contract and schedule.

Divergences are checked against hand-written f-generators (D_f(p‖q) = Σ_x q(x) f(p(x)/q(x))), not against the
implementation's own formulas, so a wrong ℓ or ℓ' in `mechcell.models.ftb` fails here.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import minimize_scalar

from mechcell.errors import InputError
from mechcell.models.ftb import (
    ALPHA_PRESETS,
    DIVERGENCES,
    AlphaSchedule,
    ConditionalLogZ,
    FTBConfig,
    LearnedLogZ,
    devgrad_offset,
    ftb_loss,
    ftb_pointwise,
    ftb_weight,
    tempered_alpha,
)
from mechcell.models.gfn import HypergridRunConfig, run_hypergrid

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F64 = torch.float64  # statistics and identities in float64; the default dtype is left alone


# f-generators with f(1) = 0, f''(1) = 1 (the ×4 / ×2 scalings of the method note), written independently.
def _f_forward_kl(t: torch.Tensor) -> torch.Tensor:
    return t * torch.log(t)


def _f_hellinger(t: torch.Tensor) -> torch.Tensor:
    return 2.0 * (torch.sqrt(t) - 1.0) ** 2


def _f_reverse_kl(t: torch.Tensor) -> torch.Tensor:
    return -torch.log(t)


def _f_pearson(t: torch.Tensor) -> torch.Tensor:  # α = 2: ½ Σ (p − q)² / p
    return 0.5 * (t - 1.0) ** 2 / t


def _f_neyman(t: torch.Tensor) -> torch.Tensor:  # α = −1: ½ Σ (p − q)² / q
    return 0.5 * (t - 1.0) ** 2


def _f_js(t: torch.Tensor) -> torch.Tensor:
    return 2.0 * (t * torch.log(t) - (1.0 + t) * torch.log((1.0 + t) / 2.0))


def _f_tv(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * (t - 1.0).abs()


MEMBERS = [
    pytest.param("alpha", 0.0, _f_forward_kl, id="forward_kl"),
    pytest.param("alpha", 0.5, _f_hellinger, id="hellinger"),
    pytest.param("alpha", 1.0, _f_reverse_kl, id="reverse_kl"),
    pytest.param("alpha", 2.0, _f_pearson, id="pearson"),
    pytest.param("alpha", -1.0, _f_neyman, id="neyman"),
    pytest.param("js", 1.0, _f_js, id="js"),
    pytest.param("tv", 1.0, _f_tv, id="tv"),
]


def _categorical(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(k, generator=g, dtype=torch.float64)
    p = torch.softmax(1.5 * torch.randn(k, generator=g, dtype=torch.float64), 0)
    return theta, p


# ------------------------------------------------------------------------------------------------ check 1


@pytest.mark.parametrize(("divergence", "alpha", "f"), MEMBERS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_policy_expected_gradient_is_divergence_gradient(divergence, alpha, f, seed):
    """Check 1: with exact expectations over a K-way categorical, ∇_θ Σ_x sg(q(x)) ℓ_f(Δ(x)) = ∇_θ D_f(p‖q_θ).

    Deterministic identity (no sampling): tolerance is float64 round-off. The target is unnormalised
    (R = 7.3 p) and the learned log Z set to its true value log 7.3, as at a TB optimum of Z."""
    theta, p = _categorical(9, seed)
    log_r = torch.log(p) + math.log(7.3)

    th1 = theta.clone().requires_grad_(True)
    q = torch.softmax(th1, 0)
    loss = ftb_loss(
        torch.log(q) - log_r,
        divergence=divergence,
        alpha=alpha,
        normaliser="learned",
        log_z=math.log(7.3),
        reduction="none",
    )
    (q.detach() * loss).sum().backward()

    th2 = theta.clone().requires_grad_(True)
    q2 = torch.softmax(th2, 0)
    (q2 * f(p / q2)).sum().backward()

    assert th1.grad is not None and th2.grad is not None
    assert torch.linalg.vector_norm(th2.grad) > 1e-3  # a non-trivial gradient, so equality means something
    torch.testing.assert_close(th1.grad, th2.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_devgrad_exact_expectation_is_parallel_to_divergence_gradient(alpha):
    """For the α-family a wrong normaliser rescales the weights: ℓ'(Δ + δ) = e^{aδ}ℓ'(Δ) + const, and
    Σ q ∇log q = 0 kills the constant. So with an arbitrary log Z the on-policy gradient stays parallel
    (positive cosine 1) to ∇D_f — why DevGrad's batch estimate of log Z is harmless on-policy."""
    theta, p = _categorical(8, 3)
    th1 = theta.clone().requires_grad_(True)
    q = torch.softmax(th1, 0)
    loss = ftb_loss(torch.log(q) - torch.log(p), alpha=alpha, normaliser="learned", log_z=1.7, reduction="none")
    (q.detach() * loss).sum().backward()
    th2 = theta.clone().requires_grad_(True)
    q2 = torch.softmax(th2, 0)
    f = {0.0: _f_forward_kl, 0.5: _f_hellinger, 2.0: _f_pearson}[alpha]
    (q2 * f(p / q2)).sum().backward()
    cos = torch.nn.functional.cosine_similarity(th1.grad, th2.grad, dim=0)
    assert cos.item() == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------ check 2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_alpha_to_one_is_continuous(dtype):
    """Check 2: ℓ_α and ℓ_α' tend to TB's Δ²/2 and Δ as α → 1, from both sides, without cancellation blow-up.

    Bound: |ℓ_α − Δ²/2| ≤ |α−1|·|Δ|³·e^{|α−1||Δ|}/6 (Taylor remainder), plus dtype round-off."""
    delta = torch.linspace(-8.0, 8.0, 161, dtype=dtype)
    eps = torch.finfo(dtype).eps
    for gap in [1e-1, 1e-2, 1e-3, 1e-5, 1e-7, 1e-9, 1e-12]:
        for alpha in (1.0 + gap, 1.0 - gap):
            d = delta.clone().requires_grad_(True)
            loss = ftb_pointwise(d, alpha=alpha)
            loss.sum().backward()
            bound = gap * delta.abs() ** 3 * math.exp(gap * 8) / 6 + 64 * eps * (1 + delta**2)
            assert torch.all((loss.detach() - 0.5 * delta**2).abs() <= bound)
            gbound = gap * delta**2 * math.exp(gap * 8) / 2 + 64 * eps * (1 + delta.abs())
            assert torch.all((d.grad - delta).abs() <= gbound)
            assert torch.all((ftb_weight(delta, alpha=alpha) - delta).abs() <= gbound)


@pytest.mark.parametrize(
    ("divergence", "alpha"),
    [("alpha", a) for a in (-1.0, 0.0, 0.5, 1.0, 1.3, 2.0)]
    + [
        ("js", 1.0),
        ("tv", 1.0),
    ],
)
def test_autograd_of_loss_equals_weight(divergence, alpha):
    """ℓ' from autograd of ℓ matches the closed-form weight, across the series/exact branch boundary."""
    delta = torch.cat(
        [
            torch.linspace(-12, 12, 241, dtype=F64),
            torch.tensor([-0.0199, -0.0201, 0.0199, 0.0201, 1e-6, -1e-6], dtype=F64),
        ]
    )
    delta = delta[delta != 0]  # TV's sign is not differentiable at 0
    d = delta.clone().requires_grad_(True)
    ftb_pointwise(d, divergence=divergence, alpha=alpha).sum().backward()
    torch.testing.assert_close(d.grad, ftb_weight(delta, divergence=divergence, alpha=alpha), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(("divergence", "alpha"), [("alpha", a) for a in (-1.0, 0.0, 0.5, 1.3, 2.0)] + [("js", 1.0)])
def test_loss_is_integral_of_weight(divergence, alpha):
    """ℓ(Δ) = ∫₀^Δ ℓ'(t) dt (numerical quadrature), ℓ(0) = 0 and ℓ''(0) = 1 for every smooth member."""
    for x in [-9.0, -2.5, -0.3, 0.0, 0.004, 0.7, 3.0, 11.0]:
        ref = quad(
            lambda t: float(ftb_weight(torch.tensor(t, dtype=F64), divergence=divergence, alpha=alpha)),
            0.0,
            x,
            epsabs=1e-13,
            epsrel=1e-12,
        )[0]
        got = float(ftb_pointwise(torch.tensor(x, dtype=F64), divergence=divergence, alpha=alpha))
        assert got == pytest.approx(ref, rel=1e-9, abs=1e-12)
    h = 1e-4
    w = ftb_weight(torch.tensor([-h, h], dtype=F64), divergence=divergence, alpha=alpha)
    assert float((w[1] - w[0]) / (2 * h)) == pytest.approx(1.0, abs=1e-6)


def test_weights_match_method_note_table():
    """The table of the method note: ℓ' for the named α members, JS and TV, at a few Δ."""
    d = torch.tensor([-3.0, -0.5, 0.2, 2.5], dtype=F64)
    table = {
        ALPHA_PRESETS["neyman_chi2"]: (1 - torch.exp(-2 * d)) / 2,
        ALPHA_PRESETS["forward_kl"]: 1 - torch.exp(-d),
        ALPHA_PRESETS["hellinger"]: 2 * (1 - torch.exp(-d / 2)),
        ALPHA_PRESETS["tb"]: d,
        ALPHA_PRESETS["pearson_chi2"]: torch.exp(d) - 1,
    }
    for alpha, want in table.items():
        torch.testing.assert_close(ftb_weight(d, alpha=alpha), want)
    torch.testing.assert_close(ftb_weight(d, divergence="js"), 2 * math.log(2) - 2 * torch.nn.functional.softplus(-d))
    torch.testing.assert_close(ftb_weight(d, divergence="tv"), 0.5 * torch.sign(d))
    torch.testing.assert_close(ftb_pointwise(d, alpha=0.0), torch.exp(-d) + d - 1)
    torch.testing.assert_close(ftb_pointwise(d, alpha=2.0), torch.exp(d) - 1 - d)


# ------------------------------------------------------------------------------------------------ check 3

DEVGRAD_MEMBERS = [("alpha", a) for a in (0.0, 0.5, 1.0, 1.0 + 1e-6, 2.0, -1.0)] + [("js", 1.0), ("tv", 1.0)]


@pytest.mark.parametrize(("divergence", "alpha"), DEVGRAD_MEMBERS)
def test_devgrad_offset_is_the_argmin(divergence, alpha):
    """ĉ = argmin_c Σ ℓ(Δ̃ + c), checked by a generic 1-D minimiser on each group."""
    g = torch.Generator().manual_seed(11)
    delta = 3.0 * torch.randn(4, 33, generator=g, dtype=F64)  # odd group size: TV's median is unique
    c = devgrad_offset(delta, divergence=divergence, alpha=alpha)
    assert c.shape == delta.shape
    for row in range(4):
        obj = lambda s, r=row: float(ftb_pointwise(delta[r] + s, divergence=divergence, alpha=alpha).sum())  # noqa: E731
        res = minimize_scalar(obj, bracket=(-20.0, 20.0), tol=1e-12)
        assert obj(float(c[row, 0])) <= obj(res.x) + 1e-9
        assert torch.all(c[row] == c[row, 0])


@pytest.mark.parametrize(("divergence", "alpha"), DEVGRAD_MEMBERS)
@pytest.mark.parametrize("layout", ["last_dim", "labels"])
def test_devgrad_weights_sum_to_zero_and_reward_shift_invariance(divergence, alpha, layout):
    """Check 3: DevGrad weights ℓ'(Δ̃ + ĉ) sum to zero in every group, and adding a constant to the log-rewards
    of a group (a different constant per group) leaves the gradient of the loss unchanged."""
    gen = torch.Generator().manual_seed(5)
    n_groups, size, n_feat = 5, 41, 6
    x = torch.randn(n_groups, size, n_feat, generator=gen, dtype=F64)
    theta = (0.5 * torch.randn(n_feat, generator=gen, dtype=F64)).requires_grad_(True)
    log_r = 2.0 * torch.randn(n_groups, size, generator=gen, dtype=F64)
    shift = 10.0 * torch.randn(n_groups, 1, generator=gen, dtype=F64)

    def grad_for(lr: torch.Tensor) -> torch.Tensor:
        delta = x @ theta - lr
        if layout == "labels":
            perm = torch.randperm(n_groups * size, generator=torch.Generator().manual_seed(1))
            labels = torch.arange(n_groups).repeat_interleave(size)[perm] * 7 + 3  # arbitrary label values
            loss = ftb_loss(delta.reshape(-1)[perm], divergence=divergence, alpha=alpha, groups=labels)
        else:
            loss = ftb_loss(delta, divergence=divergence, alpha=alpha)
        (gr,) = torch.autograd.grad(loss, theta)
        return gr

    delta = (x @ theta - log_r).detach()
    w = ftb_weight(
        delta + devgrad_offset(delta, divergence=divergence, alpha=alpha), divergence=divergence, alpha=alpha
    )
    scale = w.abs().sum(dim=1)
    assert torch.all(scale > 0)
    assert torch.all(w.sum(dim=1).abs() <= 1e-10 * scale)

    g0, g1 = grad_for(log_r), grad_for(log_r + shift)
    assert torch.linalg.vector_norm(g0) > 1e-6
    torch.testing.assert_close(g0, g1, rtol=1e-8, atol=1e-10)


def test_label_groups_equal_last_dim_groups():
    gen = torch.Generator().manual_seed(2)
    delta = torch.randn(3, 10, generator=gen, dtype=F64)
    labels = torch.arange(3).unsqueeze(1).expand(3, 10)
    for div, alpha in DEVGRAD_MEMBERS:
        a = ftb_loss(delta, divergence=div, alpha=alpha, reduction="none")
        b = ftb_loss(delta, divergence=div, alpha=alpha, groups=labels, reduction="none")
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0, 3.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_devgrad_weights_bounded_where_learned_log_z_overflows(alpha, dtype):
    """DevGrad bounds the α-weights by max(n−1, 1)/|α−1|: log-ratios spanning ±2000 (an untrained GFlowNet)
    give finite losses and gradients, while the same deltas with log Z = 0 overflow."""
    delta = torch.linspace(-2000.0, 2000.0, 64, dtype=dtype).requires_grad_(True)
    loss = ftb_loss(delta, alpha=alpha)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(delta.grad))
    w = ftb_weight(delta.detach() + devgrad_offset(delta, alpha=alpha), alpha=alpha)
    assert torch.all(w.abs() <= (63 / abs(alpha - 1)) * (1 + 1e-4))
    raw = ftb_loss(delta.detach(), alpha=alpha, normaliser="learned", log_z=0.0)
    assert not torch.isfinite(raw)


# ------------------------------------------------------------------------------------------------ check 4


@pytest.mark.parametrize(
    ("divergence", "alpha", "normaliser"),
    [
        ("alpha", 0.0, "devgrad"),
        ("alpha", 0.5, "devgrad"),
        ("alpha", 1.0, "devgrad"),
        ("alpha", 2.0, "devgrad"),
        ("js", 1.0, "devgrad"),
        ("tv", 1.0, "devgrad"),
        ("alpha", 0.5, "learned"),
        ("alpha", 1.0, "learned"),
    ],
)
def test_off_policy_training_converges_to_target(divergence, alpha, normaliser):
    """Check 4: minimising f-TB on samples from a fixed behaviour μ ≠ p (supp p ⊆ supp μ) drives q_θ to p.

    H0 (what passing rules out): training converges to something other than p, e.g. to μ. Unit: i.i.d.
    draws x ~ μ, 64 per step, seeded; Adam with a cosine-decayed step. Pass: TV(q, p) < 0.01 while
    TV(μ, p) > 0.3. Simulated over 10 seeds (p, μ, draws and init reseeded) when written: max TV(q, p) was
    6e-4 for the TV loss and < 1e-9 for every other member (at q = p every residual is 0, so no SGD noise)."""
    k = 10
    gen = torch.Generator().manual_seed(3)
    p = torch.softmax(1.2 * torch.randn(k, generator=gen, dtype=F64), 0)
    mu = 0.7 * torch.softmax(-1.5 * torch.log(p), 0) + 0.3 / k  # anti-correlated with p, full support
    assert 0.5 * (mu - p).abs().sum() > 0.3
    log_r = torch.log(p) + 2.3  # unnormalised: log Z = 2.3

    torch.manual_seed(0)
    theta = torch.zeros(k, dtype=F64, requires_grad=True)
    log_z = LearnedLogZ().double()
    params = [{"params": [theta], "lr": 0.05}]
    if normaliser == "learned":
        params.append({"params": log_z.parameters(), "lr": 0.1})
    opt = torch.optim.Adam(params)
    steps = 1500
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        x = torch.multinomial(mu, 64, replacement=True, generator=gen)
        delta = torch.log_softmax(theta, 0)[x] - log_r[x]
        kw = {"log_z": log_z()} if normaliser == "learned" else {}
        loss = ftb_loss(delta, divergence=divergence, alpha=alpha, normaliser=normaliser, **kw)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    q = torch.softmax(theta.detach(), 0)
    assert 0.5 * (q - p).abs().sum() < 0.01
    if normaliser == "learned":
        assert float(log_z().detach()) == pytest.approx(2.3, abs=0.05)  # log Z + log p − (log p + 2.3) = 0


# ------------------------------------------------------------------------------------------------ check 5


def test_hypergrid_smoke_all_modes_found_and_l1_falls():
    """Check 5 (small): 2-D H=8 hypergrid, α=½ on-policy and TB off-policy (replay + ε) — the exact L1 to
    the target falls well below its starting value and the training trajectories hit all 4 modes.

    Seeded and deterministic; the full α ∈ {0, ½, 1, 2} comparison is benchmarks/bench_ftb_hypergrid.py."""
    for ftb, off in [(FTBConfig(alpha=0.5), False), (FTBConfig(alpha=1.0), True)]:
        cfg = HypergridRunConfig(
            height=8,
            r0=1e-2,
            ftb=ftb,
            off_policy=off,
            batch_size=16,
            n_iterations=300,
            eval_every=100,
            hidden=64,
            lr=3e-3,
            seed=0,
        )
        res = run_hypergrid(cfg)
        assert res.n_trajectories == 300 * 16
        assert res.l1[0] > 1.0
        assert res.l1[-1] < 0.35 * res.l1[0]
        assert res.trajectories_to_all_modes is not None
        assert res.modes_held == 4
        assert sum(res.target_mode_mass) == pytest.approx(4 * 2.51 / sum_reward(8), rel=1e-12)


def sum_reward(h: int) -> float:
    """Z of the 2-D hypergrid from its definition, with float arithmetic (independent of the env's integer form)."""
    z = 0.0
    for i in range(h):
        for j in range(h):
            a = [abs(c / (h - 1) - 0.5) for c in (i, j)]
            z += 1e-2 + 0.5 * all(0.25 < v <= 0.5 for v in a) + 2.0 * all(0.3 < v < 0.4 for v in a)
    return z


# ------------------------------------------------------------------------------------------------ tempering


@pytest.mark.parametrize("normaliser", ["devgrad", "learned"])
@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 0.1), (0.5, 0.02), (2.0, 0.3)])
def test_tempered_alpha_loss_is_untempered_alpha_prime(alpha, beta, normaliser):
    """(1/β) ℓ_α(βΔ) = β ℓ_α'(Δ) with α' = 1 + β(α − 1): tempering pulls every α-member towards TB."""
    gen = torch.Generator().manual_seed(4)
    delta = 5.0 * torch.randn(2, 16, generator=gen, dtype=F64)
    kw = {"log_z": 0.37} if normaliser == "learned" else {}
    a = ftb_loss(delta, alpha=alpha, beta=beta, normaliser=normaliser, reduction="none", **kw)
    b = ftb_loss(delta, alpha=tempered_alpha(alpha, beta), normaliser=normaliser, reduction="none", **kw)
    torch.testing.assert_close(a, beta * b)


def test_tempered_gradient_is_order_one_for_small_beta():
    """LLM setting: rewards on [0, 1], β = 1e-3, Δ = log π − log π_ref − r/β. The tempered loss keeps the
    gradient with respect to log π O(1) whatever β."""
    r = torch.tensor([0.0, 0.2, 0.9, 1.0, 0.5, 0.1, 0.7, 0.3], dtype=F64)
    logratio = torch.zeros(8, dtype=F64, requires_grad=True)
    beta = 1e-3
    for div, alpha in [("alpha", 0.0), ("alpha", 2.0), ("js", 1.0)]:
        loss = ftb_loss(logratio - r / beta, divergence=div, alpha=alpha, beta=beta)
        (gr,) = torch.autograd.grad(loss, logratio)
        assert torch.all(torch.isfinite(gr))
        assert 1e-3 < float(gr.abs().max()) < 10.0
        assert float(gr[3]) < 0 < float(gr[0])  # push up high reward, down low reward


# ------------------------------------------------------------------------------------------------ contract


def test_bad_input_raises_typed_errors():
    d = torch.randn(4, 5)
    with pytest.raises(InputError, match="unknown f-TB divergence 'kl'"):
        ftb_loss(d, divergence="kl")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="needs log_z"):
        ftb_loss(d, normaliser="learned")
    with pytest.raises(InputError, match="only used with normaliser='learned'"):
        ftb_loss(d, log_z=0.0)
    with pytest.raises(InputError, match="groups has shape"):
        ftb_loss(d, groups=torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="integer labels"):
        ftb_loss(d, groups=torch.zeros(4, 5))
    with pytest.raises(InputError, match="beta"):
        ftb_loss(d, beta=0.0)
    with pytest.raises(InputError, match="alpha must be finite"):
        ftb_loss(d, alpha=math.nan)
    with pytest.raises(InputError, match="unknown reduction"):
        ftb_loss(d, reduction="sum")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="empty"):
        ftb_loss(torch.zeros(0))
    with pytest.raises(InputError, match="floating point"):
        ftb_loss(torch.zeros(3, dtype=torch.long))


def test_registry_lists_every_member_with_a_description():
    assert set(DIVERGENCES) == {"alpha", "js", "tv"}
    assert all(d.description and d.name == k for k, d in DIVERGENCES.items())


def test_alpha_schedule_anneals_and_config_applies_it():
    s = AlphaSchedule(start=0.5, end=1.2, steps=100, warmup=10)
    vals = [s(t) for t in range(0, 130)]
    assert vals[0] == vals[10] == 0.5
    assert vals[110] == vals[129] == pytest.approx(1.2)
    assert all(b >= a for a, b in zip(vals, vals[1:], strict=False))
    cos = AlphaSchedule(start=0.0, end=2.0, steps=10, kind="cosine")
    assert cos(5) == pytest.approx(1.0) and cos(1) < 0.2

    cfg = FTBConfig(alpha_schedule=s)
    assert FTBConfig.model_validate_json(cfg.model_dump_json()) == cfg
    delta = torch.randn(3, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    for step in (0, 60, 500):
        torch.testing.assert_close(cfg.loss(delta, step=step), ftb_loss(delta, alpha=s(step)))
    with pytest.raises(ValueError, match="alpha_schedule only applies"):
        FTBConfig(divergence="js", alpha_schedule=s)


def test_conditional_log_z_head_learns_per_query_normaliser():
    """A conditional head log Z_φ(x) recovers different normalisers for different queries (TB, exact data)."""
    torch.manual_seed(0)
    feats = torch.eye(3)
    true_log_z = torch.tensor([-1.0, 0.5, 2.0])
    head = ConditionalLogZ(3, hidden=16)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    delta = -true_log_z[:, None].expand(3, 12)  # exact data: log q − log R = −log Z for every sample
    for _ in range(400):
        loss = ftb_loss(delta, normaliser="learned", log_z=head(feats)[:, None])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(head(feats).detach(), true_log_z, atol=1e-3, rtol=0)
