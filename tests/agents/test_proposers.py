"""Proposers on real components: a small synthetic world (real h5ad, real DuckDB store, real signatures), the
starter KB, and — for the LLM proposer — the real OpenAI-compatible test server driven by the real `openai` SDK.

`small_world` is shared with the pipeline, chat and demo tests (imported from here): it is generated once per test
session under pytest's base temp directory.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Reply

from mechcell.agents.llm import LLMClient
from mechcell.agents.proposers import (
    PROPOSERS,
    Feedback,
    LLMProposer,
    LocalProposer,
    Proposal,
    ProposalContext,
    Proposer,
    make_proposer,
    propose_sync,
    register_proposer,
)
from mechcell.datasets.readers import open_dataset
from mechcell.datasets.signatures import compute_signatures
from mechcell.datasets.store import Store
from mechcell.datasets.synthetic import SyntheticWorldConfig, Truth, generate_world, load_truth
from mechcell.errors import InputError
from mechcell.graphs import ActionGraph, parse_text
from mechcell.knowledge import KnowledgeBase, Retriever, load_kb
from mechcell.verifiers.panel import run_panel

# ------------------------------------------------------------------------------------------ shared world

WORLD_CONFIG = SyntheticWorldConfig(
    seed=3,
    n_drugs=4,
    n_cell_lines=1,
    doses=[0.5, 5.0],
    n_genes=400,
    cells_per_condition=150,
    frac_inactive=0.5,
    frac_decoy=0.25,
)


@dataclass
class SmallWorld:
    root: Path
    truth: Truth
    store: Path  # a store holding the dataset and every condition's signature (copy it before writing)
    dataset_id: str

    def copy_store(self, dest: Path) -> Path:
        out = dest / "mechcell.duckdb"
        shutil.copy(self.store, out)
        return out

    def strongest_active(self) -> str:
        act = [c for c in self.truth.conditions.values() if c.active]
        assert act, "the test world has no active condition"
        return max(act, key=lambda c: (c.effect_scale, len(c.up) + len(c.down), c.key)).key

    def inactive(self) -> str:
        off = [c.key for c in self.truth.conditions.values() if not c.active]
        assert off, "the test world has no inactive condition"
        return sorted(off)[0]


def small_world(base: Path) -> SmallWorld:
    """4 drugs × 1 cell line × 2 doses, 150 cells per condition, 400 genes; signatures by the datasets code."""
    root = base / "agents-small-world"
    ready = root / "READY"
    if not ready.is_file():
        if root.exists():
            shutil.rmtree(root)
        generate_world(WORLD_CONFIG, root / "world", layout="h5ad")
        with Store(root / "store.duckdb") as st:
            ds = open_dataset(root / "world" / "world.h5ad")
            did = st.register(ds)
            rep = compute_signatures(ds, None, store=st, dataset_id=did)
            assert not rep.failed, rep.failed
        (root / "dataset_id").write_text(did)
        ready.write_text("ok")
    return SmallWorld(
        root=root,
        truth=load_truth(root / "world"),
        store=root / "store.duckdb",
        dataset_id=(root / "dataset_id").read_text(),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SmallWorld:
    return small_world(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_kb(None)


def context_for(world: SmallWorld, kb: KnowledgeBase, key: str, *, with_signature: bool = True) -> ProposalContext:
    with Store(world.store, read_only=True) as st:
        cond = st.find_condition(key).condition
        sig = st.signature(key) if with_signature else None
    ctx = Retriever(kb).context(cond, sig)
    return ProposalContext(condition=cond, retrieved=ctx, kb=kb, signature=sig, seed=0)


# ------------------------------------------------------------------------------------------ contract


def check_contract(proposals: list[Proposal], k: int) -> None:
    """What every proposer promises: at most k Proposals; a usable one's text parses back to its graph."""
    assert isinstance(proposals, list) and len(proposals) <= k
    for p in proposals:
        assert isinstance(p, Proposal) and p.proposer
        if p.ok:
            assert p.graph is not None and p.failure is None
            back = parse_text(p.text).graph
            assert back is not None and back.content_hash() == p.graph.content_hash()
        else:
            assert p.failure


def test_local_proposer_meets_the_contract(world: SmallWorld, kb: KnowledgeBase) -> None:
    lp = make_proposer("local")
    assert isinstance(lp, Proposer)
    ctx = context_for(world, kb, world.strongest_active())
    for k in (1, 3):
        check_contract(propose_sync(lp, ctx, k=k), k)


def test_llm_proposer_meets_the_contract(openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase) -> None:
    key = world.strongest_active()
    planted = world.truth.condition(key).graph
    assert planted is not None
    openai_server.default = Reply(text=planted)  # every call (report and graph) answers with a valid graph
    proposer = LLMProposer(_client(openai_server), two_step=False)
    assert isinstance(proposer, Proposer)
    check_contract(propose_sync(proposer, context_for(world, kb, key), k=2), 2)


# ------------------------------------------------------------------------------------------ local proposer


def _gene_directions(graph: ActionGraph) -> dict[str, str]:
    return {p.gene: p.direction for p in graph.predicted_signature()}


def test_local_proposer_finds_the_planted_mechanism(world: SmallWorld, kb: KnowledgeBase) -> None:
    """Null being guarded against: a proposer that picks paths and genes without regard to the data. The planted
    targets/TFs and genes come from truth.json; the proposer never sees it."""
    key = world.strongest_active()
    ct = world.truth.condition(key)
    props = propose_sync(LocalProposer(), context_for(world, kb, key), k=3)
    assert props, "an active condition at full effect must get a proposal"
    best = props[0].graph
    assert best is not None and best.is_valid()
    bound = {n.target for n in best.nodes if n.primitive == "binds_to"}
    assert bound & set(ct.targets), f"binds {bound}, planted targets {ct.targets}"
    regulators = {n.regulator for n in best.nodes if n.primitive == "regulates_expression"}
    assert regulators & (set(ct.tfs) | set(ct.pathways))
    planted = {g.gene: ("up" if g.log2fc > 0 else "down") for g in ct.up + ct.down}
    predicted = _gene_directions(best)
    right = sum(planted.get(g) == d for g, d in predicted.items())
    assert len(predicted) >= 5 and right / len(predicted) >= 0.9, (right, predicted)
    # no decoy target of this drug is bound
    decoys = {d.target for d in world.truth.decoys if d.drug == ct.drug}
    assert not bound & decoys


def test_local_proposer_abstains_when_the_drug_does_nothing(world: SmallWorld, kb: KnowledgeBase) -> None:
    """An inactive drug's signature is noise (null true): no retrieved path agrees with it, so no graph."""
    key = world.inactive()
    assert propose_sync(LocalProposer(), context_for(world, kb, key), k=3) == []


def test_local_proposer_is_deterministic(world: SmallWorld, kb: KnowledgeBase) -> None:
    key = world.strongest_active()
    a = propose_sync(LocalProposer(), context_for(world, kb, key), k=3)
    b = propose_sync(LocalProposer(), context_for(world, kb, key), k=3)
    assert [p.graph.content_hash() for p in a if p.graph] == [p.graph.content_hash() for p in b if p.graph]
    assert [p.text for p in a] == [p.text for p in b]


def test_local_proposer_without_data_uses_the_kb_alone(world: SmallWorld, kb: KnowledgeBase) -> None:
    key = world.strongest_active()
    ctx = context_for(world, kb, key, with_signature=False)
    props = propose_sync(LocalProposer(), ctx, k=2)
    assert props
    listed = {r.object for r in kb.drug_targets(ctx.condition.perturbation)}
    for p in props:
        assert p.graph is not None and p.graph.is_valid()
        assert {n.target for n in p.graph.nodes if n.primitive == "binds_to"} <= listed
        # every predicted gene is a regulon / footprint member of its regulator (the KB's own prediction)
        for n in p.graph.nodes:
            if n.primitive == "regulates_expression":
                known = set(kb.regulon(n.regulator)) | set(kb.footprint(n.regulator))
                assert set(n.gene_list) <= known


def test_feedback_drops_a_contradicted_binding_and_tries_another_target(world: SmallWorld, kb: KnowledgeBase) -> None:
    """A graph binding a target the KB does not list for the drug is contradicted by the knowledge verifier;
    the revision must not bind it again and must still propose something measurable."""
    key = world.strongest_active()
    ctx = context_for(world, kb, key)
    drug = ctx.condition.perturbation
    listed = {r.object for r in kb.drug_targets(drug)}
    wrong = next(g for g in ("EGFR", "CDK4", "TOP1", "PARP1", "BRAF") if g not in listed)
    first = propose_sync(LocalProposer(), ctx, k=1)[0]
    assert first.graph is not None
    text = first.text
    for t in {n.target for n in first.graph.nodes if n.primitive in ("binds_to",)}:
        text = text.replace(f'"{t}"', f'"{wrong}"')
    bad = parse_text(text).graph
    assert bad is not None
    report = run_panel(bad, condition=ctx.condition, kb=kb, signature=ctx.signature)
    contradicted = {r.node_id for r in report.claims if r.status == "contradicted" and r.kind == "binding"}
    assert contradicted, report.feedback
    prev = Proposal(proposer="local", text=text, graph=bad)
    revised = propose_sync(LocalProposer(), ctx, Feedback(round=1, previous=prev, report=report), k=5)
    assert revised
    for p in revised:
        assert p.graph is not None and p.graph.is_valid()
        targets = {n.target for n in p.graph.nodes if n.primitive in ("binds_to", "modulates_molecule_activity")}
        assert wrong not in targets
        assert p.graph.content_hash() != bad.content_hash()


def test_feedback_removes_genes_the_data_contradicts(world: SmallWorld, kb: KnowledgeBase) -> None:
    """Flip one gene list's direction: the data contradicts those genes; the revision drops them (or the node)."""
    key = world.strongest_active()
    ctx = context_for(world, kb, key)
    first = propose_sync(LocalProposer(), ctx, k=1)[0]
    g = first.graph
    assert g is not None
    target = next(n for n in g.nodes if n.primitive == "regulates_expression")
    flipped = "up" if target.direction == "down" else "down"
    bad = g.model_copy(
        update={"nodes": [n.model_copy(update={"direction": flipped}) if n.id == target.id else n for n in g.nodes]}
    )
    report = run_panel(bad, condition=ctx.condition, kb=kb, signature=ctx.signature)
    wrong = {
        r.claim_id.split(":", 1)[1] for r in report.claims if r.node_id == target.id and r.status == "contradicted"
    }
    wrong.discard("*")
    assert wrong
    prev = Proposal(proposer="local", text=bad.to_text(), graph=bad)
    revised = LocalProposer().revise(ctx, Feedback(round=1, previous=prev, report=report))
    assert revised
    edit = revised[0]
    assert edit.note.startswith("revision") or "after feedback" in edit.note
    assert edit.graph is not None
    for n in edit.graph.nodes:
        if n.primitive == "regulates_expression" and n.direction == flipped:
            assert not set(n.gene_list) & wrong


# ------------------------------------------------------------------------------------------ registry


def test_registry_names_and_import_paths() -> None:
    assert {"local", "llm", "llm-one-step"} <= set(PROPOSERS)
    assert isinstance(make_proposer("mechcell.agents.proposers:LocalProposer"), LocalProposer)
    with pytest.raises(InputError, match="unknown proposer"):
        make_proposer("nope")
    with pytest.raises(InputError, match="cannot import"):
        make_proposer("mechcell.agents.proposers:Nope")

    @register_proposer("test-not-a-proposer")
    def _bad(**_: Any) -> object:
        return object()

    try:
        with pytest.raises(InputError, match="does not implement"):
            make_proposer("test-not-a-proposer")
    finally:
        PROPOSERS.pop("test-not-a-proposer", None)


# ------------------------------------------------------------------------------------------ LLM proposer

REPORT = (
    "1. Target engagement: the drug inhibits its listed target.\n2. Signalling consequences: activity falls.\n"
    "3. Transcriptional output: the TF's targets move.\n4. Open questions: none."
)


def _client(server: OpenAIServer, **kw: Any) -> LLMClient:
    args: dict[str, Any] = {
        "base_url": server.base_url,
        "model": "test-model",
        "timeout": 5.0,
        "max_retries": 1,
        "backoff_base": 0.01,
        "backoff_max": 0.02,
        "seed": 0,
    }
    args.update(kw)
    return LLMClient(**args)


def _user_text(server: OpenAIServer, i: int) -> str:
    return "\n".join(str(m.get("content")) for m in server.requests[i].body["messages"] if m["role"] != "system")


def test_two_step_answer_parses(openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase) -> None:
    key = world.strongest_active()
    graph_text = world.truth.condition(key).graph
    assert graph_text is not None
    openai_server.script(Reply(text=REPORT), Reply(text=graph_text))
    ctx = context_for(world, kb, key)
    [p] = propose_sync(LLMProposer(_client(openai_server)), ctx, k=1)
    assert p.ok and p.intermediate == REPORT
    assert p.graph is not None and p.graph.content_hash() == parse_text(graph_text).graph.content_hash()  # type: ignore[union-attr]
    assert openai_server.n_requests == 2 and len(p.llm_calls) == 2
    assert any(r.startswith("report/v1@") for r in p.prompts) and any(r.startswith("formalise/v1@") for r in p.prompts)
    # step 1 saw the condition and the retrieved context; step 2 saw the report
    assert key in _user_text(openai_server, 0) and ctx.retrieved.targets[0].gene in _user_text(openai_server, 0)
    assert REPORT in _user_text(openai_server, 1)


def test_malformed_graph_is_repaired(openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase) -> None:
    key = world.strongest_active()
    good = world.truth.condition(key).graph
    assert good is not None
    broken = good.replace('edge("n1"', 'edge("n99"', 1)  # an undeclared id: a located error
    assert not parse_text(broken).ok
    openai_server.script(Reply(text=REPORT), Reply(text=broken), Reply(text=good))
    [p] = propose_sync(LLMProposer(_client(openai_server), max_repairs=2), context_for(world, kb, key), k=1)
    assert p.ok and len(p.repairs) == 2
    assert p.repairs[0]["problems"] and not p.repairs[1]["problems"]
    assert "n99" in _user_text(openai_server, 2)  # the repair prompt named the problem


def test_garbage_is_a_recorded_failure(openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase) -> None:
    key = world.strongest_active()
    openai_server.script(Reply(text=REPORT))
    openai_server.default = Reply(text="I am sorry, I cannot draw graphs. 🙂")
    [p] = propose_sync(LLMProposer(_client(openai_server), max_repairs=1), context_for(world, kb, key), k=1)
    assert not p.ok and p.graph is None and p.failure
    assert len(p.repairs) == 2 and all(r["problems"] for r in p.repairs)
    assert openai_server.n_requests == 3


def test_transport_failure_is_a_recorded_failure(
    openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase
) -> None:
    openai_server.default = Reply.error(503, "overloaded")
    proposer = LLMProposer(_client(openai_server, max_retries=1), two_step=False)
    [p] = propose_sync(proposer, context_for(world, kb, world.strongest_active()), k=1)
    assert not p.ok and "503" in (p.failure or "")
    assert p.llm_calls and p.llm_calls[0]["ok"] is False and p.llm_calls[0]["attempts"] == 2


def test_revision_prompt_carries_the_feedback(
    openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase
) -> None:
    key = world.strongest_active()
    good = world.truth.condition(key).graph
    assert good is not None
    ctx = context_for(world, kb, key)
    graph = parse_text(good).graph
    assert graph is not None
    report = run_panel(graph, condition=ctx.condition, kb=kb, signature=ctx.signature)
    report = report.model_copy(update={"feedback": ["n2 (binding, knowledge): contradicted — a test line"]})
    openai_server.script(Reply(text=good))
    prev = Proposal(proposer="llm", text=good, graph=graph)
    [p] = propose_sync(LLMProposer(_client(openai_server)), ctx, Feedback(round=1, previous=prev, report=report), k=1)
    assert p.ok and openai_server.n_requests == 1
    sent = _user_text(openai_server, 0)
    assert "a test line" in sent and "Your previous graph" in sent


def test_candidates_run_concurrently(openai_server: OpenAIServer, world: SmallWorld, kb: KnowledgeBase) -> None:
    """k candidates are k concurrent requests (bounded by the client's concurrency), each with its own seed."""
    key = world.strongest_active()
    good = world.truth.condition(key).graph
    assert good is not None
    openai_server.default = Reply(text=good, delay=0.2)
    proposer = LLMProposer(_client(openai_server, max_concurrency=4), two_step=False)
    props = asyncio.run(proposer.propose(context_for(world, kb, key), k=4))
    assert all(p.ok for p in props) and openai_server.max_in_flight == 4
    assert sorted(r.body.get("seed") for r in openai_server.requests) == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------ dose pooling


def test_dose_series_lets_the_proposer_read_a_weaker_dose(world: SmallWorld, kb: KnowledgeBase) -> None:
    """With the drug's other dose (verifiers.doses.dose_series) the proposer's gene lists can only grow on an
    active condition, every proposed gene still has this dose's sign, and an inactive drug still gets nothing."""
    from mechcell.verifiers.doses import dose_series

    def with_doses(key: str) -> ProposalContext:
        base = context_for(world, kb, key)
        with Store(world.store, read_only=True) as st:
            doses = dose_series(st, base.condition, dataset_id=world.dataset_id, method=base.signature.method)
        assert doses is not None and doses.siblings, "the test world has two doses per drug"
        return ProposalContext(
            condition=base.condition, retrieved=base.retrieved, kb=kb, signature=base.signature, doses=doses
        )

    def genes(props: list[Proposal]) -> set[tuple[str, str]]:
        return {
            (g, n.direction)
            for p in props
            if p.graph
            for n in p.graph.nodes
            if n.primitive == "regulates_expression"
            for g in n.gene_list
        }

    weakest = min((c for c in world.truth.conditions.values() if c.active), key=lambda c: c.effect_scale).key
    lp = LocalProposer()
    own, pooled = lp.candidates(context_for(world, kb, weakest)), lp.candidates(with_doses(weakest))
    assert len(genes(pooled)) >= len(genes(own)) > 0 or (not own and pooled)
    ctx = with_doses(weakest)
    sig = ctx.signature.to_frame()
    for g, d in genes(pooled):
        assert (sig.loc[g, "log2fc"] > 0) == (d == "up"), (g, d)
    assert lp.candidates(with_doses(world.inactive())) == []


def test_policy_is_registered_by_name_and_needs_a_checkpoint(tmp_path, monkeypatch) -> None:
    """`--proposer policy` loads a trained checkpoint from the option or MECHCELL_POLICY_CHECKPOINT; without one it
    is a clear InputError, never a silently untrained policy."""
    from mechcell.config import Settings
    from mechcell.models.policy import PolicyConfig, PolicyModel, PolicyProposer, save_policy

    with pytest.raises(InputError, match="needs a checkpoint"):
        make_proposer("policy", settings=Settings())
    out = save_policy(tmp_path / "pol", PolicyModel(PolicyConfig(seed=3)))
    monkeypatch.setenv("MECHCELL_POLICY_CHECKPOINT", str(out))
    prop = make_proposer("policy", settings=Settings())
    assert isinstance(prop, PolicyProposer) and "untrained" not in prop.provenance()["model"]
    with pytest.raises(InputError, match="policy checkpoint"):
        make_proposer("policy", settings=Settings(), checkpoint=tmp_path / "missing")
