"""GFlowNet plumbing: the hypergrid, the exact terminal distribution, the sampler, log-probabilities, replay.

The exact terminal distribution is checked against brute-force enumeration of every trajectory, and the
sampler against that distribution with a goodness-of-fit test whose power is shown on a wrong target.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chisquare

from mechcell.errors import InputError
from mechcell.models.ftb import FTBConfig
from mechcell.models.gfn import (
    DiscretePolicy,
    Hypergrid,
    HypergridRunConfig,
    MLPEstimator,
    ReplayBuffer,
    TabulatedPolicy,
    Trajectories,
    exact_terminal_distribution,
    run_hypergrid,
    sample_trajectories,
    trajectory_delta,
    trajectory_log_pf,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_policy(env: Hypergrid, seed: int, scale: float = 1.5) -> DiscretePolicy:
    """A seeded float64 policy far from uniform (float64 so exact comparisons are not limited by float32)."""
    torch.manual_seed(seed)
    policy = DiscretePolicy(env, MLPEstimator(env.ndim * env.height, env.n_actions, hidden=32).double())
    with torch.no_grad():
        for p in policy.parameters():
            p.mul_(scale)
    return policy


class _EpsilonMixed:
    """The ε-uniform exploration policy written out explicitly (to get its exact terminal distribution)."""

    def __init__(self, policy: DiscretePolicy, env: Hypergrid, eps: float) -> None:
        self.policy, self.env, self.eps = policy, env, eps

    def log_probs(self, states: torch.Tensor) -> torch.Tensor:
        valid = self.env.forward_mask(states).to(torch.float64)
        probs = (1 - self.eps) * self.policy.log_probs(states).exp() + self.eps * valid / valid.sum(1, keepdim=True)
        return torch.log(probs)


def _enumerate_terminal(
    env: Hypergrid, policy: DiscretePolicy
) -> tuple[dict[tuple[int, ...], float], dict[tuple[int, ...], float]]:
    """P_T by summing P_F over every trajectory (depth-first), plus Σ_τ→x P_B(τ|x) per terminal x."""
    out: dict[tuple[int, ...], float] = {}
    pb_total: dict[tuple[int, ...], float] = {}

    def visit(state: tuple[int, ...], prob: float, pb: float) -> None:
        lp = policy.log_probs(torch.tensor([state])).to(torch.float64).exp()[0]
        out[state] = out.get(state, 0.0) + prob * float(lp[env.ndim])
        pb_total[state] = pb_total.get(state, 0.0) + pb
        for d in range(env.ndim):
            if state[d] < env.height - 1:
                nxt = tuple(c + (i == d) for i, c in enumerate(state))
                n_parents = sum(c > 0 for c in nxt)
                visit(nxt, prob * float(lp[d]), pb / n_parents)

    with torch.no_grad():
        visit(tuple([0] * env.ndim), 1.0, 1.0)
    return out, pb_total


@pytest.mark.parametrize(("ndim", "height"), [(2, 4), (3, 3), (1, 5)])
def test_exact_terminal_distribution_equals_enumeration_of_trajectories(ndim, height):
    """Forward propagation over the DAG = the sum over all trajectories; uniform P_B is a distribution."""
    env = Hypergrid(ndim, height)
    policy = _random_policy(env, seed=ndim * 10 + height)
    exact = exact_terminal_distribution(env, policy)
    brute, pb_total = _enumerate_terminal(env, policy)
    states = env.all_states()
    want = torch.tensor([brute[tuple(s.tolist())] for s in states], dtype=torch.float64)
    torch.testing.assert_close(exact, want, rtol=1e-10, atol=1e-14)
    assert float(exact.sum()) == pytest.approx(1.0, abs=1e-12)
    # Σ over the trajectories reaching x of P_B(τ | x) = 1 for every x: P_B is a proper backward policy.
    assert all(v == pytest.approx(1.0, abs=1e-12) for v in pb_total.values())


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_sampler_draws_from_the_exact_terminal_distribution(eps):
    """H0: terminal states of sampled trajectories are i.i.d. draws from the exact P_T of the (ε-mixed)
    policy. Unit: one trajectory. Pearson χ² goodness of fit at level 1e-3 with a fixed seed; power: the
    same draws are rejected against the P_T of a more exploratory policy (ε=0.9), so the test can fail."""
    env = Hypergrid(2, 4)
    policy = _random_policy(env, seed=7)
    n = 20000
    trajs = sample_trajectories(env, policy, n, epsilon=eps, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(env.state_index(trajs.terminal), minlength=env.n_states).to(torch.float64)
    right = exact_terminal_distribution(env, _EpsilonMixed(policy, env, eps))
    wrong = exact_terminal_distribution(env, _EpsilonMixed(policy, env, 0.9))
    assert chisquare(counts.numpy(), (n * right / right.sum()).numpy()).pvalue > 1e-3
    assert chisquare(counts.numpy(), (n * wrong / wrong.sum()).numpy()).pvalue < 1e-6


def test_log_pf_log_pb_and_delta_of_sampled_trajectories():
    """Σ log P_F recomputed by the loss equals the product along each path; log P_B = −Σ log #parents."""
    env = Hypergrid(3, 5)
    policy = _random_policy(env, seed=3, scale=1.0)
    trajs = sample_trajectories(env, policy, 50, generator=torch.Generator().manual_seed(0))
    log_pf = trajectory_log_pf(policy, trajs)
    delta = trajectory_delta(policy, trajs)
    table = TabulatedPolicy(env, policy).table.to(torch.float64)
    for b in range(len(trajs)):
        n = int(trajs.lengths[b])
        st, ac = trajs.states[b, :n], trajs.actions[b, :n]
        assert int(ac[-1]) == env.ndim and bool((ac[:-1] < env.ndim).all())
        assert bool(((st[1:] - st[:-1]).sum(1) == 1).all())  # one increment per step
        want_pf = sum(float(table[env.state_index(st[t : t + 1])[0], ac[t]]) for t in range(n))
        parents = [(st[t] > 0).sum().item() for t in range(1, n)]
        want_pb = -sum(math.log(k) for k in parents)
        assert float(log_pf[b].detach()) == pytest.approx(want_pf, abs=1e-10)
        assert float(trajs.log_pb[b]) == pytest.approx(want_pb, abs=1e-12)
        want_delta = want_pf - want_pb - math.log(float(env.reward(st[-1:])[0]))
        assert float(delta[b].detach()) == pytest.approx(want_delta, abs=1e-10)
        assert bool((trajs.states[b, n:] == st[-1]).all()) and bool((trajs.actions[b, n:] == -1).all())
    log_pf.sum().backward()  # gradient reaches the estimator
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


@pytest.mark.parametrize(("ndim", "height"), [(2, 8), (2, 9), (2, 64), (3, 8)])
def test_reward_and_modes_follow_the_definition(ndim, height):
    """R from the published formula in float arithmetic; modes = the 2^D corners' r2 regions."""
    env = Hypergrid(ndim, height, r0=1e-3)
    states = env.all_states()
    u = (states.to(torch.float64) / (height - 1) - 0.5).abs()
    want = 1e-3 + 0.5 * ((u > 0.25) & (u <= 0.5)).all(1) + 2.0 * ((u > 0.3) & (u < 0.4)).all(1)
    torch.testing.assert_close(env.reward(states), want.to(torch.float64))
    ids = env.mode_ids(states)
    in_mode = (u > 0.3).all(1) & (u < 0.4).all(1)
    assert torch.equal(ids >= 0, in_mode)
    upper = (states.to(torch.float64) > (height - 1) / 2).to(torch.long)
    torch.testing.assert_close(ids[in_mode], (upper * (2 ** torch.arange(ndim))).sum(1)[in_mode])
    if in_mode.any():
        assert set(ids[in_mode].tolist()) == set(range(env.n_modes))
    p = env.true_distribution()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(env.mode_mass(p).sum(), p[in_mode].sum())


def _trajs_from(env: Hypergrid, paths: list[list[int]]) -> Trajectories:
    """Hand-built trajectories (action lists ending in stop)."""
    parts = []
    for actions in paths:
        s = env.initial_states(1)
        states, lpb = [s], 0.0
        for a in actions[:-1]:
            s = env.step(s, torch.tensor([a]))
            lpb += float(env.log_pb(s, torch.tensor([a]))[0])
            states.append(s)
        parts.append(
            Trajectories(
                states=torch.stack(states, dim=1),
                actions=torch.tensor([actions]),
                lengths=torch.tensor([len(actions)]),
                log_pb=torch.tensor([lpb], dtype=torch.float64),
                log_reward=env.log_reward(s),
            )
        )
    return Trajectories.cat(parts)


def test_replay_buffer_deduplicates_evicts_lowest_reward_and_samples_by_reward():
    env = Hypergrid(2, 8)
    stop = env.ndim
    low = [0, stop]  # (1,0): R = r0 + r1
    mode = [0, 1, stop]  # (1,1): a mode, R = r0 + r1 + r2
    mode_other_path = [1, 0, stop]  # same terminal, different trajectory
    mid = [0, 0, 0, 0, stop]  # (4,0): R = r0
    buf = ReplayBuffer(capacity=3)
    assert buf.add(_trajs_from(env, [low, mode, low, mode])) == 2  # duplicates dropped
    assert buf.add(_trajs_from(env, [mode_other_path])) == 1
    assert len(buf) == 3
    assert buf.add(_trajs_from(env, [mid])) == 0  # lower reward than everything stored: not kept
    assert buf.add(_trajs_from(env, [[1, 1, 1, 1, 1, 1, 0, stop]])) == 1  # (1,6) is a mode: evicts `low`
    sample = buf.sample(3000, generator=torch.Generator().manual_seed(0))
    assert len(sample) == 3000
    assert bool((sample.log_reward == math.log(env.r0 + env.r1 + env.r2)).all())  # `low` is gone
    # Padding and recomputed log P_F work on replayed batches of mixed lengths.
    policy = _random_policy(env, seed=0)
    fresh = sample_trajectories(env, policy, 4, generator=torch.Generator().manual_seed(0))
    batch = Trajectories.cat([fresh, sample])
    direct = torch.cat([trajectory_log_pf(policy, fresh), trajectory_log_pf(policy, sample)])
    torch.testing.assert_close(trajectory_log_pf(policy, batch), direct)


def test_replay_sampling_is_proportional_to_reward():
    """H0: replayed trajectories are drawn with probability ∝ R. Unit: one draw. χ² at level 1e-3, seeded."""
    env = Hypergrid(2, 8)
    stop = env.ndim
    paths = [[0, stop], [0, 1, stop], [0, 0, 0, 0, stop], [stop]]
    buf = ReplayBuffer(capacity=10)
    buf.add(_trajs_from(env, paths))
    rewards = torch.tensor([float(env.reward(_trajs_from(env, [p]).terminal)[0]) for p in paths])
    n = 6000
    sample = buf.sample(n, generator=torch.Generator().manual_seed(3))
    counts = torch.bincount(sample.lengths, minlength=6)[[2, 3, 5, 1]].tolist()  # the paths' lengths differ
    expected = (n * rewards / rewards.sum()).tolist()
    assert chisquare(counts, expected).pvalue > 1e-3
    uniform = ReplayBuffer(capacity=10, prioritised=False)
    uniform.add(_trajs_from(env, paths))
    us = uniform.sample(n, generator=torch.Generator().manual_seed(3))
    assert chisquare(torch.bincount(us.lengths, minlength=6)[[2, 3, 5, 1]].tolist(), [n / 4] * 4).pvalue > 1e-3


def test_learned_log_z_run_and_bad_inputs():
    res = run_hypergrid(
        HypergridRunConfig(
            height=6,
            ftb=FTBConfig(alpha=0.5, normaliser="learned"),
            off_policy=True,
            batch_size=8,
            replay_batch_size=4,
            n_iterations=20,
            eval_every=10,
            hidden=16,
        )
    )
    assert len(res.l1) == 3 and all(math.isfinite(v) for v in res.l1)
    assert res.eval_trajectories == [0, 80, 160]
    with pytest.raises(InputError, match="height"):
        Hypergrid(2, 1)
    with pytest.raises(InputError, match="r0"):
        Hypergrid(2, 8, r0=0.0)
    env = Hypergrid(2, 4)
    policy = _random_policy(env, 0)
    with pytest.raises(InputError, match="epsilon"):
        sample_trajectories(env, policy, 2, epsilon=1.5)
    with pytest.raises(InputError, match="n must be"):
        sample_trajectories(env, policy, 0)
    with pytest.raises(InputError, match="empty"):
        ReplayBuffer(5).sample(3)
