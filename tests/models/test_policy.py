"""The proposer policy on real components: a small synthetic world (real h5ad, real DuckDB store, real signatures),
the starter KB, traces written by the local proposer through the real pipeline, the real verifier panel.

These are tests of a learner and its environment, not of a statistic: the unit of exchange is the condition, and
each learning test compares the same fixed trajectories before and after training with a fixed seed (no
tolerance that depends on chance beyond that seed).
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor
from typer.testing import CliRunner

from mechcell.agents.pipeline import Pipeline, PipelineConfig
from mechcell.agents.proposers import Feedback, LocalProposer, Proposer, make_proposer, propose_sync
from mechcell.datasets.readers import open_dataset
from mechcell.datasets.signatures import compute_signatures
from mechcell.datasets.store import Store
from mechcell.datasets.synthetic import SyntheticWorldConfig, Truth, generate_world, load_truth
from mechcell.datasets.traces import TraceStore
from mechcell.errors import InputError
from mechcell.graphs import parse_text
from mechcell.knowledge import KnowledgeBase, load_kb
from mechcell.models.ftb import ftb_loss
from mechcell.models.policy import PolicyConfig, PolicyModel, PolicyProposer, load_policy, save_policy
from mechcell.models.train_policy import (
    ConditionItem,
    PolicyTrainConfig,
    RewardCache,
    demonstrations,
    load_conditions,
    stratified_bootstrap,
    t_interval,
    train_bc,
    train_policy,
)
from mechcell.verifiers.panel import run_panel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORLD = SyntheticWorldConfig(
    seed=3, n_drugs=4, n_cell_lines=1, doses=[0.5, 5.0], n_genes=400, cells_per_condition=150, frac_inactive=0.5
)
FAST = PipelineConfig(n_candidates=3, max_rounds=1, use_cells=False)


class World:
    def __init__(self, root: Path, truth: Truth, store: Path) -> None:
        self.root, self.truth, self.store = root, truth, store

    def strongest(self) -> str:
        act = [c for c in self.truth.conditions.values() if c.active]
        return max(act, key=lambda c: (c.effect_scale, len(c.up) + len(c.down), c.key)).key


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_kb(None)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, kb: KnowledgeBase) -> World:
    """The world, its signatures and the local proposer's traces of every condition, in one real store."""
    root = tmp_path_factory.mktemp("policy")
    generate_world(WORLD, root / "world", layout="h5ad")
    store = root / "store.duckdb"
    with Store(store) as st:
        ds = open_dataset(root / "world" / "world.h5ad")
        did = st.register(ds)
        assert not compute_signatures(ds, None, store=st, dataset_id=did).failed
    truth = load_truth(root / "world")
    with Pipeline(kb=kb, store=store, proposer="local", config=FAST) as pipe:
        pipe.run_many(sorted(truth.conditions))
    return World(root, truth, store)


@pytest.fixture(scope="module")
def items(world: World, kb: KnowledgeBase) -> list[ConditionItem]:
    return load_conditions(world.store, kb, PolicyConfig())


def _item(items: list[ConditionItem], key: str) -> ConditionItem:
    return next(it for it in items if it.key == key)


# ------------------------------------------------------------------------------------------ environment


def test_canonical_order_round_trip_and_validity(items: list[ConditionItem]) -> None:
    """graph → canonical trajectory → the same actions and the same graph hash, for every graph a (random)
    policy samples; every sampled graph is structurally valid (the panel's structural verifier is clean)."""
    model = PolicyModel(PolicyConfig(seed=1))
    gen = torch.Generator().manual_seed(0)
    n_graphs = 0
    for it in items:
        for i in range(15):
            tr = model.sample(it.env, generator=gen, epsilon=0.3)
            g = it.env.graph(tr.actions)
            back, exact = it.env.trajectory_of(g)
            assert back.actions == tr.actions and exact
            if g is None:
                continue
            n_graphs += 1
            rebuilt = it.env.graph(back.actions)
            assert rebuilt is not None and rebuilt.content_hash() == g.content_hash()
            assert g.is_valid(), g.problems()
            if i < 3:
                rep = run_panel(g, condition=it.condition, kb=it.ctx.kb, signature=it.signature)
                assert not rep.structural
    assert n_graphs > 30


def test_local_graphs_project_onto_the_action_space(world: World, items: list[ConditionItem]) -> None:
    """The local proposer's first candidates are chains with data-supported genes: they rebuild exactly."""
    it = _item(items, world.strongest())
    props = propose_sync(LocalProposer(), it.ctx, k=3)
    assert props
    exact = [it.env.trajectory_of(p.graph, project=True)[1] for p in props]
    assert any(exact), "no local candidate rebuilt exactly"


def test_abstention_and_bad_trajectory(items: list[ConditionItem]) -> None:
    it = items[0]
    assert it.env.graph(()) is None
    with pytest.raises(InputError, match="not valid"):
        it.env.records(type(it.env.trajectory_of(None)[0])(it.key, (10_000,)))


# ------------------------------------------------------------------------------------------ training


def test_bc_raises_the_log_prob_of_demonstrations(world: World, items: list[ConditionItem]) -> None:
    with TraceStore(world.store, read_only=True) as ts:
        demos, stats = demonstrations(ts, items)
    assert stats.n_demos >= 4 and stats.n_exact >= 1 and stats.n_abstain >= 1
    model = PolicyModel(PolicyConfig(seed=0))
    pairs = [(it.env, tr) for it, tr in demos]
    with torch.no_grad():
        before = model.log_pf(pairs).numpy()
    curve = train_bc(model, demos, PolicyTrainConfig(bc_steps=40, bc_batch=8))
    with torch.no_grad():
        after = model.log_pf(pairs).numpy()
    assert len(curve) == 40
    assert after.mean() > before.mean() + 1.0
    assert np.all(after > before)


def test_ftb_step_moves_probability_towards_high_reward(
    world: World, items: list[ConditionItem], kb: KnowledgeBase
) -> None:
    """One condition, a fixed set of distinct graphs with their panel rewards: f-TB steps (α = ½, DevGrad, the
    same batch) widen log q(best) − log q(worst) towards the target gap (r_best − r_worst)/β."""
    it = _item(items, world.strongest())
    model = PolicyModel(PolicyConfig(seed=2))
    gen = torch.Generator().manual_seed(1)
    trajs = list({model.sample(it.env, generator=gen).actions: None for _ in range(60)})
    trajs = [t for t in trajs if t]
    cache = RewardCache(kb, PolicyTrainConfig().panel, 0.5)
    from mechcell.models.policy import Trajectory

    batch = [Trajectory(it.key, a) for a in trajs]
    r = np.array([cache(it, t)[0] for t in batch])
    assert r.max() - r.min() > 0.1, r
    hi, lo = int(np.argmax(r)), int(np.argmin(r))
    beta = 0.1
    log_r = torch.tensor(r / beta)
    pairs = [(it.env, t) for t in batch]

    def gap() -> float:
        with torch.no_grad():
            lp = model.log_pf(pairs)
        return float(lp[hi] - lp[lo])

    before = gap()
    assert before < (r[hi] - r[lo]) / beta  # the untrained policy is far from the target ratio
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(20):
        loss = ftb_loss(model.log_pf(pairs) - log_r, alpha=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gap() > before + 0.5


def test_explain_bonus_rewards_covering_more_of_the_signature(
    world: World, items: list[ConditionItem], kb: KnowledgeBase
) -> None:
    """The training reward's explain bonus (data only): 0 weight = the panel reward; an abstention and a rejected
    graph get no bonus; an accepted graph gets weight × the share of the environment's explainable genes that its
    panel-supported expression claims cover (checked against an independent panel run)."""
    from mechcell.models.policy import Trajectory

    it = _item(items, world.strongest())
    env = it.env
    assert env.explainable
    cache = RewardCache(kb, PolicyTrainConfig().panel, 0.5)
    singles = [Trajectory(it.key, (b,)) for b, a in enumerate(env.actions) if a.option == "supported"]
    acc = [t for t in singles if cache(it, t)[1]]
    assert acc, "no accepted single-chain graph in the strongest condition"
    for t in singles[:6]:
        r, ok = cache(it, t)
        assert cache.train_reward(it, t, 0.0) == r
        share = cache.explained(it, env.graph(t.actions))
        assert 0.0 <= share <= 1.0
        assert cache.train_reward(it, t, 0.5) == pytest.approx(r + (0.5 * share if ok else 0.0))
    assert cache.train_reward(it, Trajectory(it.key, ()), 0.5) == 0.5
    best = max(acc, key=lambda t: cache.explained(it, env.graph(t.actions)))
    assert cache.explained(it, env.graph(best.actions)) > 0
    # the share is the panel's own per-gene verdicts, recomputed independently
    g = env.graph(best.actions)
    rep = run_panel(g, condition=it.condition, kb=kb, signature=it.signature, settings=PolicyTrainConfig().panel)
    sup = {r.claim_id.split(":", 1)[1] for r in rep.claims if r.kind == "expression" and r.status == "supported"}
    assert cache.explained(it, g) == pytest.approx(len(sup & env.explainable) / len(env.explainable))


def test_t_interval_size_and_power_by_simulation() -> None:
    """Null: the mean of n = 3 i.i.d. normal replicates (the seeds) is μ; unit: the replicate. Size: the 95 %
    interval covers μ in 95 % ± 2 % of 2000 simulated sets; power: a paired shift of 3 sd over n = 5 excludes 0
    in most sets. The stratified bootstrap (unit: the condition within a seed) covers a pooled mean of
    3 strata × 12 normal conditions in ≥ 90 % of 300 sets (percentile intervals undercover a little)."""
    rng = np.random.default_rng(0)
    cover = np.mean([lo <= 0.3 <= hi for _, lo, hi in (t_interval(rng.normal(0.3, 1.0, 3)) for _ in range(2000))])
    assert 0.93 <= cover <= 0.97, cover
    power = np.mean([lo > 0 for _, lo, _ in (t_interval(rng.normal(3.0, 1.0, 5)) for _ in range(500))])
    assert power > 0.9, power
    assert np.isnan(t_interval([1.0])[1]) and np.isnan(t_interval([])[0])
    hits = []
    for i in range(300):
        strata = [rng.normal(mu, 1.0, 12) for mu in (0.0, 0.5, 1.0)]
        _, lo, hi = stratified_bootstrap(strata, n_boot=1000, seed=i)
        hits.append(lo <= 0.5 <= hi)
    assert np.mean(hits) >= 0.9, np.mean(hits)


# ------------------------------------------------------------------------------------------ checkpoints, CLI


def test_train_policy_checkpoint_round_trip(world: World, items: list[ConditionItem], tmp_path: Path) -> None:
    cfg = PolicyTrainConfig(bc_steps=20, steps=3, conditions_per_step=2, samples_per_condition=4)
    res = train_policy(
        world.store, out=tmp_path / "ck", config=cfg, truth=world.root / "world" / "truth.json", holdout=0.25, eval_k=4
    )
    assert len(res.bc_curve) == 20 and len(res.ftb_curve) == 3 and res.panel_calls > 0
    assert [e.name for e in res.evaluations] == ["policy (BC)", "policy (BC + f-TB)", "local"]
    report = json.loads(Path(res.report_json).read_text())
    assert report["config"]["alpha"] == 0.5 and "## f-TB" in Path(res.report_md).read_text()
    model, ck = load_policy(tmp_path / "ck")
    assert ck.training["bc_steps"] == 20 and ck.policy == cfg.policy and ck.weights_sha256
    # identical outputs after reload: log-probs and proposals
    again = copy.deepcopy(model)
    save_policy(tmp_path / "ck2", again)
    reloaded, _ = load_policy(tmp_path / "ck2" / "policy.json")
    pairs = [(it.env, reloaded.sample(it.env, generator=torch.Generator().manual_seed(5))) for it in items]
    with torch.no_grad():
        assert torch.equal(model.log_pf(pairs), reloaded.log_pf(pairs))
    p1 = propose_sync(PolicyProposer(model), items[0].ctx, k=3)
    p2 = propose_sync(PolicyProposer(reloaded), items[0].ctx, k=3)
    assert [p.text for p in p1] == [p.text for p in p2]


def test_bad_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="policy.json"):
        load_policy(tmp_path)
    (tmp_path / "policy.json").write_text("{not json")
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(InputError, match="not a valid policy config"):
        load_policy(tmp_path)


def test_cli_train_policy_json(world: World, tmp_path: Path) -> None:
    from mechcell.cli import app

    store = tmp_path / "store.duckdb"
    shutil.copy(world.store, store)
    out = tmp_path / "pol"
    r = CliRunner().invoke(
        app,
        [
            *("train", "policy", "--store", str(store), "--out", str(out), "--steps", "2", "--bc-steps", "5"),
            *("--explain-weight", "0.25", "--json"),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["checkpoint"] == str(out) and len(doc["ftb_curve"]) == 2 and (out / "weights.pt").is_file()
    assert doc["config"]["explain_weight"] == 0.25
    bad = CliRunner().invoke(app, ["train", "policy", "--store", str(tmp_path / "none.duckdb"), "--out", str(out)])
    assert bad.exit_code == 2 and "no such file" in bad.output


# ------------------------------------------------------------------------------------------ the proposer


def test_policy_proposer_contract_and_pipeline(
    world: World, items: list[ConditionItem], kb: KnowledgeBase, tmp_path: Path
) -> None:
    # an untrained policy that may not abstain (an untrained one's most probable move is often to stop at once)
    ck = save_policy(tmp_path / "ck", PolicyModel(PolicyConfig(seed=4, allow_abstain=False)))
    prop = make_proposer("mechcell.models.policy:policy_proposer", checkpoint=str(ck))
    assert isinstance(prop, Proposer) and prop.name == "policy"
    it = _item(items, world.strongest())
    for p in [prop, make_proposer("mechcell.models.policy:policy_proposer", checkpoint=str(ck), temperature=1.0)]:
        out = propose_sync(p, it.ctx, k=3)
        assert 1 <= len(out) <= 3
        hashes = {q.graph.content_hash() for q in out if q.graph is not None}
        assert len(hashes) == len(out)  # distinct
        for q in out:
            back = parse_text(q.text).graph
            assert q.ok and back is not None and back.content_hash() == q.graph.content_hash()
            assert q.graph.is_valid()
        assert [q.text for q in propose_sync(p, it.ctx, k=3)] == [q.text for q in out]  # deterministic per seed
    # feedback: a contradicted binding removes that target's chains from the next proposals
    first = propose_sync(prop, it.ctx, k=1)[0]
    rep = run_panel(first.graph, condition=it.condition, kb=kb, signature=it.signature)
    bound = next(n.target for n in first.graph.nodes if n.primitive == "binds_to")
    bind_id = next(n.id for n in first.graph.nodes if n.primitive == "binds_to")
    claims = [c.model_copy(update={"status": "contradicted"}) if c.node_id == bind_id else c for c in rep.claims]
    fb = Feedback(round=1, previous=first, report=rep.model_copy(update={"claims": claims}))
    revised = asyncio.run(prop.propose(it.ctx, fb, k=3))
    for q in revised:
        assert all(
            n.target != bound for n in q.graph.nodes if n.primitive in ("binds_to", "modulates_molecule_activity")
        )
        assert q.graph.content_hash() != first.graph.content_hash()
    # inside the real pipeline
    store = tmp_path / "store.duckdb"
    shutil.copy(world.store, store)
    with Pipeline(kb=kb, store=store, proposer=prop, config=FAST) as pipe:
        trace = pipe.run(it.key, reuse=False)
    assert trace.provenance.proposer == "policy" and trace.attempts
    assert all(a.proposer == "policy" for a in trace.attempts)
    assert trace.final_graph is None or trace.final_graph.is_valid()


# ------------------------------------------------------------------------------------------ decoding


class _TableModel(PolicyModel):
    """A hand-made policy over a real environment: fixed step probabilities by the actions taken so far.

    Root: ten `decoys` at 0.09 each, the first step of a longer graph `l1` at 0.08, the rest (stop and every other
    action) sharing 0.02. After l1: its continuation l2 at 0.98. After (l1, l2): stop at 0.98. After a decoy: stop at
    0.5. Elsewhere uniform. So the two-action graph (l1, l2) has P_T ≈ 0.077 and each one-decoy graph 0.045: the
    most probable graph is the longer one, but its first step is only the 11th most probable, so a beam of width 8
    loses it (the round-2 decoder's failure)."""

    def __init__(self, env: Any, decoys: list[int], l1: int, l2: int) -> None:
        super().__init__(PolicyConfig(seed=0))
        self.decoys, self.l1, self.l2 = decoys, l1, l2

    def _probs(self, env: Any, st: Any, valid: list[int]) -> list[float]:
        n = len(valid) + 1  # [stop, *valid]
        p = [0.0] * n

        def assign(fixed: dict[int, float]) -> list[float]:  # fixed: position → probability; the rest share
            rest = [i for i in range(n) if i not in fixed]
            left = 1.0 - sum(fixed.values())
            return [fixed.get(i, left / len(rest) if rest else 0.0) for i in range(n)]

        pos = {b: j + 1 for j, b in enumerate(valid)}
        ch = tuple(st.chosen)
        if ch == ():
            p = assign({**{pos[d]: 0.09 for d in self.decoys}, pos[self.l1]: 0.08})
        elif ch == (self.l1,):
            p = assign({pos[self.l2]: 0.98})
        elif ch == (self.l1, self.l2) or (len(ch) == 1 and ch[0] in self.decoys):
            p = assign({0: 0.98 if ch[0] == self.l1 else 0.5})
        else:
            p = assign({})
        return p

    def step_log_probs(self, env: Any, st: Any, banned: frozenset[int] = frozenset()) -> tuple[list[int], Tensor]:
        valid = env.valid_actions(st, banned)
        p = torch.tensor(self._probs(env, st, valid), dtype=torch.float32)
        return valid, torch.log(p)

    def log_pf(self, items: Any) -> Tensor:
        out = []
        for env, traj in items:
            st, lp = env.initial(), 0.0
            for b in [*traj.actions, None]:
                valid, logp = self.step_log_probs(env, st)
                if not valid:
                    break
                lp += float(logp[0 if b is None else valid.index(b) + 1])
                if b is not None:
                    st = env.step(st, b)
            out.append(lp)
        return torch.tensor(out, dtype=torch.float64)


def test_exact_decoding_finds_the_longer_more_probable_graph_beam_misses_it(
    world: World, items: list[ConditionItem]
) -> None:
    """Null (old decoder): beam search returns the most probable graph. A hand-made model on the real environment
    of the strongest condition gives a two-action graph the highest terminal probability but a first step outside
    the beam's width: beam returns a one-action decoy, exact best-first search the two-action graph. The terminal
    probabilities are checked independently by sampling (2000 draws; unit: the draw) — the longer graph is the
    most frequent."""
    it = _item(items, world.strongest())
    env = it.env
    root = env.valid_actions(env.initial())
    l1 = next(b for b in root if env.valid_actions(env.step(env.initial(), b)))
    l2 = env.valid_actions(env.step(env.initial(), l1))[0]
    decoys = [b for b in root if b != l1][:10]
    assert len(decoys) == 10
    model = _TableModel(env, decoys, l1, l2)
    beam = model.decode(env, 1, method="beam").ranked[0]
    exact = model.decode(env, 1, method="exact")
    assert exact.certified and exact.ranked[0][1].actions == (l1, l2)
    assert len(beam[1].actions) == 1 and beam[1].actions[0] in decoys  # the round-2 decoder's short answer
    assert exact.ranked[0][0] > beam[0] + 0.4  # log 0.077 vs log 0.045
    assert float(model.log_pf([(env, exact.ranked[0][1])])[0]) == pytest.approx(exact.ranked[0][0], abs=1e-5)
    gen = torch.Generator().manual_seed(0)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(2000):
        a = model.sample(env, generator=gen).actions
        counts[a] = counts.get(a, 0) + 1
    assert max(counts, key=counts.__getitem__) == (l1, l2)
    assert counts[(l1, l2)] / 2000 == pytest.approx(math.exp(exact.ranked[0][0]), abs=0.02)
    # the proposer at temperature 0 follows the decoder: exact by default, the old beam on request
    ex = PolicyProposer(model).graphs(env, 1)
    old = PolicyProposer(model, decoding="beam").graphs(env, 1)
    assert ex[0][0].actions == (l1, l2) and old[0][0].actions != (l1, l2)
    with pytest.raises(InputError, match="decoding"):
        PolicyProposer(model, decoding="greedy")


def test_exact_decoding_equals_exhaustive_enumeration(items: list[ConditionItem]) -> None:
    """On small real environments (6 chains, 2 actions at most) a random real policy's top 3 graphs by exact search
    are the top 3 of the full enumeration of every complete trajectory (= every graph, P_B = 1), in order; with a
    budget of one expansion the search says it is not certified and still returns ranked graphs."""
    from mechcell.models.policy import PolicyEnv

    cfg = PolicyConfig(seed=5, max_chains=6, max_steps=2)
    model = PolicyModel(cfg)
    checked = 0
    for it in items[:4]:
        env = PolicyEnv(it.ctx, cfg)
        leaves: list[tuple[float, tuple[int, ...]]] = []

        def walk(st: Any, lp: float) -> None:
            valid, logp = model.step_log_probs(env, st)  # noqa: B023
            if not valid:
                leaves.append((lp, tuple(st.chosen)))  # noqa: B023
                return
            for j, v in enumerate(logp.tolist()):
                if math.isfinite(v):
                    if j == 0:
                        leaves.append((lp + v, tuple(st.chosen)))  # noqa: B023
                    else:
                        walk(env.step(st, valid[j - 1]), lp + v)  # noqa: B023

        walk(env.initial(), 0.0)
        assert math.fsum(math.exp(lp) for lp, _ in leaves) == pytest.approx(1.0, abs=1e-4)
        if len(leaves) < 4:
            continue
        checked += 1
        truth = sorted(leaves, key=lambda d: -d[0])[:3]
        dec = model.decode(env, 3, max_expansions=10_000)
        assert dec.certified
        assert [t.actions for _, t in dec.ranked] == [a for _, a in truth]
        assert [lp for lp, _ in dec.ranked] == pytest.approx([lp for lp, _ in truth], abs=1e-5)
        cut = model.decode(env, 3, max_expansions=1)
        assert not cut.certified and len(cut.ranked) == 3
        assert [lp for lp, _ in cut.ranked] == sorted((lp for lp, _ in cut.ranked), reverse=True)
        assert model.decode(env, 3).ranked == dec.ranked  # deterministic
    assert checked >= 2


def test_mbr_decoding_prefers_the_consensus_of_spread_mass(items: list[ConditionItem], world: World) -> None:
    """Null: the mode is the best summary of P_T. Two one-chain graphs A, B with P_T 0.3 each and their union AB with
    0.2: the mode is A (or B), the expected item-F1 against a draw from P_T is highest for AB (A, B disjoint: for
    equal sizes 0.6 against 0.43), so MBR returns AB; an abstention with most of the mass wins under both."""
    from mechcell.models.policy import Trajectory, consensus

    it = _item(items, world.strongest())
    env = it.env
    root = env.valid_actions(env.initial())
    a, b = next(
        (x, y)
        for x in root
        for y in env.valid_actions(env.step(env.initial(), x))
        if env.masks[x] & env.masks[y] == 0 and y in root
    )
    ta, tb, tab = (Trajectory(it.key, acts) for acts in ((a,), (b,), (a, b)))
    ranked = [(math.log(0.3), ta), (math.log(0.3), tb), (math.log(0.2), tab)]
    assert consensus(env, ranked)[0][1] == tab
    ranked_abstain = [(math.log(0.6), Trajectory(it.key, ())), *ranked[:2]]
    assert consensus(env, ranked_abstain)[0][1].abstain
