"""GFlowNet plumbing kept in separate parts (torchgfn-style): environment, estimator, sampler, replay, loss.

Why the separation: the loss (`mechcell.models.ftb`) never touches the sampler, and the graph-building
proposer policy reuses `Trajectories`, `sample_trajectories`, `ReplayBuffer` and `trajectory_delta` with its
own environment and estimator. Environments implement the small `DiscreteEnv` protocol on integer state
tensors; P_B is fixed by the environment (a tree gives log P_B = 0; otherwise uniform over parents), which
keeps the f-divergence interpretation of f-TB on-policy.

The hypergrid (Bengio et al. 2021; Malkin et al. 2022) is the standard benchmark environment: its terminal
distribution under a policy is computed exactly by forward propagation over the grid's DAG, so the L1
distance to the target carries no sampling noise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from mechcell.errors import InputError
from mechcell.models.ftb import FTBConfig, LearnedLogZ

__all__ = [
    "ActionLogProbs",
    "DiscreteEnv",
    "DiscretePolicy",
    "Hypergrid",
    "HypergridRunConfig",
    "HypergridRunResult",
    "MLPEstimator",
    "ReplayBuffer",
    "TabulatedPolicy",
    "Trajectories",
    "exact_terminal_distribution",
    "run_hypergrid",
    "sample_trajectories",
    "trajectory_delta",
    "trajectory_log_pf",
]


# ---------------------------------------------------------------------------------------------------------
# Environment contract
# ---------------------------------------------------------------------------------------------------------


class DiscreteEnv(Protocol):
    """What the sampler and the loss need from an environment. States are integer tensors (n, state_dim)."""

    n_actions: int
    max_length: int  # the longest trajectory, counted in actions including the final stop

    def initial_states(self, n: int) -> Tensor: ...

    def forward_mask(self, states: Tensor) -> Tensor:
        """(n, n_actions) bool: which actions are valid in each state."""
        ...

    def is_stop(self, actions: Tensor) -> Tensor: ...

    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        """Next states for non-stop actions."""
        ...

    def log_pb(self, next_states: Tensor, actions: Tensor) -> Tensor:
        """log P_B(s | s') of each non-stop transition s → s' (fixed, no parameters)."""
        ...

    def log_reward(self, states: Tensor) -> Tensor:
        """log R of terminal states, float64."""
        ...

    def encode(self, states: Tensor) -> Tensor:
        """Float features of states for the estimator."""
        ...


# ---------------------------------------------------------------------------------------------------------
# Estimator and policy
# ---------------------------------------------------------------------------------------------------------


class MLPEstimator(nn.Module):
    """A plain MLP from state features to action logits (the torchgfn default shape: 2 × 256)."""

    def __init__(self, in_features: int, out_features: int, hidden: int = 256, n_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU()]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ActionLogProbs(Protocol):
    """Anything that gives (n, n_actions) log P_F(a | s), −inf on invalid actions: a policy or its table."""

    def log_probs(self, states: Tensor) -> Tensor: ...


class DiscretePolicy(nn.Module):
    """P_F(a | s): the estimator's logits, invalid actions masked, log-softmax."""

    def __init__(self, env: DiscreteEnv, estimator: nn.Module) -> None:
        super().__init__()
        self.env = env
        self.estimator = estimator

    def log_probs(self, states: Tensor) -> Tensor:
        """(n, n_actions) log-probabilities; −inf on invalid actions."""
        x = self.env.encode(states)
        param = next(self.estimator.parameters(), None)
        if param is not None and x.dtype != param.dtype:
            x = x.to(param.dtype)  # a float64 estimator (exact checks) takes the env's float32 features
        logits = self.estimator(x)
        logits = logits.masked_fill(~self.env.forward_mask(states), -math.inf)
        return torch.log_softmax(logits, dim=-1)


# ---------------------------------------------------------------------------------------------------------
# Trajectories and the sampler
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Trajectories:
    """A padded batch of complete trajectories.

    states[b, t] is the state in which actions[b, t] was taken, for t < lengths[b]; the last valid action of
    each row is the stop, so the terminal object is states[b, lengths[b] − 1]. Padding: actions −1, states
    repeat the terminal state. log_pb (Σ log P_B, fixed) and log_reward are float64.
    """

    states: Tensor  # (B, L, S) long
    actions: Tensor  # (B, L) long
    lengths: Tensor  # (B,) long
    log_pb: Tensor  # (B,) float64
    log_reward: Tensor  # (B,) float64

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def terminal(self) -> Tensor:
        return self.states[torch.arange(len(self)), self.lengths - 1]

    @staticmethod
    def cat(parts: Sequence[Trajectories]) -> Trajectories:
        parts = [p for p in parts if len(p)]
        if not parts:
            raise InputError("Trajectories.cat: nothing to concatenate")
        width = max(p.actions.shape[1] for p in parts)
        states, actions = [], []
        for p in parts:
            pad = width - p.actions.shape[1]
            if pad:
                last = p.states[:, -1:].expand(-1, pad, -1)
                states.append(torch.cat([p.states, last], dim=1))
                actions.append(torch.cat([p.actions, p.actions.new_full((len(p), pad), -1)], dim=1))
            else:
                states.append(p.states)
                actions.append(p.actions)
        return Trajectories(
            states=torch.cat(states),
            actions=torch.cat(actions),
            lengths=torch.cat([p.lengths for p in parts]),
            log_pb=torch.cat([p.log_pb for p in parts]),
            log_reward=torch.cat([p.log_reward for p in parts]),
        )


def sample_trajectories(
    env: DiscreteEnv,
    policy: ActionLogProbs,
    n: int,
    *,
    epsilon: float = 0.0,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Trajectories:
    """Roll out n trajectories from P_F, optionally tempered (logits / temperature) and ε-uniform over the
    valid actions (off-policy exploration). No gradient: log P_F is recomputed by the loss. `policy` may be
    a `TabulatedPolicy` where the environment is small enough to enumerate.

    Every row is evaluated at every step (stopped rows are discarded afterwards): fewer indexing ops per
    step matter more than the few wasted rows for the small batches GFlowNets train on.
    """
    if n < 1:
        raise InputError(f"sample_trajectories: n must be ≥ 1, got {n}")
    if not 0.0 <= epsilon <= 1.0:
        raise InputError(f"sample_trajectories: epsilon must be in [0, 1], got {epsilon}")
    if temperature <= 0:
        raise InputError(f"sample_trajectories: temperature must be > 0, got {temperature}")
    s = env.initial_states(n)
    done = torch.zeros(n, dtype=torch.bool)
    lengths = torch.zeros(n, dtype=torch.long)
    log_pb = torch.zeros(n, dtype=torch.float64)
    states_t: list[Tensor] = []
    actions_t: list[Tensor] = []
    with torch.no_grad():
        for _ in range(env.max_length):
            logp = policy.log_probs(s)
            if temperature != 1.0:
                logp = torch.log_softmax(logp / temperature, dim=-1)
            probs = logp.exp()
            if epsilon > 0.0:
                valid = torch.isfinite(logp).to(probs.dtype)
                probs = (1.0 - epsilon) * probs + epsilon * valid / valid.sum(dim=1, keepdim=True)
            a = torch.multinomial(probs, 1, generator=generator).squeeze(1).masked_fill(done, -1)
            states_t.append(s)
            actions_t.append(a)
            lengths += (~done).to(torch.long)
            stop = env.is_stop(a)
            move = ((a >= 0) & ~stop).nonzero().squeeze(1)
            if move.numel():
                nxt = env.step(s[move], a[move])
                log_pb[move] += env.log_pb(nxt, a[move]).to(torch.float64)
                s = s.clone()
                s[move] = nxt
            done = done | stop
            if bool(done.all()):
                break
    if not bool(done.all()):
        raise InputError(f"sample_trajectories: trajectories did not stop within max_length={env.max_length}")
    # Padding steps hold the terminal state (s is frozen once a row has stopped).
    return Trajectories(
        states=torch.stack(states_t, dim=1),
        actions=torch.stack(actions_t, dim=1),
        lengths=lengths,
        log_pb=log_pb,
        log_reward=env.log_reward(s),
    )


def trajectory_log_pf(policy: ActionLogProbs, trajs: Trajectories) -> Tensor:
    """Σ_t log P_F(a_t | s_t) per trajectory under the *current* policy (with gradient), float64.

    The estimator runs once per distinct state of the batch (trajectories share their early states)."""
    width = trajs.actions.shape[1]
    valid = torch.arange(width).unsqueeze(0) < trajs.lengths.unsqueeze(1)
    rows = torch.arange(len(trajs)).unsqueeze(1).expand(-1, width)[valid]
    uniq, inverse = torch.unique(trajs.states[valid], dim=0, return_inverse=True)
    logp = policy.log_probs(uniq)
    picked = logp[inverse, trajs.actions[valid]].to(torch.float64)
    out = torch.zeros(len(trajs), dtype=torch.float64)
    return out.index_add(0, rows, picked)


def trajectory_delta(policy: ActionLogProbs, trajs: Trajectories) -> Tensor:
    """Δ̃ = Σ log P_F − Σ log P_B − log R per trajectory (model minus target, without log Z), float64."""
    return trajectory_log_pf(policy, trajs) - trajs.log_pb - trajs.log_reward


# ---------------------------------------------------------------------------------------------------------
# Replay buffer
# ---------------------------------------------------------------------------------------------------------


class ReplayBuffer:
    """De-duplicated, reward-prioritised replay of whole trajectories for off-policy f-TB.

    Keeps at most `capacity` distinct trajectories (by action sequence), evicting the lowest-reward one when
    full; samples with probability ∝ R (prioritised) or uniformly. No importance weights are needed: the
    f-TB minimiser is q = p under any behaviour distribution that covers p.
    """

    def __init__(self, capacity: int = 1000, *, prioritised: bool = True) -> None:
        if capacity < 1:
            raise InputError(f"ReplayBuffer: capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self.prioritised = prioritised
        self._keys: list[bytes] = []
        self._index: dict[bytes, int] = {}
        self._states: list[Tensor] = []
        self._actions: list[Tensor] = []
        self._log_pb: list[float] = []
        self._log_reward = np.empty(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, trajs: Trajectories) -> int:
        """Add the new distinct trajectories of a batch; returns how many were stored."""
        added = 0
        for b in range(len(trajs)):
            n = int(trajs.lengths[b])
            actions = trajs.actions[b, :n].clone()
            key = actions.numpy().tobytes()
            if key in self._index:
                continue
            lr = float(trajs.log_reward[b])
            if len(self._keys) >= self.capacity:
                worst = int(np.argmin(self._log_reward))
                if lr <= self._log_reward[worst]:
                    continue
                del self._index[self._keys[worst]]
                self._keys[worst] = key
                self._index[key] = worst
                self._states[worst] = trajs.states[b, :n].clone()
                self._actions[worst] = actions
                self._log_pb[worst] = float(trajs.log_pb[b])
                self._log_reward[worst] = lr
            else:
                self._index[key] = len(self._keys)
                self._keys.append(key)
                self._states.append(trajs.states[b, :n].clone())
                self._actions.append(actions)
                self._log_pb.append(float(trajs.log_pb[b]))
                self._log_reward = np.append(self._log_reward, lr)
            added += 1
        return added

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Trajectories:
        if not len(self):
            raise InputError("ReplayBuffer.sample: the buffer is empty")
        lr = torch.from_numpy(self._log_reward)
        weights = torch.exp(lr - lr.max()) if self.prioritised else torch.ones_like(lr)
        idx = torch.multinomial(weights, n, replacement=True, generator=generator).tolist()
        lengths = torch.tensor([self._actions[i].shape[0] for i in idx], dtype=torch.long)
        width = int(lengths.max())
        states, actions = [], []
        for i in idx:
            st, ac = self._states[i], self._actions[i]
            pad = width - ac.shape[0]
            states.append(torch.cat([st, st[-1:].expand(pad, -1)]) if pad else st)
            actions.append(torch.cat([ac, ac.new_full((pad,), -1)]) if pad else ac)
        return Trajectories(
            states=torch.stack(states),
            actions=torch.stack(actions),
            lengths=lengths,
            log_pb=torch.tensor([self._log_pb[i] for i in idx], dtype=torch.float64),
            log_reward=lr[idx].clone(),
        )


# ---------------------------------------------------------------------------------------------------------
# The hypergrid
# ---------------------------------------------------------------------------------------------------------


class Hypergrid:
    """D-dimensional grid of side H; start at the origin, increment one coordinate per step or stop.

    R(x) = r0 + r1·1[all |x/(H−1) − ½| ∈ (¼, ½]] + r2·1[all |x/(H−1) − ½| ∈ (0.3, 0.4)]; every state is
    terminal. The 2^D regions where the r2 term is on are the modes. P_B is uniform over parents
    (log P_B = −log #non-zero coordinates). Conditions are evaluated in exact integer arithmetic.
    """

    def __init__(self, ndim: int = 2, height: int = 64, r0: float = 1e-2, r1: float = 0.5, r2: float = 2.0) -> None:
        if ndim < 1 or height < 2:
            raise InputError(f"Hypergrid: need ndim ≥ 1 and height ≥ 2, got ndim={ndim}, height={height}")
        if r0 <= 0:
            raise InputError(f"Hypergrid: r0 must be > 0 so every state has positive reward, got {r0}")
        self.ndim, self.height = ndim, height
        self.r0, self.r1, self.r2 = float(r0), float(r1), float(r2)
        self.n_actions = ndim + 1  # increment coordinate d, or stop (= ndim)
        self.max_length = ndim * (height - 1) + 1
        self.n_states = height**ndim
        self.n_modes = 2**ndim
        self._strides = torch.tensor([height**d for d in range(ndim)], dtype=torch.long)

    # --- the DiscreteEnv protocol ---
    def initial_states(self, n: int) -> Tensor:
        return torch.zeros((n, self.ndim), dtype=torch.long)

    def forward_mask(self, states: Tensor) -> Tensor:
        mask = torch.ones((states.shape[0], self.n_actions), dtype=torch.bool)
        mask[:, : self.ndim] = states < self.height - 1
        return mask

    def is_stop(self, actions: Tensor) -> Tensor:
        return actions == self.ndim

    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        out = states.clone()
        out[torch.arange(states.shape[0]), actions] += 1
        return out

    def log_pb(self, next_states: Tensor, actions: Tensor) -> Tensor:
        return -torch.log((next_states > 0).sum(dim=1).to(torch.float64))

    def log_reward(self, states: Tensor) -> Tensor:
        return torch.log(self.reward(states))

    def encode(self, states: Tensor) -> Tensor:
        return nn.functional.one_hot(states, self.height).reshape(states.shape[0], -1).to(torch.float32)

    # --- exact quantities ---
    def _abs_offset(self, states: Tensor) -> Tensor:
        return (2 * states - (self.height - 1)).abs()  # |x/(H−1) − ½| = this / (2(H−1))

    def _in_r2(self, states: Tensor) -> Tensor:
        a, span = self._abs_offset(states), self.height - 1
        return ((5 * a > 3 * span) & (5 * a < 4 * span)).all(dim=1)  # 0.3 < a/(2·span) < 0.4

    def reward(self, states: Tensor) -> Tensor:
        a, span = self._abs_offset(states), self.height - 1
        in_r1 = ((2 * a > span) & (a <= span)).all(dim=1)  # ¼ < a/(2·span) ≤ ½
        r = torch.full((states.shape[0],), self.r0, dtype=torch.float64)
        return r + self.r1 * in_r1.to(torch.float64) + self.r2 * self._in_r2(states).to(torch.float64)

    def mode_ids(self, states: Tensor) -> Tensor:
        """Which of the 2^D mode regions each state lies in (bit d = upper half of coordinate d), −1 if none."""
        bits = (2 * states > self.height - 1).to(torch.long)
        ids = (bits * (2 ** torch.arange(self.ndim))).sum(dim=1)
        return torch.where(self._in_r2(states), ids, torch.full_like(ids, -1))

    def state_index(self, states: Tensor) -> Tensor:
        return (states * self._strides).sum(dim=1)

    def all_states(self) -> Tensor:
        """Every state, row i holding the state with state_index i."""
        i = torch.arange(self.n_states)
        return torch.stack([(i // self.height**d) % self.height for d in range(self.ndim)], dim=1)

    def true_distribution(self) -> Tensor:
        """p(x) = R(x)/Z over all_states(), by enumeration, float64."""
        r = self.reward(self.all_states())
        return r / r.sum()

    def mode_mass(self, dist: Tensor) -> Tensor:
        """Mass a distribution over all_states() puts on each mode region, (2^D,) float64."""
        ids = self.mode_ids(self.all_states())
        keep = ids >= 0
        return torch.zeros(self.n_modes, dtype=torch.float64).index_add_(0, ids[keep], dist[keep])


class TabulatedPolicy:
    """log P_F of every state of an enumerable environment, computed in one batched pass (no gradient) and
    then looked up. Why: the exact terminal distribution needs every state's action probabilities, and
    repeated rollouts under a frozen policy (evaluation, exploration) can reuse them."""

    def __init__(self, env: Hypergrid, policy: ActionLogProbs, *, batch: int = 8192) -> None:
        states = env.all_states()
        with torch.no_grad():
            self.table = torch.cat([policy.log_probs(states[i : i + batch]) for i in range(0, len(states), batch)])
        self.env = env

    def log_probs(self, states: Tensor) -> Tensor:
        return self.table[self.env.state_index(states)]


def exact_terminal_distribution(env: Hypergrid, policy: ActionLogProbs) -> Tensor:
    """P_T(x) of the policy over env.all_states(), exactly (float64): propagate the probability of reaching
    each state level by level (levels = Σ coordinates, a topological order of the DAG), then multiply by
    P_F(stop | x)."""
    table = policy if isinstance(policy, TabulatedPolicy) else TabulatedPolicy(env, policy)
    probs = table.table.to(torch.float64).exp()
    states = env.all_states()
    reach = torch.zeros(env.n_states, dtype=torch.float64)
    reach[0] = 1.0
    level = states.sum(dim=1)
    order = torch.argsort(level, stable=True)
    bounds = torch.searchsorted(level[order], torch.arange(env.max_length + 1))
    for lv in range(env.max_length - 1):
        idx = order[bounds[lv] : bounds[lv + 1]]
        r = reach[idx]
        for d in range(env.ndim):
            ok = states[idx, d] < env.height - 1
            src = idx[ok]
            reach.index_add_(0, src + env.height**d, r[ok] * probs[src, d])
    return reach * probs[:, env.ndim]


# ---------------------------------------------------------------------------------------------------------
# A complete hypergrid training run (used by the benchmark and the smoke test)
# ---------------------------------------------------------------------------------------------------------


class HypergridRunConfig(BaseModel):
    """One hypergrid run: environment, objective, on/off-policy regime, optimisation, evaluation."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = 1
    ndim: int = Field(default=2, ge=1)
    height: int = Field(default=64, ge=2)
    r0: float = Field(default=1e-2, gt=0)
    ftb: FTBConfig = FTBConfig()
    off_policy: bool = False
    # ε-uniform exploration per step, off-policy only. Small: the stop action is among the uniform choices,
    # so ε = 0.1 would end a 100-step rollout early with probability 1 − (1 − ε/3)^100 ≈ 97%.
    epsilon: float = Field(default=0.01, ge=0, le=1)
    replay_capacity: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=32, ge=2)  # fresh trajectories per iteration
    replay_batch_size: int = Field(default=16, ge=1)  # replayed trajectories added per iteration, off-policy
    n_iterations: int = Field(default=1000, ge=1)
    hidden: int = Field(default=128, ge=1)
    n_layers: int = Field(default=2, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    lr_log_z: float = Field(default=0.1, gt=0)
    eval_every: int = Field(default=50, ge=1)
    seed: int = 0


class HypergridRunResult(BaseModel):
    """Curves against fresh trajectories sampled; L1 is exact (no sampling noise)."""

    config: HypergridRunConfig
    eval_trajectories: list[int]  # fresh trajectories sampled at each evaluation
    l1: list[float]  # Σ_x |P_T(x) − p(x)| at each evaluation
    mode_first_found: list[int | None]  # per mode: trajectories sampled when it was first hit (None: never)
    final_mode_mass: list[float]  # exact model mass on each mode region at the end
    target_mode_mass: list[float]
    n_trajectories: int
    seconds: float  # wall clock
    cpu_seconds: float  # this process's CPU time (robust to a shared machine)

    def modes_found_at(self, n_trajectories: int) -> int:
        return sum(1 for f in self.mode_first_found if f is not None and f <= n_trajectories)

    @property
    def trajectories_to_all_modes(self) -> int | None:
        if any(f is None for f in self.mode_first_found):
            return None
        return max(f for f in self.mode_first_found if f is not None)

    @property
    def modes_held(self) -> int:
        """Modes on which the final model puts at least half of their target mass (exact)."""
        return sum(1 for m, t in zip(self.final_mode_mass, self.target_mode_mass, strict=True) if m >= 0.5 * t)

    def l1_at(self, n_trajectories: int) -> float:
        """L1 at the last evaluation with at most n_trajectories sampled."""
        best = self.l1[0]
        for n, v in zip(self.eval_trajectories, self.l1, strict=True):
            if n <= n_trajectories:
                best = v
        return best


def run_hypergrid(
    config: HypergridRunConfig, *, on_eval: Callable[[int, float, int], None] | None = None
) -> HypergridRunResult:
    """Train a hypergrid GFlowNet with an f-TB objective; on_eval(iteration, l1, modes_found) reports."""
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    env = Hypergrid(config.ndim, config.height, config.r0)
    policy = DiscretePolicy(env, MLPEstimator(env.ndim * env.height, env.n_actions, config.hidden, config.n_layers))
    params: list[dict] = [{"params": policy.parameters(), "lr": config.lr}]
    log_z: LearnedLogZ | None = None
    if config.ftb.normaliser == "learned":
        log_z = LearnedLogZ()
        params.append({"params": log_z.parameters(), "lr": config.lr_log_z})
    opt = torch.optim.Adam(params)
    buffer = ReplayBuffer(config.replay_capacity) if config.off_policy else None
    target = env.true_distribution()
    first_found: list[int | None] = [None] * env.n_modes
    evals_n: list[int] = []
    evals_l1: list[float] = []
    n_sampled = 0

    def evaluate(it: int, table: TabulatedPolicy) -> None:
        l1 = float((exact_terminal_distribution(env, table) - target).abs().sum())
        evals_n.append(n_sampled)
        evals_l1.append(l1)
        if on_eval is not None:
            on_eval(it, l1, sum(f is not None for f in first_found))

    evaluate(0, TabulatedPolicy(env, policy))
    for it in range(1, config.n_iterations + 1):
        eps = config.epsilon if config.off_policy else 0.0
        fresh = sample_trajectories(env, policy, config.batch_size, epsilon=eps, generator=gen)
        for j, m in enumerate(env.mode_ids(fresh.terminal).tolist()):
            if m >= 0 and first_found[m] is None:
                first_found[m] = n_sampled + j + 1
        n_sampled += len(fresh)
        batch = fresh
        if buffer is not None:
            if len(buffer):
                batch = Trajectories.cat([fresh, buffer.sample(config.replay_batch_size, generator=gen)])
            buffer.add(fresh)
        delta = trajectory_delta(policy, batch)
        z = log_z().to(torch.float64) if log_z is not None else None
        loss = config.ftb.loss(delta, step=it - 1, log_z=z)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % config.eval_every == 0 or it == config.n_iterations:
            evaluate(it, TabulatedPolicy(env, policy))

    final = exact_terminal_distribution(env, policy)
    return HypergridRunResult(
        config=config,
        eval_trajectories=evals_n,
        l1=evals_l1,
        mode_first_found=first_found,
        final_mode_mass=env.mode_mass(final).tolist(),
        target_mode_mass=env.mode_mass(target).tolist(),
        n_trajectories=n_sampled,
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - c0,
    )
