"""The LM adapter end to end on a tiny randomly initialised GPT-2 (built from a config, nothing downloaded) with a
hand-made character tokenizer: masks, the tempered DevGrad f-TB update, and the exporter from a real trace store.

Deterministic checks (no sampling): the unit is one prompt/completion pair or one prompt group; nulls are stated
per test."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

from mechcell.datasets.export import export_traces  # noqa: E402
from mechcell.datasets.schemas import Condition  # noqa: E402
from mechcell.datasets.traces import Attempt, Provenance, Trace, TraceConfig, TraceStore, trace_id  # noqa: E402
from mechcell.errors import InputError  # noqa: E402
from mechcell.models.lm import (  # noqa: E402
    LMBatch,
    LMFTBConfig,
    encode_pairs,
    ftb_lm_loss,
    ftb_lm_step,
    group_ids,
    lm_records_from_parquet,
    lm_records_from_store,
    sequence_logprobs,
    tiny_causal_lm,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,:|-+>\n()"


class CharTokenizer:
    """One id per character; 0 = pad, 1 = eos, unknown characters map to 2."""

    pad_token_id = 0
    eos_token_id = 1

    def __init__(self) -> None:
        self.vocab = {c: i + 3 for i, c in enumerate(ALPHABET)}
        self.vocab_size = len(self.vocab) + 3

    def encode(self, text: str) -> list[int]:
        return [self.vocab.get(c, 2) for c in text.lower()]


@pytest.fixture
def tok() -> CharTokenizer:
    return CharTokenizer()


@pytest.fixture
def model(tok: CharTokenizer) -> torch.nn.Module:
    m = tiny_causal_lm(tok.vocab_size, seed=0, eos_token_id=tok.eos_token_id)
    m.eval()
    return m


def _single(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """Σ_{t≥1} log p(ids_t | ids_<t) of one unpadded sequence, computed independently of the adapter."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(input_ids=x).logits[0, :-1].double()
    lp = torch.log_softmax(logits, -1).gather(-1, x[0, 1:, None]).squeeze(-1)
    return lp.sum()


def test_completion_logprob_is_chain_rule_difference(model: torch.nn.Module, tok: CharTokenizer) -> None:
    """Null: the prompt is masked, so log π(c|p) = log p(p+c) − log p(p) from separate unpadded runs; and padding
    (rows of different lengths in one batch) changes nothing."""
    prompts = ["drug a in cell x:", "b:", "a much longer prompt about drug c in line y:"]
    comps = [" up", " tf1 > gene2 down", " x"]
    batch = encode_pairs(tok, prompts, comps)
    assert batch.input_ids.shape[0] == 3 and bool((batch.attention_mask == 0).any())  # padding is really there
    with torch.no_grad():
        got = sequence_logprobs(model, batch).double()
    for b, (p, c) in enumerate(zip(prompts, comps, strict=True)):
        pi, ci = tok.encode(p), tok.encode(c)
        want = _single(model, pi + ci) - _single(model, pi)
        assert got[b].item() == pytest.approx(want.item(), abs=1e-4)
        assert int(batch.completion_mask[b].sum()) == len(ci)


def test_pad_values_and_prompt_positions_do_not_leak(model: torch.nn.Module, tok: CharTokenizer) -> None:
    """Null: changing the token ids under padding leaves completion log-probs identical, while changing one prompt
    token does change them (the mask is not hiding the prompt from the model, only from the sum); per-token
    log-probs are exactly zero off the completion."""
    batch = encode_pairs(tok, ["short:", "a longer prompt:"], [" yes", " no"])
    pad = batch.attention_mask == 0
    noisy = batch.input_ids.clone()
    noisy[pad] = torch.randint(3, tok.vocab_size, (int(pad.sum()),), generator=torch.Generator().manual_seed(0))
    other = LMBatch(input_ids=noisy, attention_mask=batch.attention_mask, completion_mask=batch.completion_mask)
    with torch.no_grad():
        a, b = sequence_logprobs(model, batch), sequence_logprobs(model, other)
        per = sequence_logprobs(model, batch, per_token=True)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert bool((per[~batch.completion_mask[:, 1:]] == 0).all())
    edited = batch.input_ids.clone()
    edited[0, 0] = tok.vocab["z"] if edited[0, 0] != tok.vocab["z"] else tok.vocab["y"]
    changed = LMBatch(input_ids=edited, attention_mask=batch.attention_mask, completion_mask=batch.completion_mask)
    with torch.no_grad():
        c = sequence_logprobs(model, changed)
    assert abs(float(c[0] - a[0])) > 1e-6 and float(c[1] - a[1]) == pytest.approx(0.0, abs=1e-5)


def _log_shares(model: torch.nn.Module, batch: LMBatch, groups: torch.Tensor) -> torch.Tensor:
    """log π(y | x) renormalised over each group's completions (B,), float64."""
    with torch.no_grad():
        lp = sequence_logprobs(model, batch).double()
    out = torch.empty_like(lp)
    for g in groups.unique():
        sel = groups == g
        out[sel] = torch.log_softmax(lp[sel], 0)
    return out


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_one_update_moves_mass_to_high_reward(tok: CharTokenizer, alpha: float) -> None:
    """Two prompt groups of four equal-length completions, rewards on [0, 1]; three tempered f-TB steps (fixed
    seed, π_ref = the initial policy) must raise each group's best completion's within-group log-share, its
    log-odds against the worst, and the group's expected reward. Control: reversed rewards pass the same checks
    with the roles swapped, so the direction comes from the rewards, not from the model's initial tilt."""
    prompts = ["drug a:"] * 4 + ["drug b:"] * 4
    comps = [" tf1 up", " tf2 up", " tf3 dn", " nonexx"] * 2  # equal lengths: comparable initial shares
    rewards = torch.tensor([1.0, 0.3, 0.1, 0.0, 0.8, 0.5, 0.2, 0.0])  # both groups rank alike
    groups = torch.tensor([0] * 4 + [1] * 4)
    batch = encode_pairs(tok, prompts, comps, eos=True)
    cfg = LMFTBConfig(alpha=alpha, beta=0.2)

    def run(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Within-group log-shares before and after three steps."""
        m = tiny_causal_lm(tok.vocab_size, seed=1, eos_token_id=tok.eos_token_id)
        with torch.no_grad():
            ref = sequence_logprobs(m, batch)
        before = _log_shares(m, batch, groups)
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        for _ in range(3):
            ftb_lm_step(m, opt, batch, r, groups, ref_logp=ref, config=cfg)
        m.eval()
        return before, _log_shares(m, batch, groups)

    for r in (rewards, rewards.view(2, 4).flip(-1).reshape(-1)):
        before, after = run(r)
        for g in (0, 1):
            sel = groups == g
            best, worst = int(torch.argmax(r[sel])), int(torch.argmin(r[sel]))
            moved = after[sel] - before[sel]
            assert moved[best] > 0.1 and moved[best] - moved[worst] > 0.5
            exp_r = (after[sel].exp() * r[sel].double()).sum() - (before[sel].exp() * r[sel].double()).sum()
            assert exp_r > 0.1  # expected reward under the group's renormalised shares goes up


def test_equal_rewards_at_reference_give_zero_gradient(model: torch.nn.Module, tok: CharTokenizer) -> None:
    """Null: with equal rewards in a group and θ = θ_ref every residual is 0 after the DevGrad offset, so the loss
    and its gradient vanish (the offset is the per-prompt baseline); unequal rewards give a nonzero gradient."""
    batch = encode_pairs(tok, ["p:"] * 3, [" a", " bb", " c"])
    groups = torch.zeros(3, dtype=torch.long)
    for rewards, zero in ((torch.full((3,), 0.7), True), (torch.tensor([1.0, 0.0, 0.5]), False)):
        model.zero_grad()
        logp = sequence_logprobs(model, batch)
        loss = ftb_lm_loss(logp, logp.detach(), rewards, groups, config=LMFTBConfig(alpha=0.5, beta=0.1))
        loss.backward()
        gn = sum(float(p.grad.norm()) for p in model.parameters() if p.grad is not None)
        assert (gn < 1e-5) is zero and (float(loss.detach()) < 1e-10) is zero


def test_bad_inputs_are_typed_errors(model: torch.nn.Module, tok: CharTokenizer) -> None:
    with pytest.raises(InputError, match="prompt 0"):
        encode_pairs(tok, [""], [" a"])
    with pytest.raises(InputError, match="2 prompts but 1"):
        encode_pairs(tok, ["a", "b"], [" a"])
    with pytest.raises(InputError, match="max_length"):
        encode_pairs(tok, ["p"], [" long completion"], max_length=4)
    x = torch.zeros(3)
    with pytest.raises(InputError, match="same"):
        ftb_lm_loss(x, x, torch.zeros(2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="does not exist"):
        lm_records_from_store(Path("/nonexistent/store.duckdb"))


def _trace(cond: Condition, texts_rewards: list[tuple[str, float | None]]) -> Trace:
    cfg = TraceConfig(proposer="local", kb_version="test-kb")
    attempts = [
        Attempt(
            index=i,
            round=0,
            candidate=i,
            proposer="local",
            text=text,
            report={"claims": []} if reward is not None else None,
            reward=reward,
            accepted=reward is not None and reward >= 0.5,
        )
        for i, (text, reward) in enumerate(texts_rewards)
    ]
    return Trace(
        id=trace_id(cond.key, cfg),
        condition=cond,
        config=cfg,
        status="accepted",
        context_text="TF1 regulates GENE2.",
        attempts=attempts,
        final_attempt=0,
        provenance=Provenance(proposer="local", kb_version="test-kb", code_version="test", seed=0),
    )


def test_exporter_reads_the_reward_view_of_a_real_store(tmp_path: Path, tok: CharTokenizer) -> None:
    """Records from the store and from its 'rewards' Parquet export agree, group by prompt, carry the rewards
    (unparsable attempts as 0 with valid=False), drop empty texts and singleton groups."""
    store = tmp_path / "s.duckdb"
    c1 = Condition(perturbation="druga", dose=1.0, dose_unit="uM", context="CVCL_1", batch="p1")
    c2 = Condition(perturbation="drugb", dose=1.0, dose_unit="uM", context="CVCL_1", batch="p1")
    c3 = Condition(perturbation="drugc", dose=1.0, dose_unit="uM", context="CVCL_1", batch="p1")
    with TraceStore(store) as ts:
        ts.put(_trace(c1, [("<g>tf1 up</g>", 0.9), ("garbage", None), ("<g>tf2</g>", 0.2)]))
        ts.put(_trace(c2, [("<g>tf3</g>", 0.4), ("", None), ("<g>tf4</g>", 0.1)]))
        ts.put(_trace(c3, [("<g>only</g>", 0.5)]))
    recs = lm_records_from_store(store)
    assert [(r.group, r.completion, r.reward, r.valid) for r in recs] == [
        (c1.key, "<g>tf1 up</g>", 0.9, True),
        (c1.key, "garbage", 0.0, False),
        (c1.key, "<g>tf2</g>", 0.2, True),
        (c2.key, "<g>tf3</g>", 0.4, True),
        (c2.key, "<g>tf4</g>", 0.1, True),
    ]
    assert group_ids(recs).tolist() == [0, 0, 0, 1, 1]
    assert "druga" in recs[0].prompt and "TF1 regulates GENE2." in recs[0].prompt
    pq_path = export_traces(store, tmp_path / "r.parquet", "rewards").path
    assert lm_records_from_parquet(pq_path) == recs
    assert len(lm_records_from_store(store, valid_only=True)) == 4
    # the records feed the adapter directly
    batch = encode_pairs(tok, [r.prompt for r in recs], [r.completion for r in recs])
    m = tiny_causal_lm(tok.vocab_size, seed=0, n_ctx=512, eos_token_id=tok.eos_token_id)
    logp = sequence_logprobs(m, batch)
    loss = ftb_lm_loss(logp, logp.detach(), torch.tensor([r.reward for r in recs]), group_ids(recs))
    assert torch.isfinite(loss.detach()) and float(loss.detach()) > 0
