"""`generate_world`: plan mechanisms from a KB, lay out plates, stream counts to h5ad / Tahoe shards, write truth.

Files written under `out_dir`:
    world.h5ad        AnnData with Tahoe's obs names (layout h5ad / both)
    tahoe/            data/train-*.parquet + metadata/{sample,gene,cell_line,drug}_metadata.parquet (tahoe / both)
    truth.json        `Truth`: planted graphs per condition key, planted genes, decoy edges, design, config
    world.md          a human description of the world
Everything is a function of (config, KB): no clocks, no paths and no machine state go into the files.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mechcell.datasets.schemas import Condition
from mechcell.datasets.synthetic.design import Design, Well, build_design
from mechcell.datasets.synthetic.expression import CHUNK, Block, ExpressionModel, GeneUniverse, build_universe
from mechcell.datasets.synthetic.mechanisms import CellLine, DrugPlan, MechanismPlanner, planted_graph
from mechcell.datasets.synthetic.models import (
    CONTROL_LABEL,
    GENERATOR_VERSION,
    TRUTH_FILE,
    ConditionTruth,
    Layout,
    PlantedGene,
    PlateTruth,
    SampleTruth,
    SyntheticWorldConfig,
    Truth,
    WorldSummary,
)
from mechcell.datasets.synthetic.writers import Batch, H5adWriter, TahoeWriter
from mechcell.errors import InputError

if TYPE_CHECKING:
    from mechcell.config import Settings
    from mechcell.knowledge import KnowledgeBase

H5AD_FILE = "world.h5ad"
TAHOE_DIR = "tahoe"
WORLD_MD = "world.md"
LAYOUTS = ("h5ad", "tahoe", "both")
BATCH_CELLS = 8192
_EMPTY = (np.zeros(0, np.int64), np.zeros(0))


def hill(dose: float, ec50: float, n: float) -> float:
    """Fraction of maximal effect at `dose` (same unit as ec50): dose^n / (dose^n + ec50^n)."""
    return 1.0 / (1.0 + (ec50 / dose) ** n)


def _kb_extras(kb_path: str | None) -> tuple[pd.DataFrame | None, set[str] | None]:
    """Tahoe's gene list (symbols, tokens, Ensembl ids) and assayed cell lines when the KB is a source directory
    holding them (as ../shared/kb does): the world then uses real tokens and Tahoe's own lines."""
    if not kb_path:
        return None, None
    d = Path(kb_path) / "tahoe"
    genes = lines = None
    if (d / "gene_metadata.parquet").is_file():
        g = pd.read_parquet(d / "gene_metadata.parquet", columns=["gene_symbol", "ensembl_id", "token_id"])
        genes = g[g["gene_symbol"].notna() & (g["token_id"] > 2)].reset_index(drop=True)
    if (d / "obs_cell_grid.parquet").is_file():
        lines = set(pd.read_parquet(d / "obs_cell_grid.parquet", columns=["cell_name"])["cell_name"].dropna())
    return genes, lines


class _Condition:
    """Per condition: what the writers need (effect vector, G1 shift) and its truth."""

    def __init__(self, truth: ConditionTruth, effect: tuple[np.ndarray, np.ndarray], g1_shift: float) -> None:
        self.truth = truth
        self.effect = effect
        self.g1_shift = g1_shift


def _conditions(
    cfg: SyntheticWorldConfig,
    planner: MechanismPlanner,
    plans: list[DrugPlan],
    lines: list[CellLine],
    design: Design,
    universe: GeneUniverse,
) -> dict[tuple[str, int, int], _Condition]:
    out: dict[tuple[str, int, int], _Condition] = {}
    by_drug = {p.drug: p for p in plans}
    wells_of: dict[tuple[str, int], list[str]] = {}
    cells_of: dict[tuple[str, int, int], int] = {}
    for w in design.wells:
        if not w.is_control:
            wells_of.setdefault((w.drug, w.plate_index), []).append(w.sample)
            for li, n in enumerate(w.cells):
                cells_of[(w.drug, w.plate_index, li)] = cells_of.get((w.drug, w.plate_index, li), 0) + n
    for (drug, p), samples in wells_of.items():
        plan = by_drug[drug]
        dose = design.plate_dose[p]
        base = plan.base_log2fc()
        genes = sorted(base)
        cols = universe.idx(genes)
        vals = np.array([base[g] for g in genes], dtype=np.float64)
        for li, line in enumerate(lines):
            s = planner.sensitivity(plan, line)
            act = hill(dose, plan.ec50 / s.potency, plan.hill) if plan.active else 0.0
            scale = s.efficacy * act
            active = plan.active and scale >= cfg.min_active_effect
            lfc = vals * scale
            planted = [
                PlantedGene(gene=g, log2fc=round(float(v), 6), via=plan.genes[g][1])
                for g, v in zip(genes, lfc, strict=True)
                if v != 0
            ]
            up = sorted((x for x in planted if x.log2fc > 0), key=lambda x: (-x.log2fc, x.gene))
            down = sorted((x for x in planted if x.log2fc < 0), key=lambda x: (x.log2fc, x.gene))
            key = Condition(
                perturbation=drug, dose=dose, dose_unit=cfg.dose_unit, context=line.context, batch=design.plates[p]
            ).key
            graph = (
                planted_graph(
                    plan,
                    line,
                    dose=dose,
                    unit=cfg.dose_unit,
                    plate=design.plates[p],
                    up=[x.gene for x in up],
                    down=[x.gene for x in down],
                )
                if active
                else None
            )
            shift = plan.arrest * scale
            truth = ConditionTruth(
                key=key,
                drug=drug,
                dose=dose,
                dose_unit=cfg.dose_unit,
                context=line.context,
                cell_line=line.name,
                plate=design.plates[p],
                samples=samples,
                n_cells=cells_of[(drug, p, li)],
                active=active,
                activity=round(act, 6),
                sensitivity=round(s.potency, 6),
                sensitivity_reasons=s.reasons,
                effect_scale=round(scale, 6),
                targets=list(plan.engaged) if plan.active else [],
                tfs=sorted(plan.tfs) if plan.active else [],
                pathways=sorted(plan.pathways) if plan.active else [],
                up=up if plan.active else [],
                down=down if plan.active else [],
                g1_shift=round(shift, 6),
                graph=graph,
            )
            out[(drug, p, li)] = _Condition(truth, (cols, lfc) if plan.active else _EMPTY, shift)
    return out


def _drug_metadata(plans: list[DrugPlan]) -> pd.DataFrame:
    """Tahoe-style drug_metadata: the KB's target annotations — decoys included, as a real annotation would."""
    rows = [{"drug": CONTROL_LABEL, "targets": None, "moa-broad": "vehicle", "moa-fine": "Vehicle"}]
    for p in plans:
        acts = sorted({(t.action or t.predicate) for t in p.targets.values()})
        rows.append(
            {
                "drug": p.drug,
                "targets": ", ".join(sorted(p.targets)) or None,
                "moa-broad": "; ".join(sorted({t.predicate for t in p.targets.values()})) or "unclear",
                "moa-fine": "; ".join(acts) or "unclear",
            }
        )
    df = pd.DataFrame(rows)
    for c in ("human-approved", "clinical-trials", "gpt-notes-approval", "canonical_smiles"):
        df[c] = None
    df["pubchem_cid"] = np.nan
    return df


def _line_metadata(lines: list[CellLine]) -> pd.DataFrame:
    rows = []
    for c in lines:
        base = {"cell_name": c.name, "Cell_ID_DepMap": c.depmap, "Cell_ID_Cellosaur": c.context, "Organ": c.organ}
        drv = c.drivers or [(None, None, None)]
        for g, v, e in drv:
            rows.append(
                {
                    **base,
                    "Driver_Gene_Symbol": g,
                    "Driver_VarZyg": None,
                    "Driver_VarType": None,
                    "Driver_ProtEffect_or_CdnaEffect": v,
                    "Driver_Mech_InferDM": e,
                    "Driver_GeneType_DM": None,
                }
            )
    return pd.DataFrame(rows)


def _prepare_out(out: Path, layout: str) -> None:
    """Refuse to overwrite a `tahoe/` folder that is not ours; remove the previous world's data files."""
    out.mkdir(parents=True, exist_ok=True)
    t = out / TAHOE_DIR
    if t.exists():
        extra = sorted(p.name for p in t.iterdir() if p.name not in ("data", "metadata"))
        if extra or not t.is_dir():
            raise InputError(f"{t} exists and holds {extra[:3]}: not a world written by mechcell; pick another --out")
    for stale in (out / f".{TAHOE_DIR}.partial", out / f"{H5AD_FILE}.partial"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()


def _finish(out: Path, layout: str) -> None:
    """Move the new data into place (a reader never sees a half-written world) and drop the other layout's
    leftovers from an earlier run so the folder holds one consistent world."""
    t = out / TAHOE_DIR
    if layout in ("tahoe", "both"):
        if t.exists():
            shutil.rmtree(t)
        os.replace(out / f".{TAHOE_DIR}.partial", t)
    elif t.exists():
        shutil.rmtree(t)
    h = out / H5AD_FILE
    if layout in ("h5ad", "both"):
        os.replace(out / f"{H5AD_FILE}.partial", h)
    elif h.exists():
        h.unlink()


@dataclass
class WorldPlan:
    """Everything decided before a single count is drawn: mechanisms, lines, genes, plates, conditions, truth.

    `blocks()` then draws the counts, well by well and cell line by cell line, in the order the files hold them.
    """

    config: SyntheticWorldConfig
    plans: list[DrugPlan]
    lines: list[CellLine]
    universe: GeneUniverse
    design: Design
    model: ExpressionModel
    conditions: dict[tuple[str, int, int], _Condition]
    truth: Truth

    def _jobs(self) -> Iterator[tuple[Well, dict]]:
        for w in self.design.wells:
            state = self.model.well_state(w.index)
            for li in range(len(self.lines)):
                c = None if w.is_control else self.conditions[(w.drug, w.plate_index, li)]
                n = w.cells[li]
                prefix = f"{w.plate_index + 1:02d}_{w.index:04d}_{li:02d}_"
                for chunk, start in enumerate(range(0, n, CHUNK)):
                    yield (
                        w,
                        dict(
                            well=w.index,
                            sample=w.index,
                            line=li,
                            plate=w.plate_index,
                            n=min(CHUNK, n - start),
                            effect=c.effect if c else _EMPTY,
                            g1_shift=c.g1_shift if c else 0.0,
                            well_state=state,
                            barcode_prefix=prefix,
                            start=start,
                            chunk=chunk,
                        ),
                    )

    def blocks(self, workers: int = 1) -> Iterator[tuple[Well, Block]]:
        """(well, counts of ≤ CHUNK cells of one cell line in it), streamed in file order.

        `workers` > 1 draws blocks on threads (numpy's samplers release the GIL); every block has its own seeded
        stream, so the output is the same whatever the number of workers. At most 2 × workers blocks are in flight.
        """
        if workers <= 1:
            for w, kw in self._jobs():
                yield w, self.model.sample(**kw)
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="mechcell-synth") as ex:
            pending: deque[tuple[Well, Future[Block]]] = deque()
            for w, kw in self._jobs():
                pending.append((w, ex.submit(self.model.sample, **kw)))
                if len(pending) >= 2 * workers:
                    w0, f = pending.popleft()
                    yield w0, f.result()
            while pending:
                w0, f = pending.popleft()
                yield w0, f.result()


def plan_world(config: SyntheticWorldConfig, kb: KnowledgeBase) -> WorldPlan:
    """Plan a world from a KB: drug mechanisms and decoys, cell lines, gene universe, plates, conditions, truth."""
    tahoe_genes, assayed = _kb_extras(config.kb)
    allowed = set(tahoe_genes["gene_symbol"]) if tahoe_genes is not None else None
    planner = MechanismPlanner(kb, config, allowed_genes=allowed, assayed_lines=assayed)
    plans = planner.plan_drugs()
    lines = planner.plan_lines(plans)
    vocabulary = sorted(allowed) if allowed is not None else kb.genes()
    universe = build_universe(config, plans, vocabulary, tahoe_genes)
    design = build_design(config, plans, lines)
    model = ExpressionModel(config, universe, lines, len(design.plates), plans)
    conds = _conditions(config, planner, plans, lines, design, universe)
    truth = Truth(
        seed=config.seed,
        kb_version=kb.version,
        config=config,
        n_cells=design.n_cells,
        genes=universe.genes,
        cell_lines=[c.truth() for c in lines],
        plates=[
            PlateTruth(plate=p, dose=d, drugs=ds)
            for p, d, ds in zip(design.plates, design.plate_dose, design.plate_drugs, strict=True)
        ],
        samples=[
            SampleTruth(sample=w.sample, plate=w.plate, drug=w.drug, dose=w.dose, n_cells=w.n_cells)
            for w in design.wells
        ],
        drugs=[p.truth() for p in plans],
        conditions={c.truth.key: c.truth for c in sorted(conds.values(), key=lambda c: c.truth.key)},
        decoys=[d for p in plans for d in p.decoys],
    )
    if len(truth.conditions) != len(conds):  # pragma: no cover - two conditions printing one key is a bug
        raise InputError("two conditions of the world print the same key; check the doses")
    return WorldPlan(
        config=config,
        plans=plans,
        lines=lines,
        universe=universe,
        design=design,
        model=model,
        conditions=conds,
        truth=truth,
    )


def generate_world(
    config: SyntheticWorldConfig,
    out_dir: str | Path,
    layout: Layout = "both",
    *,
    kb: KnowledgeBase | None = None,
    settings: Settings | None = None,
    on_progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> WorldSummary:
    """Generate a world with known mechanisms and write it under `out_dir` (see the module docstring).

    `kb` overrides `config.kb` (an open KnowledgeBase; its version is recorded). `on_progress(n)` is called with
    the number of cells written after each batch. `workers`: threads drawing counts (default: the cores, ≤ 4).
    Same config and KB → byte-identical files, whatever `workers`.
    """
    from mechcell.knowledge import load_kb

    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    _prepare_out(out, layout)
    own = kb is None
    kb = kb if kb is not None else load_kb(config.kb, settings=settings)
    try:
        world = plan_world(config, kb)
    finally:
        if own:
            kb.close()
    truth, design, universe, lines = world.truth, world.design, world.universe, world.lines
    uns = {
        "mechcell_synthetic": {
            "seed": config.seed,
            "kb_version": truth.kb_version,
            "generator_version": GENERATOR_VERSION,
            "truth": TRUTH_FILE,
        }
    }
    h5 = H5adWriter(out / f"{H5AD_FILE}.partial", universe, design, lines, uns) if layout != "tahoe" else None
    th = (
        TahoeWriter(out / f".{TAHOE_DIR}.partial", universe, design, lines, config.cells_per_shard)
        if layout != "h5ad"
        else None
    )
    stats: dict[int, list[float]] = {}
    buf: list[Block] = []
    buffered = 0

    # The writers run on their own thread (Arrow's parquet encoder and HDF5 I/O overlap with drawing counts); the
    # queue holds at most two batches, so memory stays one batch deep whatever the size of the world.
    handoff: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
    failed: list[BaseException] = []

    def write() -> None:
        while (b := handoff.get()) is not None:
            if failed:
                continue  # drain after an error so the producer never blocks
            try:
                if h5 is not None:
                    h5.append(b)
                if th is not None:
                    th.append(b)
            except BaseException as exc:  # re-raised on the calling thread
                failed.append(exc)

    writer = threading.Thread(target=write, name="mechcell-synth-writer", daemon=True)
    writer.start()

    def flush() -> None:
        nonlocal buf, buffered
        if buf:
            b = Batch.of(buf)
            handoff.put(b)
            if failed:
                raise failed[0]
            if on_progress is not None:
                on_progress(b.n)
        buf, buffered = [], 0

    try:
        try:
            for w, blk in world.blocks(workers if workers is not None else min(4, os.cpu_count() or 1)):
                st = stats.setdefault(w.index, [0, 0.0, 0.0])
                st[0] += blk.n
                st[1] += float(blk.nnz.sum())
                st[2] += float(blk.library.sum())
                buf.append(blk)
                buffered += blk.n
                if buffered >= BATCH_CELLS:
                    flush()
            flush()
        finally:
            handoff.put(None)
            writer.join()
        if failed:
            raise failed[0]
        if h5 is not None:
            h5.close()
        if th is not None:
            th.close(
                {k: (int(v[0]), v[1], v[2]) for k, v in stats.items()},
                _drug_metadata(world.plans),
                universe.frame(),
                _line_metadata(lines),
            )
    except BaseException:
        if h5 is not None:
            h5.f.close()
        raise
    _finish(out, layout)
    (out / TRUTH_FILE).write_text(truth.model_dump_json(indent=1) + "\n")
    (out / WORLD_MD).write_text(describe_world(truth, world.plans, lines, layout))
    secs = time.perf_counter() - t0
    files = {"truth": str(out / TRUTH_FILE), "world_md": str(out / WORLD_MD)}
    if layout != "tahoe":
        files["h5ad"] = str(out / H5AD_FILE)
    if layout != "h5ad":
        files["tahoe"] = str(out / TAHOE_DIR)
    n = design.n_cells
    nnz = sum(v[1] for v in stats.values())
    return WorldSummary(
        out_dir=str(out),
        layout=layout,
        files=files,
        seed=config.seed,
        kb_version=truth.kb_version,
        n_cells=n,
        n_genes=len(universe.genes),
        n_drugs=len(world.plans),
        n_cell_lines=len(lines),
        n_plates=len(design.plates),
        n_samples=len(design.wells),
        n_conditions=len(truth.conditions),
        n_active_conditions=len(truth.active_keys()),
        n_decoys=len(truth.decoys),
        zero_fraction=1.0 - nnz / max(n * len(universe.genes), 1),
        mean_library_size=sum(v[2] for v in stats.values()) / max(n, 1),
        seconds=secs,
        cells_per_second=n / secs if secs > 0 else math.inf,
    )


# ------------------------------------------------------------------------------------------------ world.md


def describe_world(truth: Truth, plans: list[DrugPlan], lines: list[CellLine], layout: str) -> str:
    """A human description of the world: design, drugs and their planted mechanisms, decoys, nuisance, files."""
    cfg = truth.config
    phases = [", ".join(f"{k} {v:.2f}" for k, v in zip(("G1", "S", "G2M"), c.phase_probs, strict=True)) for c in lines]
    lines_md = "\n".join(
        f"| {c.name} | {c.context} | {c.genotype or '-'} | {ph} |" for c, ph in zip(lines, phases, strict=True)
    )
    drugs_md = []
    for p in plans:
        d = p.truth()
        mech = "<br>".join(d.paths) or "-"
        tfs = ", ".join(f"{k} {v}" for k, v in d.tfs.items()) or "-"
        pws = ", ".join(f"{k} {v}" for k, v in d.pathways.items()) or "-"
        kin = f"{p.ec50:.3g} | {p.hill:.2f} | {p.emax:.2f} | {p.arrest:.2f}" if p.active else "- | - | - | -"
        drugs_md.append(
            f"| {p.drug} | {'active' if p.active else '**inactive**'} | {', '.join(d.kb_targets) or '-'} | "
            f"{mech} | {tfs} | {pws} | {len(d.base_log2fc)} | {kin} |"
        )
    decoys = (
        "\n".join(
            f"| {d.drug} | {d.target} | {d.kind} | {d.why} | {', '.join(d.predicted_tfs) or '-'} |"
            for d in truth.decoys
        )
        or "| - | - | - | - | - |"
    )
    plates = "\n".join(f"| {p.plate} | {p.dose:g} {cfg.dose_unit} | {', '.join(p.drugs)} |" for p in truth.plates)
    n_act = len(truth.active_keys())
    files = []
    if layout != "tahoe":
        files.append(
            f"- `{H5AD_FILE}` — AnnData, obs: drug, drugname_drugconc, cell_line (= condition context), "
            "cell_name, plate, sample, gene_count, tscp_count; X = raw counts (CSR float32). Read with "
            f"`mechcell data ingest {H5AD_FILE}`."
        )
    if layout != "h5ad":
        files.append(
            f"- `{TAHOE_DIR}/` — Tahoe-100M layout: `data/train-*.parquet` (genes = token ids, expressions; "
            "first entry of every row is the marker token 1 / value −2) and `metadata/` (sample, gene, "
            f"cell_line, drug metadata; mean_pcnt_mito is not modelled: NaN). Read with "
            f"`mechcell data ingest {TAHOE_DIR} --layout tahoe`."
        )
    files.append(
        f"- `{TRUTH_FILE}` — ground truth (`mechcell.datasets.synthetic.load_truth`): per condition key "
        "the planted ActionGraph (four-tag text), planted up/down genes with log2 fold changes, targets, "
        "TFs, pathways; per drug the mechanism; the decoy edges."
    )
    return f"""# Synthetic Tahoe-style world (seed {truth.seed})

Generated by `mechcell.datasets.synthetic` (generator v{truth.generator_version}) from knowledge base
`{truth.kb_version}`. {truth.n_cells:,} cells × {len(truth.genes):,} genes; {len(plans)} drugs ×
{len(cfg.doses)} doses × {len(lines)} cell lines = {len(truth.conditions)} conditions ({n_act} active),
controls `{CONTROL_LABEL}` on every plate. Condition keys are `drug|dose+unit|cell line|plate` (`Condition.key`).

## Files
{chr(10).join(files)}

## Design
Dose is confounded with plate (as in Tahoe-100M): each plate carries one dose; every plate has
{cfg.control_wells_per_plate} `{CONTROL_LABEL}` wells, and each drug × dose has {cfg.wells_per_condition} wells.
Every well pools all cell lines, so each condition is drug × dose × line on its plate, with plate-matched controls.

| plate | dose | drugs |
|---|---|---|
{plates}

## Cell lines
| name | id | drivers | baseline phases |
|---|---|---|---|
{lines_md}

## Drugs and planted mechanisms
Effect of a drug in a condition: log2 fold change = base log2fc × effect scale, effect scale = efficacy ×
Hill(dose; EC50 / potency, n). A GoF driver upstream of (≤ 2 steps) or on a planted path multiplies potency by
{cfg.gof_sensitivity:g}; a LoF of an engaged target or planted TF multiplies potency and efficacy by
{cfg.lof_sensitivity:g}. A condition counts active when its effect scale is ≥ {cfg.min_active_effect:g}. Arrest
moves `arrest × effect scale` of the cells into G1 (S / G2M genes fall: a recorded, real-looking side effect).

| drug | status | KB targets | planted paths | TFs | pathways | genes | EC50 | Hill n | Emax (log2) | arrest |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(drugs_md)}

## Decoys (KB annotations the world does not act on)
| drug | target | kind | why | what the annotation predicts (nearest TFs) |
|---|---|---|---|---|
{decoys}

## Nuisance structure
- plate effects on every cell (controls too): per-gene log SD {cfg.plate_effect_sd:g}, depth log SD
  {cfg.plate_depth_sd:g} — confounded with dose, removed only by plate-matched controls;
- well effects (cells inherit their well's): per-gene log SD {cfg.well_effect_sd:g}, depth log SD
  {cfg.well_depth_sd:g}; cell-line baselines: per-gene log SD {cfg.line_effect_sd:g};
- cell cycle: G1 / S / G2M per cell (line baseline, well jitter, drug arrest); S cells raise S genes (×2),
  G2M cells raise G2M genes (×2.8) — Tirosh et al. 2016 genes;
- library size log-normal around {cfg.library_size:g} counts (log SD {cfg.library_size_sd:g});
- negative-binomial counts, median dispersion φ = {cfg.dispersion:g} (var = μ + φμ²).
"""
