"""The demo job: on a fresh machine, a synthetic Tahoe-style world explained end to end with the local proposer.

    result = run_demo()            # what `make demo` / `mechcell demo` runs

Steps: the starter KB (or `kb=` real tables) → a small synthetic world with planted mechanisms (`demo_out/world`)
→ registered in the project store (`./mechcell.duckdb` by default, so `mechcell chat` and `mechcell serve` find it
next) → signatures of a dozen conditions (one per drug, doses and cell lines in rotation) → the pipeline on each →
the traces in the store → recovery against the world's truth (`mechcell.eval`) → a markdown report with plots.

Rerunning reuses what is already there: the same world (same config and KB) is not regenerated, stored signatures
and traces with the same ids are not recomputed — a second `make demo` takes seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from mechcell.config import Settings
    from mechcell.datasets.synthetic import SyntheticWorldConfig, Truth

__all__ = ["DemoConfig", "DemoResult", "DemoRow", "choose_conditions", "run_demo"]


class DemoConfig(BaseModel):
    """The demo's knobs; the defaults are what `make demo` runs."""

    model_config = ConfigDict(frozen=True)

    out_dir: Path = Field(Path("demo_out"), description="world data and the report go here")
    store_path: Path | None = Field(None, description="project store (default: Settings.store_path)")
    kb: str | None = Field(None, description="KB store or source directory (default: the starter KB)")
    seed: int = 0
    n_conditions: int = Field(12, ge=1)
    proposer: str = "local"
    n_candidates: int = Field(3, ge=1)
    max_rounds: int = Field(2, ge=0)
    use_cells: bool = Field(False, description="distributional tests on cells (thorough, ~10× slower)")
    n_permutations: int = Field(1000, ge=50)
    world: dict[str, Any] = Field(default_factory=dict, description="SyntheticWorldConfig overrides")

    def world_config(self) -> SyntheticWorldConfig:
        from mechcell.datasets.synthetic import SyntheticWorldConfig

        return SyntheticWorldConfig(**{"seed": self.seed, "kb": self.kb, **self.world})


class DemoRow(BaseModel):
    """One line of the demo table."""

    model_config = ConfigDict(frozen=True)

    key: str
    active: bool
    status: str
    mechanism: str
    factual_precision: float | None = None
    expression_precision: float | None = None
    recovered: bool | None = Field(
        None, description="active: a planted target → TF → gene path is in the graph; inactive: no claim was made"
    )
    edge_precision: float | None = None
    edge_recall: float | None = None
    trace_id: str | None = None
    seconds: float | None = None


class DemoResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    rows: list[DemoRow]
    summary: dict[str, Any]
    world_dir: str
    store_path: str
    report_path: str
    dataset_id: str
    kb_version: str
    world_reused: bool
    timings: dict[str, float]


def choose_conditions(truth: Truth, n: int) -> list[str]:
    """A dozen (n) conditions: one per drug, doses and cell lines in rotation, so the table shows every drug,
    low and high doses and each cell line. Deterministic."""
    drugs = sorted({c.drug for c in truth.conditions.values()})
    doses = sorted({c.dose for c in truth.conditions.values()})
    lines = sorted({c.context for c in truth.conditions.values()})
    index = {(c.drug, c.dose, c.context): k for k, c in truth.conditions.items()}
    out: list[str] = []
    k = 0
    while len(out) < min(n, len(index)) and k < 10 * max(n, len(index)):
        drug = drugs[k % len(drugs)]
        dose = doses[k % len(doses)]
        line = lines[(k // len(doses) + k // len(drugs)) % len(lines)]
        key = index.get((drug, dose, line))
        if key is not None and key not in out:
            out.append(key)
        k += 1
    for key in sorted(index.values()):  # a design with holes: fill up in key order
        if len(out) >= n:
            break
        if key not in out:
            out.append(key)
    return out


def _world_is_current(world_dir: Path, cfg: SyntheticWorldConfig, kb_version: str) -> bool:
    from mechcell.datasets.synthetic import H5AD_FILE, load_truth

    if not (world_dir / H5AD_FILE).is_file() or not (world_dir / "truth.json").is_file():
        return False
    try:
        truth = load_truth(world_dir)
    except Exception:  # noqa: BLE001 — an unreadable or older truth file: regenerate
        return False
    return truth.config == cfg and truth.kb_version == kb_version


def run_demo(
    config: DemoConfig | None = None,
    *,
    settings: Settings | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_trace: Callable[[Any], None] | None = None,
) -> DemoResult:
    """Run the demo (see the module docstring). `on_stage(message)` reports progress; `on_trace(trace)` each trace."""
    from mechcell.agents.pipeline import Pipeline, PipelineConfig
    from mechcell.agents.proposers import graph_summary
    from mechcell.config import Settings
    from mechcell.datasets.readers import open_dataset
    from mechcell.datasets.schemas import Condition
    from mechcell.datasets.signatures import compute_signatures
    from mechcell.datasets.store import Store
    from mechcell.datasets.synthetic import H5AD_FILE, generate_world, load_truth
    from mechcell.eval.recovery import evaluate_recovery
    from mechcell.eval.report import write_recovery_report
    from mechcell.knowledge import load_kb
    from mechcell.verifiers.base import PanelSettings

    cfg = config or DemoConfig()
    settings = settings or Settings()
    say = on_stage or (lambda _m: None)
    timings: dict[str, float] = {}
    t_all = t = time.perf_counter()

    say("loading the knowledge base" + (f" from {cfg.kb}" if cfg.kb else " (starter)"))
    kb = load_kb(cfg.kb, settings=settings)
    timings["kb"] = time.perf_counter() - t

    t = time.perf_counter()
    out = Path(cfg.out_dir)
    world_dir = out / "world"
    wcfg = cfg.world_config()
    reused = _world_is_current(world_dir, wcfg, kb.version)
    if not reused:
        say(f"generating a synthetic world in {world_dir}")
        generate_world(wcfg, world_dir, layout="h5ad", kb=kb, settings=settings)
    truth = load_truth(world_dir)
    timings["world"] = time.perf_counter() - t

    keys = choose_conditions(truth, cfg.n_conditions)
    store_path = Path(cfg.store_path or settings.store_path)
    with Store(store_path) as store:
        t = time.perf_counter()
        ds = open_dataset(str((world_dir / H5AD_FILE).resolve()), layout="h5ad")
        did = store.register(ds)
        # the chosen conditions and their other doses in the same line: the verifier and the local proposer pool
        # a weak low-dose effect with the drug's higher doses (docs/verifiers.md, dose pooling)
        lines = {(c.perturbation, c.context) for c in map(Condition.from_key, keys)}
        sibs = [
            s.condition.key
            for s in store.condition_summaries(dataset_id=did)
            if (s.condition.perturbation, s.condition.context) in lines and s.condition.key not in keys
        ]
        say(
            f"registering the world in {store_path} and computing {len(keys)} signatures "
            f"(+{len(sibs)} other doses of the same drug and line)"
        )
        rep = compute_signatures(ds, [*keys, *sibs], store=store, dataset_id=did, skip_existing=True)
        failed = {f.key for f in rep.failed}
        keys = [k for k in keys if k not in failed]
        timings["signatures"] = time.perf_counter() - t

        t = time.perf_counter()
        pcfg = PipelineConfig(
            n_candidates=cfg.n_candidates,
            max_rounds=cfg.max_rounds,
            seed=cfg.seed,
            use_cells=cfg.use_cells,
            panel=PanelSettings(seed=cfg.seed, n_permutations=cfg.n_permutations),
        )
        traces = []
        with Pipeline(kb=kb, store=store, proposer=cfg.proposer, settings=settings, config=pcfg) as pipe:
            for i, key in enumerate(keys):
                say(f"explaining {i + 1}/{len(keys)}: {key}")
                tr = pipe.run(key)
                traces.append(tr)
                if on_trace is not None:
                    on_trace(tr)
        timings["pipeline"] = time.perf_counter() - t

    t = time.perf_counter()
    say("scoring against the planted mechanisms and writing the report")
    result = evaluate_recovery(truth, traces, kb=kb, keys=keys)
    s = result.summary
    preamble = [
        f"`mechcell demo`: {len(keys)} conditions of a synthetic Tahoe-style world ({world_dir}), explained by the "
        f"`{cfg.proposer}` proposer ({cfg.n_candidates} candidates, ≤ {cfg.max_rounds} revision rounds, cell-level "
        f"tests {'on' if cfg.use_cells else 'off'}), KB `{kb.version}`, seed {cfg.seed}. Traces are in "
        f"`{store_path}` (dataset `{did}`).",
    ]
    report = write_recovery_report(result, out / "report", title="mechcell demo", preamble=preamble, name="demo")
    timings["report"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_all
    by_key = {t.condition.key: t for t in traces}
    rows = []
    for r in result.rows:
        tr = by_key[r.key]
        rows.append(
            DemoRow(
                key=r.key,
                active=r.active,
                status=r.status,
                mechanism=graph_summary(tr.final_graph) if tr.final_graph is not None else tr.answer,
                factual_precision=r.factual_precision,
                expression_precision=r.expression_precision,
                recovered=r.path_recovered if r.active else r.n_pred == 0,
                edge_precision=r.precision,
                edge_recall=r.recall,
                trace_id=r.trace_id,
                seconds=r.seconds,
            )
        )
    return DemoResult(
        rows=rows,
        summary=s.model_dump(mode="json"),
        world_dir=str(world_dir),
        store_path=str(store_path),
        report_path=str(report),
        dataset_id=did,
        kb_version=kb.version,
        world_reused=reused,
        timings=timings,
    )
