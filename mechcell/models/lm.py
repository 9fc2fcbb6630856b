"""LM adapter: f-TB for any `transformers` causal language model (extra `lm`).

    recs = lm_records_from_store("mechcell.duckdb")             # (prompt, completion, reward, group) records
    batch = encode_pairs(tok, [r.prompt for r in recs], [r.completion for r in recs])
    stats = ftb_lm_step(model, opt, batch, rewards, groups, config=LMFTBConfig(alpha=0.5, beta=0.1))

Why this shape: a completion y of a prompt x is one "trajectory" with log π_θ(y|x) = Σ over completion tokens
of log-softmax (prompt and padding masked out; fp32 log-softmax whatever the model's dtype, because bf16
log-probs summed over hundreds of tokens lose the per-token differences that carry the signal). The tempered
f-TB residual of the method note (../shared/methods/ftb.md, "Tempering") is
d = β(log π_θ − log π_ref) − r + ĉ with the DevGrad offset ĉ per prompt group (the attempts of one condition
share a prompt, so the offset is an implicit per-prompt baseline and no log Z head is needed), and the loss
(1/β) ℓ_f(d). `ftb_loss` gets Δ̃ = log π_θ − log π_ref − r/β and `beta`, which is exactly that.

The model is only assumed to be an `nn.Module` whose forward takes `input_ids`, `attention_mask`,
`position_ids` and returns an object with `.logits` (every `transformers` causal LM does); `transformers`
itself is imported only by `tiny_causal_lm`, so this module imports without the extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from mechcell.errors import InputError, MechcellError
from mechcell.models.ftb import DivergenceName, ftb_loss

__all__ = [
    "LMBatch",
    "LMFTBConfig",
    "LMRecord",
    "LMStepStats",
    "encode_pairs",
    "ftb_lm_loss",
    "ftb_lm_step",
    "group_ids",
    "lm_records",
    "lm_records_from_parquet",
    "lm_records_from_store",
    "sequence_logprobs",
    "tiny_causal_lm",
]


# ------------------------------------------------------------------------------------------------ records


class LMRecord(BaseModel):
    """One reward-labelled completion: what an LM trainer needs from one attempt of the trace store."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = 1
    prompt: str
    completion: str
    reward: float
    group: str = Field(description="prompt group for DevGrad: the condition key (its attempts share the prompt)")
    trace_id: str | None = None
    attempt: int | None = None
    valid: bool = True
    accepted: bool = False


def lm_records(
    rows: Iterable[Mapping[str, Any]], *, valid_only: bool = False, min_group_size: int = 2
) -> list[LMRecord]:
    """Rows of the trace store's reward view (`reward_rows` / `export_traces(..., "rewards")`) → records.

    Rows with empty text are dropped (nothing to score). Groups with fewer than `min_group_size` completions are
    dropped too: with DevGrad a singleton group has residual 0 whatever its reward, so it only costs compute.
    The group is the prompt itself (two traces of one condition under different KB versions see different
    contexts, hence different prompts); `group` keeps the condition key for readability when prompts agree.
    """
    out: list[LMRecord] = []
    for i, r in enumerate(rows):
        missing = [k for k in ("prompt", "text", "reward") if k not in r]
        if missing:
            raise InputError(f"reward row {i}: missing column(s) {', '.join(missing)} (expected the 'rewards' view)")
        text = r["text"]
        if not text:
            continue
        valid = bool(r.get("valid", True))
        if valid_only and not valid:
            continue
        reward = r["reward"]
        if reward is None or not isinstance(reward, int | float) or reward != reward:
            raise InputError(f"reward row {i} (trace {r.get('trace_id')!r}): reward must be a number, got {reward!r}")
        out.append(
            LMRecord(
                prompt=str(r["prompt"]),
                completion=str(text),
                reward=float(reward),
                group=str(r.get("condition_key") or r["prompt"]),
                trace_id=r.get("trace_id"),
                attempt=r.get("attempt"),
                valid=valid,
                accepted=bool(r.get("accepted", False)),
            )
        )
    by_prompt: dict[str, int] = {}
    for rec in out:
        by_prompt[rec.prompt] = by_prompt.get(rec.prompt, 0) + 1
    return [rec for rec in out if by_prompt[rec.prompt] >= min_group_size]


def lm_records_from_store(
    store: str | Path, *, accepted_only: bool = False, valid_only: bool = False, min_group_size: int = 2
) -> list[LMRecord]:
    """Every attempt in the trace store (read-only) as an LM record; see `lm_records` for the filters."""
    from mechcell.datasets.export import reward_rows
    from mechcell.datasets.traces import TraceStore

    path = Path(store)
    if not path.exists():
        raise InputError(f"trace store {str(path)!r} does not exist")
    rows: list[dict[str, Any]] = []
    with TraceStore(path, read_only=True) as ts:
        for t in ts.iter_docs():
            if accepted_only and not t.metrics.accepted:
                continue
            rows.extend(reward_rows(t))
    return lm_records(rows, valid_only=valid_only, min_group_size=min_group_size)


def lm_records_from_parquet(path: str | Path, *, valid_only: bool = False, min_group_size: int = 2) -> list[LMRecord]:
    """Records from a file written by `export_traces(store, path, "rewards")` (`mechcell traces export`)."""
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise InputError(f"rewards export {str(p)!r} does not exist")
    return lm_records(pq.read_table(p).to_pylist(), valid_only=valid_only, min_group_size=min_group_size)


def group_ids(records: Sequence[LMRecord]) -> Tensor:
    """Dense integer group labels (by prompt, first-seen order) for `ftb_loss(groups=...)`."""
    seen: dict[str, int] = {}
    return torch.tensor([seen.setdefault(r.prompt, len(seen)) for r in records], dtype=torch.long)


# ------------------------------------------------------------------------------------------------ tokens


class _Encoder(Protocol):
    def encode(self, text: str, *args: Any, **kwargs: Any) -> list[int]: ...


class LMBatch(BaseModel):
    """Right-padded token ids with the masks that decide which log-probs count."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    input_ids: Tensor  # (B, T) long
    attention_mask: Tensor  # (B, T) long: 1 on prompt and completion tokens
    completion_mask: Tensor  # (B, T) bool: True on completion tokens only

    def to(self, device: torch.device | str) -> LMBatch:
        return LMBatch(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            completion_mask=self.completion_mask.to(device),
        )


def _encode(tokenizer: _Encoder, text: str) -> list[int]:
    try:
        ids = tokenizer.encode(text, add_special_tokens=False)  # transformers tokenizers: no BOS/EOS here
    except TypeError:
        ids = tokenizer.encode(text)
    return [int(i) for i in ids]


def _pad_id(tokenizer: Any, pad_id: int | None) -> int:
    if pad_id is not None:
        return int(pad_id)
    for name in ("pad_token_id", "eos_token_id"):
        v = getattr(tokenizer, name, None)
        if v is not None:
            return int(v)
    return 0


def encode_pairs(
    tokenizer: _Encoder,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    max_length: int | None = None,
    pad_id: int | None = None,
    eos: bool = False,
) -> LMBatch:
    """Tokenise prompt and completion separately and concatenate (so the boundary is exact), right-pad.

    `tokenizer` is any object with `encode(text) -> list[int]` (a `transformers` tokenizer, or a hand-made one).
    `eos=True` appends the tokenizer's EOS to each completion, so "stop here" is scored too. `max_length`
    truncates the prompt from the left (the completion is what is scored and is never cut); a completion that
    alone exceeds it is an error.
    """
    if len(prompts) != len(completions):
        raise InputError(f"encode_pairs: {len(prompts)} prompts but {len(completions)} completions")
    if not prompts:
        raise InputError("encode_pairs: no prompt/completion pairs")
    eos_id = getattr(tokenizer, "eos_token_id", None) if eos else None
    if eos and eos_id is None:
        raise InputError("encode_pairs: eos=True but the tokenizer has no eos_token_id")
    seqs: list[tuple[list[int], list[int]]] = []
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        pi, ci = _encode(tokenizer, p), _encode(tokenizer, c)
        if eos_id is not None:
            ci = [*ci, int(eos_id)]
        if not pi:
            raise InputError(f"encode_pairs: prompt {i} encodes to no tokens (the first completion token needs one)")
        if not ci:
            raise InputError(f"encode_pairs: completion {i} encodes to no tokens")
        if max_length is not None:
            if len(ci) >= max_length:
                raise InputError(
                    f"encode_pairs: completion {i} has {len(ci)} tokens, max_length={max_length} leaves no prompt"
                )
            pi = pi[-(max_length - len(ci)) :]
        seqs.append((pi, ci))
    t_max = max(len(pi) + len(ci) for pi, ci in seqs)
    pad = _pad_id(tokenizer, pad_id)
    ids = torch.full((len(seqs), t_max), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), t_max), dtype=torch.long)
    comp = torch.zeros((len(seqs), t_max), dtype=torch.bool)
    for b, (pi, ci) in enumerate(seqs):
        n = len(pi) + len(ci)
        ids[b, :n] = torch.tensor(pi + ci, dtype=torch.long)
        att[b, :n] = 1
        comp[b, len(pi) : n] = True
    return LMBatch(input_ids=ids, attention_mask=att, completion_mask=comp)


# ------------------------------------------------------------------------------------------------ log-probs


def sequence_logprobs(model: nn.Module, batch: LMBatch, *, per_token: bool = False) -> Tensor:
    """log π(completion | prompt) per row (B,) in float32: Σ over completion tokens of the fp32 log-softmax.

    Position ids come from the attention mask, so any padding side gives the same numbers; padded positions are
    masked from attention and from the sum. `per_token=True` returns the (B, T−1) masked token log-probs instead.
    """
    ids, att, comp = batch.input_ids, batch.attention_mask, batch.completion_mask
    if ids.ndim != 2 or ids.shape != att.shape or ids.shape != comp.shape:
        raise InputError(
            f"sequence_logprobs: input_ids {tuple(ids.shape)}, attention_mask {tuple(att.shape)} and "
            f"completion_mask {tuple(comp.shape)} must be the same (B, T)"
        )
    if bool((comp & (att == 0)).any()):
        raise InputError("sequence_logprobs: completion_mask marks padded positions")
    if bool(comp[:, 0].any()):
        raise InputError("sequence_logprobs: a completion starts at position 0 (it needs at least one prompt token)")
    position_ids = (att.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=att, position_ids=position_ids)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, Tensor) or logits.shape[:2] != ids.shape:
        raise MechcellError("sequence_logprobs: the model must return logits shaped (B, T, vocab)")
    logits = logits[:, :-1].float()  # position t predicts token t+1
    target = ids[:, 1:]
    tok = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    mask = comp[:, 1:]
    tok = torch.where(mask, tok, torch.zeros_like(tok))  # where, not ×: a masked −inf must not become NaN
    return tok if per_token else tok.sum(-1)


# ------------------------------------------------------------------------------------------------ f-TB


class LMFTBConfig(BaseModel):
    """The tempered f-TB objective for an LM, stored with a checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = 1
    divergence: DivergenceName = "alpha"
    alpha: float = 1.0
    beta: float = Field(default=0.1, gt=0, description="temperature: target π_ref·exp(r/β); rewards on [0, 1]")
    max_grad_norm: float | None = Field(default=1.0, gt=0)


def ftb_lm_loss(
    logp: Tensor,
    ref_logp: Tensor,
    rewards: Tensor,
    groups: Tensor,
    *,
    config: LMFTBConfig | None = None,
    reduction: str = "mean",
) -> Tensor:
    """(1/β) ℓ_f(β(log π_θ − log π_ref) − r + ĉ_group): DevGrad per prompt group, tempered by β.

    All inputs are (B,); `ref_logp` and `rewards` carry no gradient. The target distribution of a group is
    π_ref(y|x)·exp(r(y)/β) normalised over its completions; the loss is 0 with zero gradient exactly when the
    policy's log-ratios to π_ref match r/β up to the group's constant (e.g. equal rewards at θ = θ_ref).
    """
    cfg = config or LMFTBConfig()
    if not (logp.shape == ref_logp.shape == rewards.shape == groups.shape) or logp.ndim != 1:
        raise InputError(
            f"ftb_lm_loss: logp {tuple(logp.shape)}, ref_logp {tuple(ref_logp.shape)}, rewards "
            f"{tuple(rewards.shape)} and groups {tuple(groups.shape)} must all be the same (B,)"
        )
    r = rewards.detach().to(logp.dtype)
    if not bool(torch.isfinite(r).all()):
        raise InputError("ftb_lm_loss: rewards contain NaN/inf")
    delta = logp - ref_logp.detach().to(logp.dtype) - r / cfg.beta
    return ftb_loss(
        delta,
        divergence=cfg.divergence,
        alpha=cfg.alpha,
        normaliser="devgrad",
        groups=groups,
        beta=cfg.beta,
        reduction=reduction,  # type: ignore[arg-type]
    )


class LMStepStats(BaseModel):
    model_config = ConfigDict(frozen=True)
    loss: float
    grad_norm: float
    mean_logp: float
    mean_log_ratio: float = Field(description="mean of log π_θ − log π_ref before the step")


def ftb_lm_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: LMBatch,
    rewards: Tensor,
    groups: Tensor,
    *,
    ref_logp: Tensor | None = None,
    config: LMFTBConfig | None = None,
) -> LMStepStats:
    """One optimiser step of tempered f-TB on a batch of scored completions.

    `ref_logp=None` takes π_ref = the current policy (θ_old, detached): on-policy, with the tempered reverse-KL
    member this is the Kimi K1.5 update. For off-policy data or several steps on one batch, compute `ref_logp`
    once (under `torch.no_grad()`) from the generating / reference policy and pass it each time.
    """
    cfg = config or LMFTBConfig()
    model.train()
    logp = sequence_logprobs(model, batch)
    ref = logp.detach() if ref_logp is None else ref_logp.to(logp.device)
    loss = ftb_lm_loss(logp, ref, rewards.to(logp.device), groups.to(logp.device), config=cfg)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if cfg.max_grad_norm is not None:
        gn = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    else:
        gn = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params])) if params else None
    optimizer.step()
    return LMStepStats(
        loss=float(loss.detach()),
        grad_norm=float(gn) if gn is not None else 0.0,
        mean_logp=float(logp.detach().mean()),
        mean_log_ratio=float((logp.detach() - ref).mean()),
    )


# ------------------------------------------------------------------------------------------------ tiny model


def tiny_causal_lm(
    vocab_size: int,
    *,
    seed: int = 0,
    n_layer: int = 1,
    n_embd: int = 32,
    n_ctx: int = 256,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
) -> nn.Module:
    """A randomly initialised GPT-2 built from a config (nothing downloaded): for tests and smoke runs."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MechcellError("the LM adapter needs the `lm` extra: pip install 'mechcell[lm]'") from e
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_ctx,
        n_layer=n_layer,
        n_head=2,
        n_embd=n_embd,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=bos_token_id,  # GPT-2's default 50256 lies outside a tiny vocabulary
        eos_token_id=eos_token_id,
    )
    return GPT2LMHeadModel(cfg)
