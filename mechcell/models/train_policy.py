"""Training the proposer policy: behaviour cloning on accepted traces, then f-TB against the verifier panel.

    result = train_policy("mechcell.duckdb", out="policy_out/", config=PolicyTrainConfig(alpha=0.5))

(a) Behaviour cloning. The final graphs of accepted traces (and, optionally, abstentions) are turned into their
    canonical trajectories in the condition's `PolicyEnv` (projected onto the action space when the local proposer
    explained genes away or revised lists; `exact` counts those rebuilt hash-for-hash) and log P_F is maximised.
(b) f-TB. log R(x) = reward(x)/β, where reward is the verifier panel's reward of the graph for the condition
    (signature-level panel, no cells: it is the expensive part, so rewards are cached by (condition, graph hash)).
    Abstaining gets the fixed reward `abstain_reward` (default the panel's acceptance threshold: abstaining is as
    good as a barely acceptable graph). Each step draws on-policy samples for a few conditions (tempered,
    ε-uniform exploration) plus replayed trajectories from a per-condition `gfn.ReplayBuffer` (seeded with the
    trace store's attempts, projected), and minimises `ftb_loss` of Δ̃ = log P_F(τ) − log R(x) (P_B = 1 by the
    canonical order) with DevGrad per condition group, or a learned conditional log Z.

Checkpoints (`policy.json` with both configs + `weights.pt`) reload with `models.policy.load_policy`; a training
report (`report.md` + `report.json`) holds the curves and, with a held-out split, the evaluation.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from mechcell.errors import InputError
from mechcell.models.ftb import AlphaSchedule, ConditionalLogZ, FTBConfig
from mechcell.models.gfn import ReplayBuffer, Trajectories
from mechcell.models.policy import PolicyConfig, PolicyEnv, PolicyModel, Trajectory, save_policy
from mechcell.verifiers.base import PanelSettings

if TYPE_CHECKING:
    from mechcell.agents.proposers import ProposalContext
    from mechcell.datasets.schemas import Condition, Signature
    from mechcell.datasets.synthetic.models import Truth
    from mechcell.datasets.traces import TraceStore
    from mechcell.graphs import ActionGraph
    from mechcell.knowledge import KnowledgeBase

__all__ = [
    "ConditionItem",
    "PolicyTrainConfig",
    "RewardCache",
    "TrainResult",
    "demonstrations",
    "evaluate_policy",
    "load_conditions",
    "split_by_drug",
    "stratified_bootstrap",
    "t_interval",
    "train_bc",
    "train_ftb",
    "train_policy",
    "write_report",
]


class PolicyTrainConfig(BaseModel):
    """Everything that defines a training run; saved in the checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    seed: int = 0
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    # behaviour cloning
    bc_steps: int = Field(150, ge=0)
    bc_lr: float = Field(3e-3, gt=0)
    bc_batch: int = Field(32, ge=1)
    bc_abstained: bool = Field(True, description="abstained traces are demonstrations of abstaining")
    # f-TB
    steps: int = Field(60, ge=0, description="f-TB optimisation steps")
    lr: float = Field(1e-3, gt=0)
    log_z_lr: float = Field(0.1, gt=0, description="learned log Z only (~100× the policy's rate)")
    alpha: float = 0.5
    anneal_to: float | None = Field(None, description="anneal α linearly to this value over the f-TB steps")
    divergence: Literal["alpha", "js", "tv"] = "alpha"
    normaliser: Literal["devgrad", "learned"] = "devgrad"
    beta: float = Field(0.1, gt=0, description="log R = reward / beta")
    abstain_reward: float | None = Field(None, ge=0, le=1, description="None: the panel's min_reward")
    explain_weight: float = Field(
        0.0,
        ge=0,
        description="training reward of an accepted graph += this × share of the condition's explainable genes "
        "(moved as some KB chain predicts) that its panel-supported expression claims cover; 0 = the panel reward "
        "(the default: on an inner validation split it raised recall but failed the reward margin, docs/policy.md)",
    )
    conditions_per_step: int = Field(4, ge=1)
    samples_per_condition: int = Field(8, ge=1)
    replay_per_condition: int = Field(4, ge=0)
    replay_capacity: int = Field(64, ge=1)
    temperature: float = Field(1.0, gt=0)
    epsilon: float = Field(0.05, ge=0, le=1)
    panel: PanelSettings = Field(default_factory=PanelSettings)

    def ftb(self) -> FTBConfig:
        sched = None
        if self.anneal_to is not None:
            sched = AlphaSchedule(start=self.alpha, end=self.anneal_to, steps=max(self.steps, 1))
        return FTBConfig(divergence=self.divergence, alpha=self.alpha, alpha_schedule=sched, normaliser=self.normaliser)

    @property
    def abstain_value(self) -> float:
        return self.panel.min_reward if self.abstain_reward is None else self.abstain_reward


@dataclass
class ConditionItem:
    """One condition with what the policy needs: its proposal context and environment."""

    key: str
    condition: Condition
    signature: Signature | None
    ctx: ProposalContext
    env: PolicyEnv
    doses: Any = None  # the drug's other doses in this line (verifiers.doses.DoseSeries), as the pipeline uses them


def load_conditions(
    store: Any, kb: KnowledgeBase, config: PolicyConfig, keys: Sequence[str] | None = None
) -> list[ConditionItem]:
    """Conditions of the store (all, or `keys`) with their signature, retrieved context and environment."""
    from mechcell.agents.proposers import ProposalContext
    from mechcell.datasets.store import Store
    from mechcell.errors import NotFoundError
    from mechcell.knowledge import Retriever
    from mechcell.verifiers.doses import dose_series

    own = not isinstance(store, Store)
    st = Store(store, read_only=True) if own else store
    try:
        if keys is None:
            keys = sorted({s.condition.key for s in st.condition_summaries()})
        retriever = Retriever(kb)
        out = []
        for key in keys:
            cond = st.find_condition(key).condition
            try:
                sig = st.signature(key)
            except NotFoundError:
                sig = None
            rc = retriever.context(cond, sig)
            # the dose series as the pipeline reads it (dose pooling, the silent-drug gate): the policy is trained
            # and evaluated against the panel the pipeline runs, and so is the local proposer it is compared with
            doses = dose_series(st, cond, method=sig.method) if sig is not None else None
            ctx = ProposalContext(condition=cond, retrieved=rc, kb=kb, signature=sig, seed=config.seed, doses=doses)
            out.append(ConditionItem(key, cond, sig, ctx, PolicyEnv(ctx, config), doses))
        return out
    finally:
        if own:
            st.close()


class RewardCache:
    """Panel rewards by (condition key, graph hash): verification is the expensive part of training."""

    def __init__(self, kb: KnowledgeBase, panel: PanelSettings, abstain_reward: float) -> None:
        self.kb, self.panel, self.abstain_reward = kb, panel, float(abstain_reward)
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}
        self._genes: dict[tuple[str, str], frozenset[str]] = {}
        self.calls = 0
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self._cache)

    def graph_reward(self, item: ConditionItem, graph: ActionGraph | None) -> tuple[float, bool]:
        """(reward, accepted) of a graph for the condition; an abstention gets `abstain_reward`, not accepted."""
        from mechcell.verifiers.panel import run_panel

        if graph is None:
            return self.abstain_reward, False
        key = (item.key, graph.content_hash())
        hit = self._cache.get(key)
        if hit is None:
            t = time.perf_counter()
            rep = run_panel(
                graph,
                condition=item.condition,
                kb=self.kb,
                signature=item.signature,
                settings=self.panel,
                doses=item.doses if self.panel.dose_pooling or self.panel.require_drug_effect else None,
            )
            self.seconds += time.perf_counter() - t
            self.calls += 1
            hit = self._cache[key] = (float(rep.reward), bool(rep.accepted))
            self._genes[key] = frozenset(
                r.claim_id.split(":", 1)[1]
                for r in rep.claims
                if r.kind == "expression" and r.status == "supported" and ":" in r.claim_id
            )
        return hit

    def explained(self, item: ConditionItem, graph: ActionGraph | None) -> float:
        """Share of the condition's explainable genes covered by the graph's panel-supported expression claims."""
        if graph is None:
            return 0.0
        self.graph_reward(item, graph)
        return item.env.explained_share(self._genes[(item.key, graph.content_hash())])

    def train_reward(self, item: ConditionItem, traj: Trajectory, explain_weight: float) -> float:
        """The f-TB training reward: the panel's, plus `explain_weight` × explained share for an accepted graph.

        Why: the panel reward is a mean over claims, so a graph of one well-supported chain scores as much as one
        that also claims the condition's other supported ends; the bonus (data only, never the planted truth)
        makes explaining more of the signature worth something."""
        graph = item.env.graph(traj.actions)
        r, acc = self.graph_reward(item, graph)
        if explain_weight and acc:
            r += explain_weight * self.explained(item, graph)
        return r

    def __call__(self, item: ConditionItem, traj: Trajectory) -> tuple[float, bool]:
        return self.graph_reward(item, item.env.graph(traj.actions))


# ---------------------------------------------------------------------------------------------- data


class DemoStats(BaseModel):
    n_traces: int = 0
    n_demos: int = 0
    n_exact: int = 0
    n_projected: int = 0
    n_abstain: int = 0
    n_skipped: int = 0


def demonstrations(
    traces: TraceStore, items: Sequence[ConditionItem], *, abstained: bool = True
) -> tuple[list[tuple[ConditionItem, Trajectory]], DemoStats]:
    """Canonical trajectories of the accepted traces' final graphs (and abstentions) of these conditions."""
    by_key = {it.key: it for it in items}
    out: list[tuple[ConditionItem, Trajectory]] = []
    stats = DemoStats()
    for key, item in by_key.items():
        for t in traces.for_condition(key):
            stats.n_traces += 1
            if t.status == "accepted" and t.final_graph is not None:
                traj, exact = item.env.trajectory_of(t.final_graph, project=True)
                if traj.abstain:
                    stats.n_skipped += 1
                    continue
                stats.n_exact += exact
                stats.n_projected += not exact
            elif abstained and t.status == "abstained":
                traj = Trajectory(key, ())
                stats.n_abstain += 1
            else:
                stats.n_skipped += 1
                continue
            out.append((item, traj))
    stats.n_demos = len(out)
    return out, stats


def attempts_offpolicy(traces: TraceStore, items: Sequence[ConditionItem]) -> list[tuple[ConditionItem, Trajectory]]:
    """Every verified attempt of the stored traces, projected onto the action space (off-policy data)."""
    out = []
    for item in items:
        seen: set[tuple[int, ...]] = set()
        for t in traces.for_condition(item.key):
            for a in t.attempts:
                if a.graph is None:
                    continue
                traj, _ = item.env.trajectory_of(a.graph, project=True)
                if traj.actions and traj.actions not in seen:
                    seen.add(traj.actions)
                    out.append((item, traj))
    return out


def split_by_drug(
    keys: Sequence[str], drug_of: Callable[[str], str], *, frac: float, seed: int
) -> tuple[list[str], list[str]]:
    """(train, held-out) condition keys, whole drugs held out (about `frac` of them, at least one each side)."""
    drugs = sorted({drug_of(k) for k in keys})
    if len(drugs) < 2:
        raise InputError(f"a split by drug needs at least 2 drugs, the store has {len(drugs)}")
    rng = random.Random(seed)
    rng.shuffle(drugs)
    n_out = min(max(1, round(frac * len(drugs))), len(drugs) - 1)
    held = set(drugs[:n_out])
    return [k for k in keys if drug_of(k) not in held], [k for k in keys if drug_of(k) in held]


# ---------------------------------------------------------------------------------------------- training


def train_bc(
    model: PolicyModel,
    demos: Sequence[tuple[ConditionItem, Trajectory]],
    config: PolicyTrainConfig,
    *,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Maximise log P_F of the demonstrations (minibatches of `bc_batch`); returns the curve."""
    if not demos or config.bc_steps == 0:
        return []
    opt = torch.optim.Adam(model.parameters(), lr=config.bc_lr)
    rng = np.random.default_rng(config.seed)
    curve = []
    for step in range(config.bc_steps):
        idx = rng.choice(len(demos), size=min(config.bc_batch, len(demos)), replace=False)
        lp = model.log_pf([(demos[i][0].env, demos[i][1]) for i in idx])
        loss = -lp.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec = {"step": step, "loss": float(loss.detach()), "mean_log_pf": float(lp.detach().mean())}
        curve.append(rec)
        if on_step:
            on_step(rec)
    return curve


def _pack(trajs: Sequence[Trajectory], env: PolicyEnv, log_rewards: Sequence[float]) -> Trajectories:
    """Trajectories in `gfn`'s padded layout (stop = action index n_actions; states = step index)."""
    rows = [[*t.actions, env.n_actions] for t in trajs]
    width = max(len(r) for r in rows)
    actions = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        actions[i, : len(r)] = torch.tensor(r)
    states = torch.arange(width).repeat(len(rows), 1).unsqueeze(-1)
    return Trajectories(
        states=states,
        actions=actions,
        lengths=torch.tensor([len(r) for r in rows]),
        log_pb=torch.zeros(len(rows), dtype=torch.float64),
        log_reward=torch.tensor(list(log_rewards), dtype=torch.float64),
    )


def _unpack(batch: Trajectories, key: str) -> list[Trajectory]:
    out = []
    for b in range(len(batch)):
        n = int(batch.lengths[b])
        out.append(Trajectory(key, tuple(int(a) for a in batch.actions[b, : n - 1])))
    return out


def train_ftb(
    model: PolicyModel,
    items: Sequence[ConditionItem],
    config: PolicyTrainConfig,
    rewards: RewardCache,
    *,
    offpolicy: Sequence[tuple[ConditionItem, Trajectory]] = (),
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """f-TB against the panel's reward: on-policy samples + replay (seeded with `offpolicy`), DevGrad per
    condition (or a learned conditional log Z). Returns the curve (reward, accepted share, loss, α per step)."""
    if not items or config.steps == 0:
        return []
    ftb = config.ftb()
    params: list[dict[str, Any]] = [{"params": list(model.parameters()), "lr": config.lr}]
    log_z = None
    if config.normaliser == "learned":
        log_z = ConditionalLogZ(len(items[0].env.cond_features))
        params.append({"params": list(log_z.parameters()), "lr": config.log_z_lr})
    opt = torch.optim.Adam(params)
    gen = torch.Generator().manual_seed(config.seed)
    rng = random.Random(config.seed)
    buffers: dict[str, ReplayBuffer] = {it.key: ReplayBuffer(config.replay_capacity) for it in items}
    by_key = {it.key: it for it in items}
    w = config.explain_weight
    for item, traj in offpolicy:
        if item.key in buffers:
            r = rewards.train_reward(item, traj, w)
            buffers[item.key].add(_pack([traj], item.env, [r / config.beta]))
    order: list[ConditionItem] = []
    curve = []
    for step in range(config.steps):
        batch: list[tuple[ConditionItem, Trajectory]] = []
        labels: list[int] = []
        on_r: list[float] = []
        on_acc: list[bool] = []
        for gi in range(min(config.conditions_per_step, len(items))):
            if not order:
                order = list(items)
                rng.shuffle(order)
            item = order.pop()
            model.eval()
            trajs = [
                model.sample(item.env, temperature=config.temperature, epsilon=config.epsilon, generator=gen)
                for _ in range(config.samples_per_condition)
            ]
            model.train()
            rs = [rewards(item, t) for t in trajs]
            on_r += [r for r, _ in rs]
            on_acc += [a for _, a in rs]
            buf = buffers[item.key]
            buf.add(_pack(trajs, item.env, [rewards.train_reward(item, t, w) / config.beta for t in trajs]))
            if config.replay_per_condition and len(buf):
                trajs = trajs + _unpack(buf.sample(config.replay_per_condition, generator=gen), item.key)
            batch += [(item, t) for t in trajs]
            labels += [gi] * len(trajs)
        log_r = torch.tensor(
            [rewards.train_reward(by_key[it.key], t, w) / config.beta for it, t in batch], dtype=torch.float64
        )
        log_pf = model.log_pf([(it.env, t) for it, t in batch])
        delta = log_pf - log_r
        groups = torch.tensor(labels)
        if log_z is not None:
            feats = torch.from_numpy(np.stack([it.env.cond_features for it, _ in batch]))
            loss = ftb.loss(delta, step=step, log_z=log_z(feats).to(torch.float64))
        else:
            loss = ftb.loss(delta, step=step, groups=groups)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        rec = {
            "step": step,
            "loss": float(loss.detach()),
            "alpha": ftb.alpha_at(step),
            "reward": float(np.mean(on_r)),
            "accepted": float(np.mean(on_acc)),
            "distinct": len({(it.key, t.actions) for it, t in batch}) / max(len(batch), 1),
            "panel_calls": rewards.calls,
        }
        curve.append(rec)
        if on_step:
            on_step(rec)
    return curve


# ---------------------------------------------------------------------------------------------- evaluation


class ConditionEval(BaseModel):
    key: str
    drug: str
    active: bool | None = None
    abstained: bool = False
    reward: float = 0.0
    accepted: bool = False
    precision: float | None = None
    recall: float | None = None
    distinct_accepted: int | None = None
    n_ends: int = 0  # distinct regulators of the graph's expression steps: how many mechanism ends it claims
    n_actions: int | None = None  # policy only: actions of the top graph's trajectory
    log_prob: float | None = None  # policy only: log P_T of the top graph (= log P_F of its trajectory, P_B = 1)
    certified: bool | None = None  # policy, exact decoding: the top graph is provably the most probable
    explained: float = 0.0  # share of the condition's explainable genes the panel supports (data only, no truth)
    summary: str = ""


class EvalSummary(BaseModel):
    name: str
    n_conditions: int
    mean_reward: float
    accepted: float
    edge_precision: float | None
    edge_recall: float | None
    mean_distinct_accepted: float | None = None
    rows: list[ConditionEval] = Field(default_factory=list)


def _mean(xs: Sequence[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return float(np.mean(v)) if v else None


def n_ends(g: ActionGraph | None) -> int:
    """Distinct regulators (TF / pathway ends) of a graph's expression steps: 0 for an abstention."""
    if g is None:
        return 0
    return len({p for n in g.nodes if n.primitive == "regulates_expression" for p in g.parents(n.id)})


def evaluate_graphs(
    name: str,
    graphs: dict[str, ActionGraph | None],
    items: Sequence[ConditionItem],
    rewards: RewardCache,
    *,
    truth: Truth | None = None,
    kb: KnowledgeBase | None = None,
    distinct: dict[str, int] | None = None,
    decoded: dict[str, dict[str, Any]] | None = None,
) -> EvalSummary:
    """Reward of each condition's top graph (abstention: its fixed reward), and edge precision / recall against
    the planted graph (`mechcell.eval.recovery.graph_edges`: precision over conditions with a graph, recall over
    active conditions; an abstention on an active condition has recall 0)."""
    from mechcell.agents.proposers import graph_summary
    from mechcell.eval.recovery import NameResolver, graph_edges

    res = NameResolver(kb)
    rows = []
    for it in items:
        g = graphs.get(it.key)
        r, acc = rewards.graph_reward(it, g)
        prec = rec = None
        active = None
        if truth is not None and it.key in truth.conditions:
            ct = truth.condition(it.key)
            active = ct.active
            true = graph_edges(truth.graph(it.key), res) if ct.active else set()
            pred = graph_edges(g, res)
            prec = len(pred & true) / len(pred) if pred else None
            rec = (len(pred & true) / len(true) if true else None) if ct.active else None
        rows.append(
            ConditionEval(
                key=it.key,
                drug=it.condition.perturbation,
                active=active,
                abstained=g is None,
                reward=r,
                accepted=acc,
                precision=prec,
                recall=rec,
                distinct_accepted=None if distinct is None else distinct.get(it.key),
                n_ends=n_ends(g),
                explained=rewards.explained(it, g),
                summary=graph_summary(g),
                **(decoded or {}).get(it.key, {}),
            )
        )
    return EvalSummary(
        name=name,
        n_conditions=len(rows),
        mean_reward=float(np.mean([r.reward for r in rows])) if rows else 0.0,
        accepted=float(np.mean([r.accepted for r in rows])) if rows else 0.0,
        edge_precision=_mean([r.precision for r in rows]),
        edge_recall=_mean([r.recall for r in rows]),
        mean_distinct_accepted=_mean([r.distinct_accepted for r in rows]) if distinct is not None else None,
        rows=rows,
    )


def distinct_accepted(
    model: PolicyModel, items: Sequence[ConditionItem], rewards: RewardCache, *, k: int, seed: int
) -> dict[str, int]:
    """Distinct accepted graphs among k samples (temperature 1) per condition."""
    out = {}
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    for it in items:
        hashes = set()
        for _ in range(k):
            g = it.env.graph(model.sample(it.env, generator=gen).actions)
            if g is not None and rewards.graph_reward(it, g)[1]:
                hashes.add(g.content_hash())
        out[it.key] = len(hashes)
    return out


def evaluate_policy(
    name: str,
    model: PolicyModel,
    items: Sequence[ConditionItem],
    rewards: RewardCache,
    *,
    truth: Truth | None = None,
    kb: KnowledgeBase | None = None,
    k: int = 16,
    seed: int = 0,
    decoding: str = "exact",
) -> EvalSummary:
    """The policy's temperature-0 graph per condition (`decoding`: exact top terminal probability, or the beam),
    scored; diversity from k samples."""
    model.eval()
    graphs: dict[str, ActionGraph | None] = {}
    decoded: dict[str, dict[str, Any]] = {}
    for it in items:
        dec = model.decode(it.env, 1, method=decoding)
        lp, tr = dec.ranked[0] if dec.ranked else (None, Trajectory(it.key, ()))
        graphs[it.key] = it.env.graph(tr.actions)
        decoded[it.key] = {
            "n_actions": len(tr.actions),
            "log_prob": lp,
            "certified": dec.certified if decoding != "beam" else None,
        }
    div = distinct_accepted(model, items, rewards, k=k, seed=seed) if k else None
    return evaluate_graphs(name, graphs, items, rewards, truth=truth, kb=kb, distinct=div, decoded=decoded)


def evaluate_local(
    items: Sequence[ConditionItem], rewards: RewardCache, *, truth: Truth | None = None, kb: KnowledgeBase | None = None
) -> EvalSummary:
    """The local proposer's first candidate per condition (it abstains when no end agrees with the data)."""
    from mechcell.agents.proposers import LocalProposer, propose_sync

    lp = LocalProposer()
    graphs = {}
    for it in items:
        props = propose_sync(lp, it.ctx, k=1)
        graphs[it.key] = props[0].graph if props else None
    return evaluate_graphs("local", graphs, items, rewards, truth=truth, kb=kb)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean over independent replicates (here: seeds, each its own
    world, split and training seed). Null of a paired difference: mean 0. NaN bounds with fewer than 2 values."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def stratified_bootstrap(
    strata: Sequence[Sequence[float]], *, level: float = 0.95, n_boot: int = 4000, seed: int = 0
) -> tuple[float, float, float]:
    """(estimate, low, high): percentile bootstrap of the mean over strata of per-stratum means, resampling units
    (held-out conditions) within each stratum (seed). Unit of exchangeability: the condition within its world;
    it ignores between-world variance, so it is narrower than `t_interval` over seeds and answers a different
    question (is the difference consistent across conditions of these worlds)."""
    groups = [np.asarray([v for v in s if v is not None and not math.isnan(v)], np.float64) for s in strata]
    groups = [g for g in groups if g.size]
    if not groups:
        return math.nan, math.nan, math.nan
    est = float(np.mean([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    boots = np.zeros(n_boot, dtype=np.float64)
    for g in groups:
        boots += g[rng.integers(0, g.size, size=(n_boot, g.size))].mean(axis=1)
    boots /= len(groups)
    lo, hi = np.quantile(boots, [0.5 - level / 2, 0.5 + level / 2])
    return est, float(lo), float(hi)


# ---------------------------------------------------------------------------------------------- the run


class TrainResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    checkpoint: str
    report_md: str
    report_json: str
    config: PolicyTrainConfig
    n_train: int
    n_heldout: int
    demos: DemoStats
    n_offpolicy: int
    bc_curve: list[dict[str, float]]
    ftb_curve: list[dict[str, float]]
    evaluations: list[EvalSummary] = Field(default_factory=list)
    panel_calls: int = 0
    panel_seconds: float = 0.0
    seconds: float = 0.0


def train_policy(
    store: Any,
    *,
    out: str | Path,
    kb: KnowledgeBase | str | Path | None = None,
    config: PolicyTrainConfig | None = None,
    truth: Truth | str | Path | None = None,
    holdout: float = 0.0,
    eval_k: int = 16,
    on_progress: Callable[[str, int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """BC on the store's accepted traces, then f-TB against the panel; checkpoint + report in `out`.

    holdout: share of drugs held out (0 = train on every condition); with a held-out set the report compares the
    policy after BC, after f-TB and the local proposer on it (and recovery when `truth` is given).
    on_progress(phase, step, total, record) is called after every step (for a progress bar).
    """
    from mechcell.datasets.store import Store
    from mechcell.datasets.synthetic import load_truth
    from mechcell.datasets.traces import TraceStore
    from mechcell.knowledge import KnowledgeBase, load_kb

    t0 = time.perf_counter()
    config = config or PolicyTrainConfig()
    kb_obj = kb if isinstance(kb, KnowledgeBase) else load_kb(kb)
    if truth is not None and not hasattr(truth, "conditions"):
        truth = load_truth(truth)  # type: ignore[arg-type]
    if not isinstance(store, Store) and not Path(store).is_file():
        raise InputError(f"store {store}: no such file (run `mechcell data ingest` and `mechcell traces build`)")
    with Store(store, read_only=True) if not isinstance(store, Store) else _nullctx(store) as st:
        items = load_conditions(st, kb_obj, config.policy)
        if not items:
            raise InputError(f"store {st.path}: no conditions to train on")
        keys = [it.key for it in items]
        drug = {it.key: it.condition.perturbation for it in items}
        train_keys, held_keys = (
            (keys, []) if holdout <= 0 else split_by_drug(keys, drug.__getitem__, frac=holdout, seed=config.seed)
        )
        train = [it for it in items if it.key in set(train_keys)]
        held = [it for it in items if it.key in set(held_keys)]
        traces = TraceStore(st)
        demos, dstats = demonstrations(traces, train, abstained=config.bc_abstained)
        offp = attempts_offpolicy(traces, train)
    if config.bc_steps and not any(not t.abstain for _, t in demos):
        raise InputError(
            f"store {store}: no accepted traces for the training conditions; run `mechcell traces build` first "
            "(or pass --bc-steps 0 to skip behaviour cloning)"
        )
    torch.manual_seed(config.seed)
    model = PolicyModel(config.policy)
    rewards = RewardCache(kb_obj, config.panel, config.abstain_value)

    def cb(phase: str, total: int) -> Callable[[dict[str, float]], None]:
        return lambda rec: on_progress(phase, int(rec["step"]) + 1, total, rec) if on_progress else None

    bc_curve = train_bc(model, demos, config, on_step=cb("bc", config.bc_steps))
    evaluations: list[EvalSummary] = []
    t_truth = truth if truth is not None and hasattr(truth, "conditions") else None
    if held:
        bc_eval = evaluate_policy(
            "policy (BC)", model, held, rewards, truth=t_truth, kb=kb_obj, k=eval_k, seed=config.seed
        )
        evaluations.append(bc_eval)
    ftb_curve = train_ftb(model, train, config, rewards, offpolicy=offp, on_step=cb("ftb", config.steps))
    if held:
        evaluations.append(
            evaluate_policy(
                "policy (BC + f-TB)", model, held, rewards, truth=t_truth, kb=kb_obj, k=eval_k, seed=config.seed
            )
        )
        evaluations.append(evaluate_local(held, rewards, truth=t_truth, kb=kb_obj))
    out = Path(out)
    save_policy(
        out,
        model,
        training=config.model_dump(mode="json"),
        kb_version=kb_obj.version,
        notes=[f"trained on {len(train)} conditions; held out {len(held)} (by drug)"],
    )
    result = TrainResult(
        checkpoint=str(out),
        report_md=str(out / "report.md"),
        report_json=str(out / "report.json"),
        config=config,
        n_train=len(train),
        n_heldout=len(held),
        demos=dstats,
        n_offpolicy=len(offp),
        bc_curve=bc_curve,
        ftb_curve=ftb_curve,
        evaluations=evaluations,
        panel_calls=rewards.calls,
        panel_seconds=rewards.seconds,
        seconds=time.perf_counter() - t0,
    )
    write_report(result)
    return result


class _nullctx:
    def __init__(self, v: Any) -> None:
        self.v = v

    def __enter__(self) -> Any:
        return self.v

    def __exit__(self, *exc: object) -> None:
        return None


def _fmt(x: float | None, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def eval_table(evals: Sequence[EvalSummary]) -> list[list[str]]:
    rows = [["proposer", "n", "mean reward", "accepted", "edge precision", "edge recall", "distinct accepted / cond"]]
    for e in evals:
        rows.append(
            [
                e.name,
                str(e.n_conditions),
                _fmt(e.mean_reward),
                _fmt(e.accepted),
                _fmt(e.edge_precision),
                _fmt(e.edge_recall),
                _fmt(e.mean_distinct_accepted, 2),
            ]
        )
    return rows


def _curve_rows(curve: Sequence[dict[str, float]], keys: Sequence[str], every: int) -> list[str]:
    out = ["| " + " | ".join(["step", *keys]) + " |", "|" + "---|" * (len(keys) + 1)]
    for rec in curve:
        if rec["step"] % every == 0 or rec is curve[-1]:
            out.append("| " + " | ".join([str(int(rec["step"])), *(_fmt(rec.get(k)) for k in keys)]) + " |")
    return out


def write_report(result: TrainResult) -> Path:
    """report.json (everything) and report.md (config, data, curves, evaluation) beside the checkpoint."""
    out = Path(result.checkpoint)
    Path(result.report_json).write_text(json.dumps(result.model_dump(mode="json"), indent=1, allow_nan=False))
    c = result.config
    d = result.demos
    lines = [
        "# Proposer policy — training report",
        "",
        f"BC {c.bc_steps} steps, then f-TB {c.steps} steps: divergence {c.divergence}, α = {c.alpha}"
        + (f" → {c.anneal_to}" if c.anneal_to is not None else "")
        + f", normaliser {c.normaliser}, log R = reward / {c.beta}, abstain reward {c.abstain_value}"
        + (f", explain bonus {c.explain_weight}" if c.explain_weight else "")
        + f"; seed {c.seed}.",
        "",
        f"Conditions: {result.n_train} for training, {result.n_heldout} held out (whole drugs). Demonstrations: "
        f"{d.n_demos} from {d.n_traces} traces ({d.n_exact} exact, {d.n_projected} projected onto the action space, "
        f"{d.n_abstain} abstentions, {d.n_skipped} skipped); "
        f"{result.n_offpolicy} off-policy attempts seeded the replay.",
        f"Panel calls: {result.panel_calls} ({result.panel_seconds:.1f} s); total {result.seconds:.1f} s.",
        "",
    ]
    if result.bc_curve:
        lines += [
            "## Behaviour cloning",
            "",
            *_curve_rows(result.bc_curve, ["mean_log_pf"], max(1, len(result.bc_curve) // 8)),
            "",
        ]
    if result.ftb_curve:
        keys = ["alpha", "loss", "reward", "accepted", "distinct"]
        lines += [
            "## f-TB (on-policy samples)",
            "",
            *_curve_rows(result.ftb_curve, keys, max(1, len(result.ftb_curve) // 8)),
            "",
        ]
    if result.evaluations:
        tab = eval_table(result.evaluations)
        lines += ["## Held-out conditions", "", "| " + " | ".join(tab[0]) + " |", "|" + "---|" * len(tab[0])]
        lines += ["| " + " | ".join(r) + " |" for r in tab[1:]]
        lines += [
            "",
            "Top graph per condition (policy: its most probable graph, exact best-first search; local: its first "
            "candidate). Reward: the signature-level panel (no cells); an abstention scores the abstain reward. "
            "Precision over conditions with a graph, recall over active conditions (mechcell.eval.recovery edge "
            f"definition). Distinct accepted: among {16} samples at temperature 1.",
            "",
        ]
    p = out / "report.md"
    p.write_text("\n".join(lines))
    return p
