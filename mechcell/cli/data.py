"""`mechcell data`: register datasets, list their conditions, compute and show condition signatures.

A thin door: every command parses flags, calls one library function of `mechcell.datasets`, and renders.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from mechcell.cli._common import JsonOpt, StoreOpt, emit_json, err_console, friendly_errors, out_console, progress
from mechcell.errors import InputError

app = typer.Typer(help="Datasets: ingest perturbation data, list conditions, compute signatures.", no_args_is_help=True)

LAYOUT_CHOICES = ("auto", "h5ad", "tahoe", "de")
DatasetOpt = Annotated[str | None, typer.Option("--dataset", help="dataset id (see `mechcell data datasets`)")]
MethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method", help="wilcoxon | welch_t | pseudobulk_lfc | pydeseq2 | precomputed (default: stored, else wilcoxon)"
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", help="method parameter key=value (JSON value), repeatable, e.g. --param tie_correct=false"),
]


def _store_path(store: Path | None) -> Path:
    if store is not None:
        return store
    from mechcell.config import load_settings

    return load_settings().store_path


def _params(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for it in items or []:
        if "=" not in it:
            raise InputError(f"--param {it!r}: expected key=value")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _num(x: Any) -> Any:
    """JSON-safe number: NaN/inf → null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def build_schema(
    *,
    layout: str,
    perturbation_col: str | None,
    control_label: str | None,
    dose_col: str | None,
    dose_unit: str | None,
    context_col: str | None,
    batch_col: str | None,
    sample_col: str | None,
    context_name_col: str | None,
) -> Any:
    """Flags → PerturbationSchema. Without --perturbation-col (or with --layout tahoe) Tahoe's names are the
    defaults and flags override them; otherwise --perturbation-col and --control-label suffice."""
    from mechcell.datasets.perturbation import PerturbationSchema

    given = {
        "dose_col": dose_col,
        "dose_unit": dose_unit,
        "context_col": context_col,
        "batch_col": batch_col,
        "sample_col": sample_col,
        "context_name_col": context_name_col,
    }
    if perturbation_col is None or layout == "tahoe":
        base = PerturbationSchema.tahoe(control_label=control_label or "DMSO_TF").model_dump()
        if perturbation_col:
            base["perturbation_col"] = perturbation_col
        base.update({k: v for k, v in given.items() if v is not None})
        return PerturbationSchema(**base)
    if not control_label:
        raise InputError("--perturbation-col needs --control-label (the exact label of control cells, e.g. DMSO_TF)")
    return PerturbationSchema(
        perturbation_col=perturbation_col,
        control_label=control_label,
        **{k: v for k, v in given.items() if v is not None},
    )


@app.command("ingest")
@friendly_errors
def ingest(
    path: Annotated[
        str,
        typer.Argument(
            help="an .h5ad file, a Tahoe directory / glob / hf:// of parquet shards, or a precomputed DE table"
        ),
    ],
    layout: Annotated[
        str, typer.Option("--layout", help="auto | h5ad | tahoe | de; 'tahoe' also selects Tahoe's column names")
    ] = "auto",
    perturbation_col: Annotated[str | None, typer.Option("--perturbation-col")] = None,
    dose_col: Annotated[str | None, typer.Option("--dose-col")] = None,
    dose_unit: Annotated[str | None, typer.Option("--dose-unit", help="unit of numeric doses (e.g. uM)")] = None,
    context_col: Annotated[str | None, typer.Option("--context-col", help="cell line column")] = None,
    batch_col: Annotated[str | None, typer.Option("--batch-col", help="plate / batch column")] = None,
    sample_col: Annotated[str | None, typer.Option("--sample-col", help="well / sample id column")] = None,
    context_name_col: Annotated[str | None, typer.Option("--context-name-col")] = None,
    control_label: Annotated[str | None, typer.Option("--control-label", help="exact control label")] = None,
    counts_layer: Annotated[str | None, typer.Option("--counts-layer", help="h5ad layer with raw counts")] = None,
    gene_metadata: Annotated[
        str | None, typer.Option("--gene-metadata", help="Tahoe gene_metadata.parquet (e.g. for hf:// shards)")
    ] = None,
    sample_metadata: Annotated[str | None, typer.Option("--sample-metadata", help="Tahoe sample_metadata")] = None,
    obs_metadata: Annotated[str | None, typer.Option("--obs-metadata", help="Tahoe obs_metadata")] = None,
    allow_missing_controls: Annotated[
        bool, typer.Option("--allow-missing-controls", help="keep batches without control cells")
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a dataset and its conditions (perturbation × dose × cell line × plate) in the store."""
    from mechcell.datasets.readers import detect_layout, open_dataset
    from mechcell.datasets.store import Store

    if layout not in LAYOUT_CHOICES:
        raise InputError(f"--layout {layout!r}: choose one of {', '.join(LAYOUT_CHOICES)}")
    read_layout = (
        "h5ad" if str(path).lower().endswith(".h5ad") else (detect_layout(path) if layout == "auto" else layout)
    )
    schema = build_schema(
        layout=layout,
        perturbation_col=perturbation_col,
        control_label=control_label,
        dose_col=dose_col,
        dose_unit=dose_unit,
        context_col=context_col,
        batch_col=batch_col,
        sample_col=sample_col,
        context_name_col=context_name_col,
    )
    options: dict[str, Any] = {"require_controls": not allow_missing_controls}
    if counts_layer:
        options["counts_layer"] = counts_layer
    for k, v in (
        ("gene_metadata", gene_metadata),
        ("sample_metadata", sample_metadata),
        ("obs_metadata", obs_metadata),
    ):
        if v:
            if read_layout != "tahoe":
                raise InputError(f"--{k.replace('_', '-')} applies to the Tahoe layout only")
            options[k] = v
    sp = _store_path(store)
    with progress(f"reading {path}", total=3) as advance:
        ds = open_dataset(
            path, None if read_layout == "de" and perturbation_col is None else schema, layout=read_layout, **options
        )
        advance(1)
        try:
            ds.validate()
            advance(1)
            desc = ds.describe()
            with Store(sp) as st:
                did = st.register(ds)
            advance(1)
        finally:
            ds.close()
    no_ctrl = sum(1 for s in ds.summaries() if s.n_control_cells == 0)
    doc = {"dataset_id": did, "store": str(sp), **desc, "conditions_without_controls": no_ctrl}
    if json_out:
        emit_json(doc)
        return
    out_console.print(
        f"registered [bold]{did}[/] ({desc['layout']}) in {sp}: {desc['n_cells']:,} cells, "
        f"{desc['n_conditions']:,} conditions, {desc['n_genes']:,} genes"
    )
    if no_ctrl:
        err_console.print(f"[yellow]{no_ctrl} condition(s) have no matched control cells[/]")


@app.command("datasets")
@friendly_errors
def datasets(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """List the registered datasets."""
    from mechcell.datasets.store import Store

    with Store(_store_path(store), read_only=True) as st:
        recs = st.datasets()
    docs = [
        {
            "id": r.id,
            "path": r.path,
            "layout": r.layout,
            "n_cells": r.n_cells,
            "n_genes": r.n_genes,
            "registered_at": r.registered_at.isoformat(),
            "schema": r.perturbation_schema.model_dump() if r.perturbation_schema else None,
        }
        for r in recs
    ]
    if json_out:
        emit_json({"datasets": docs})
        return
    from rich.table import Table

    t = Table("id", "layout", "cells", "genes", "path")
    for d in docs:
        t.add_row(d["id"], d["layout"], f"{d['n_cells'] or 0:,}", f"{d['n_genes'] or 0:,}", d["path"])
    out_console.print(t)


@app.command("conditions")
@friendly_errors
def conditions(
    dataset: DatasetOpt = None,
    perturbation: Annotated[str | None, typer.Option("--perturbation")] = None,
    context: Annotated[str | None, typer.Option("--context", help="cell line id")] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="plate")] = None,
    limit: Annotated[int, typer.Option("--limit", help="rows to show in the table (0: all)")] = 50,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List stored conditions with their treated and plate-matched control cell counts."""
    from mechcell.datasets.store import Store

    with Store(_store_path(store), read_only=True) as st:
        rows = st.condition_summaries(dataset_id=dataset, perturbation=perturbation, context=context, batch=batch)
    docs = [
        {
            "key": r.summary.key,
            "dataset_id": r.dataset_id,
            "perturbation": r.condition.perturbation,
            "dose": r.condition.dose,
            "unit": r.condition.dose_unit,
            "context": r.condition.context,
            "context_name": r.condition.context_name,
            "batch": r.condition.batch,
            "n_cells": r.summary.n_cells,
            "n_control_cells": r.summary.n_control_cells,
            "n_samples": r.summary.n_samples,
            "n_control_samples": r.summary.n_control_samples,
        }
        for r in rows
    ]
    if json_out:
        emit_json({"n_conditions": len(docs), "conditions": docs})
        return
    from rich.table import Table

    several = len({d["dataset_id"] for d in docs}) > 1
    t = Table(
        *(["dataset"] if several else []),
        "key",
        "cells",
        "controls",
        "wells",
        title=f"{len(docs)} conditions" + (f" (showing {limit})" if limit and len(docs) > limit else ""),
    )
    for d in docs[: limit or None]:
        t.add_row(
            *([d["dataset_id"]] if several else []),
            d["key"],
            f"{d['n_cells']:,}",
            f"{d['n_control_cells']:,}",
            str(d["n_samples"]),
        )
    out_console.print(t)


def _open_for(st: Any, key: str, dataset: str | None) -> tuple[str, Any]:
    rec = st.find_condition(key, dataset)
    return rec.dataset_id, st.open(rec.dataset_id)


@app.command("signature")
@friendly_errors
def signature(
    key: Annotated[str, typer.Argument(help="condition key, e.g. 'Trametinib|0.05uM|CVCL_0023|plate1'")],
    method: MethodOpt = None,
    dataset: DatasetOpt = None,
    top: Annotated[int, typer.Option("--top", help="genes to show, by p-value then |log2fc| (0: all)")] = 0,
    recompute: Annotated[bool, typer.Option("--recompute", help="compute even if stored")] = False,
    param: ParamOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a condition's signature (per gene: log2fc, p, adjusted p), computing and storing it if needed."""
    from mechcell.datasets.signatures import compute_signature
    from mechcell.datasets.store import Store
    from mechcell.errors import NotFoundError

    sp = _store_path(store)
    params = _params(param)
    sig = None
    did = dataset
    if not recompute and not params:
        with Store(sp, read_only=True) as st:
            try:
                sig = st.signature(key, method, dataset_id=dataset)
                did = st.signature_methods(key, dataset)[0][0] if dataset is None else dataset
            except NotFoundError:
                sig = None
    if sig is None:
        with Store(sp) as st:
            did, ds = _open_for(st, key, dataset)
            try:
                with progress(f"computing {method or 'signature'} for {key}", total=1) as advance:
                    sig = compute_signature(ds, key, method, **params)
                    advance(1)
            finally:
                ds.close()
            st.put_signature(sig, dataset_id=did)
    frame = sig.to_frame()
    frame["_abs"] = frame["log2fc"].abs()
    frame = frame.sort_values(["pvalue", "_abs"], ascending=[True, False], na_position="last")
    shown = frame.head(top) if top else frame
    genes = [
        {
            "gene": g,
            "log2fc": _num(float(r.log2fc)),
            "pvalue": _num(float(r.pvalue)),
            "padj": _num(float(r.padj)),
            "method": sig.method,
        }
        for g, r in shown.iterrows()
    ]
    if json_out:
        emit_json(
            {
                "condition": sig.condition.key,
                "dataset_id": did,
                "method": sig.method,
                "params": sig.params,
                "n_treated": sig.n_treated,
                "n_control": sig.n_control,
                "n_genes": len(sig.genes),
                "genes": genes,
            }
        )
        return
    from rich.table import Table

    t = Table(
        "gene",
        "log2fc",
        "p",
        "padj",
        title=f"{sig.condition.key} — {sig.method}, {sig.n_treated:,} treated vs {sig.n_control:,} control cells",
    )
    for g in genes[: top or 25]:
        fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        t.add_row(g["gene"], fmt(g["log2fc"]), fmt(g["pvalue"]), fmt(g["padj"]))
    out_console.print(t)


@app.command("signatures")
@friendly_errors
def signatures(
    dataset: DatasetOpt = None,
    method: MethodOpt = None,
    perturbation: Annotated[str | None, typer.Option("--perturbation", help="only this perturbation")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="resume: skip stored signatures")] = False,
    param: ParamOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compute signatures for every condition of a dataset (streamed; failures are recorded, the run goes on)."""
    from mechcell.datasets.signatures import compute_signatures
    from mechcell.datasets.store import Store

    sp = _store_path(store)
    with Store(sp) as st:
        recs = st.datasets()
        if dataset is None:
            if len(recs) != 1:
                raise InputError(
                    f"store {sp} holds {len(recs)} datasets; pass --dataset "
                    f"({', '.join(r.id for r in recs) or 'ingest one first'})"
                )
            dataset = recs[0].id
        keys = [c.summary.key for c in st.condition_summaries(dataset_id=dataset, perturbation=perturbation)]
        ds = st.open(dataset)
        try:
            with progress("signatures", total=len(keys)) as advance:
                report = compute_signatures(
                    ds,
                    keys,
                    method,
                    store=st,
                    dataset_id=dataset,
                    skip_existing=skip_existing,
                    on_progress=advance,
                    **_params(param),
                )
        finally:
            ds.close()
    if json_out:
        emit_json(report.model_dump(exclude={"keys"}))
        return
    out_console.print(
        f"{report.n_ok:,} signatures ({report.method}) stored in {sp}, {report.n_skipped:,} skipped, "
        f"{len(report.failed):,} failed, {report.seconds:.1f}s"
    )
    for f in report.failed[:10]:
        err_console.print(f"  [red]{f.key}[/]: {f.error}: {f.message}", highlight=False)
