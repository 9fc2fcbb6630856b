"""`mechcell kb`: build, inspect and query the knowledge base. Thin: parse, call `mechcell.knowledge`, render."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mechcell.cli._common import JsonOpt, KbOpt, emit_json, err_console, friendly_errors, out_console, progress
from mechcell.config import load_settings
from mechcell.errors import InputError

app = typer.Typer(
    help="Build, inspect and query the knowledge base (drug targets, signed network, regulons).", no_args_is_help=True
)


def _console(json_out: bool):  # noqa: ANN202
    return err_console if json_out else out_console


def _open(kb_path: Path | None):  # noqa: ANN202
    from mechcell.knowledge import load_kb

    settings = load_settings(kb_path=kb_path)
    return load_kb(kb_path, settings=settings)


@app.command("build")
@friendly_errors
def build(
    source_dir: Annotated[
        Path | None,
        typer.Option(
            "--from", help="directory of source tables (layout of ../shared/kb); only the starter tables when omitted"
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="store to write (default: Settings.cache_dir/kb-<content hash>.duckdb, where --kb DIR looks)"
        ),
    ] = None,
    no_starter: Annotated[bool, typer.Option("--no-starter", help="leave the shipped starter tables out")] = False,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="fetch CollecTRI, PROGENy and OmniPath through the "
            "decoupler / omnipath clients first (needs a network; never implicit)",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Build a KB store from whatever known source files DIR holds: counts per source, Tahoe coverage."""
    from mechcell.knowledge.build import build_store, content_hash

    settings = load_settings()
    tmp: tempfile.TemporaryDirectory | None = None
    if online:
        from mechcell.knowledge.importers.online import fetch_online

        tmp = tempfile.TemporaryDirectory(prefix="mechcell-kb-online-")
        fetched = fetch_online(Path(tmp.name), base=source_dir)
        err_console.print(f"fetched {len(fetched)} tables through decoupler / omnipath")
        source_dir = Path(tmp.name)
    if source_dir is None and no_starter:
        raise InputError("nothing to build: give --from DIR (or drop --no-starter to build the starter KB)")
    try:
        if out is None:
            h = content_hash(source_dir, include_starter=not no_starter)
            out = Path(settings.cache_dir) / f"kb-{h}.duckdb"
        with progress("building KB", total=None) as advance:
            last = [0]

            def on_progress(label: str, i: int, n: int) -> None:
                advance(i - last[0])
                last[0] = i
                err_console.print(f"  [{i}/{n}] {label}", highlight=False)

            summary = build_store(source_dir, out, include_starter=not no_starter, progress=on_progress)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if json_out:
        emit_json(summary)
        return
    con = out_console
    t = Table(
        title=f"KB {summary.version} → {summary.path} ({(summary.size_bytes or 0) / 1e6:.1f} MB, "
        f"{summary.seconds:.1f} s)"
    )
    for c in ("source", "status", "entities", "relations", "aliases", "note"):
        t.add_column(c)
    for s in summary.sources:
        t.add_row(
            s.source + (" (model-generated)" if s.model_generated else ""),
            s.status,
            str(s.n_entities),
            str(s.n_relations),
            str(s.n_aliases),
            s.message or "",
        )
    con.print(t)
    cov = summary.coverage
    if cov is not None and cov.n_drugs:
        con.print(
            f"Tahoe coverage ({cov.n_drugs} drug labels): targets {cov.drugs_with_targets} "
            f"({cov.share(cov.drugs_with_targets):.0%}), targets resolving to HGNC genes "
            f"{cov.drugs_with_resolved_targets} ({cov.share(cov.drugs_with_resolved_targets):.0%}), "
            f"reaching a TF with a regulon in ≤ {cov.max_steps} signed steps {cov.drugs_reaching_tf} "
            f"({cov.share(cov.drugs_reaching_tf):.0%}), a TF or pathway {cov.drugs_reaching_tf_or_pathway} "
            f"({cov.share(cov.drugs_reaching_tf_or_pathway):.0%}); Tahoe target symbols resolved "
            f"{cov.tahoe_target_symbols_resolved}/{cov.tahoe_target_symbols}",
            highlight=False,
        )
    failed = [s for s in summary.sources if s.status == "error"]
    if failed:
        con.print(f"[yellow]{len(failed)} source(s) left out — see the note column[/]")


@app.command("stats")
@friendly_errors
def stats(kb: KbOpt = None, json_out: JsonOpt = False) -> None:
    """Version, sources, relation counts per source and predicate, coverage."""
    k = _open(kb)
    doc = k.stats()
    if json_out:
        emit_json(doc)
        return
    out_console.print(
        f"KB {doc['version']} ({doc['path'] or 'starter, in memory'}), built {doc['built_at']}: "
        f"{doc['n_relations']} relations, {doc['regulon_tfs']} TFs with regulons, footprints "
        f"{', '.join(doc['footprints'])}",
        highlight=False,
    )
    t = Table()
    for c in ("source", "predicate", "n"):
        t.add_column(c)
    for r in doc["relations"]:
        t.add_row(r["source"], r["predicate"], str(r["n"]))
    out_console.print(t)
    out_console.print("entities: " + ", ".join(f"{k_}={v}" for k_, v in doc["entities"].items()), highlight=False)


@app.command("show")
@friendly_errors
def show(
    entity: Annotated[str, typer.Argument(help="a drug, gene, family, pathway, gene set or cell line")],
    kb: KbOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="relations shown per direction")] = 15,
    json_out: JsonOpt = False,
) -> None:
    """Resolve a name and show the entity, its relation counts and its first relations (with sources)."""
    k = _open(kb)
    info = k.entity(entity)
    outgoing = k.relations(subject=info["id"], resolve=False, limit=limit)
    incoming = k.relations(object=info["id"], resolve=False, limit=limit)
    if info["type"] == "drug":
        outgoing = k.drug_targets(info["id"]) or outgoing
    info["relations_out"] = [r.model_dump() for r in outgoing]
    info["relations_in"] = [r.model_dump() for r in incoming]
    if json_out:
        emit_json(info)
        return
    res = info["resolution"]
    how = f" (matched by {res['matched_by']})" if res.get("matched_by") not in (None, "id", "name", "symbol") else ""
    out_console.print(
        f"[bold]{info['id']}[/] — {info['type']}{how}"
        + (f": {info['name']}" if info.get("name") and info["name"] != info["id"] else ""),
        highlight=False,
    )
    if info.get("members"):
        out_console.print(f"members: {', '.join(info['members'])}", highlight=False)
    if info["roles"]:
        out_console.print(f"roles: {', '.join(info['roles'])}", highlight=False)
    for direction, rels in (("→", outgoing), ("←", incoming)):
        for r in rels:
            other = r.object if direction == "→" else r.subject
            flag = " [model-generated]" if r.model_generated else ""
            ev = f" {', '.join(r.evidence[:2])}" if r.evidence else ""
            out_console.print(
                f"  {direction} {r.predicate} {other} (sign {r.sign:+d}; {r.source} {r.record_id}{ev}){flag}",
                highlight=False,
                markup=False,
            )
    counts = ", ".join(f"{c['predicate']}/{c['source']}={c['n']}" for c in info["outgoing"] + info["incoming"])
    out_console.print(f"counts: {counts}", highlight=False)


@app.command("paths")
@friendly_errors
def paths(
    a: Annotated[str, typer.Argument(help="source: gene, family, complex, process or drug")],
    b: Annotated[str, typer.Argument(help="target: gene, family, complex, process or pathway")],
    kb: KbOpt = None,
    max_len: Annotated[int, typer.Option("--max-len", help="signalling steps")] = 3,
    k: Annotated[int, typer.Option("--k", help="paths returned (shortest first)")] = 10,
    via_metabolites: Annotated[bool, typer.Option("--via-metabolites")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The k shortest signed paths from A to B (≤ max-len signalling steps) and the sources of every edge."""
    kb_ = _open(kb)
    found = kb_.paths(a, b, max_len=max_len, k=k, via_metabolites=via_metabolites)
    if json_out:
        emit_json({"a": a, "b": b, "max_len": max_len, "kb_version": kb_.version, "paths": found})
        return
    if not found:
        out_console.print(f"no signed path from {a} to {b} in ≤ {max_len} steps (KB {kb_.version})")
        raise typer.Exit(1)
    for p in found:
        sign = {1: "+", -1: "−", 0: "?"}[p.sign]
        srcs = " | ".join(r.source for r in p.relations)
        out_console.print(f"[{sign}] {p.render()}   ({srcs})", highlight=False, markup=False)


@app.command("context")
@friendly_errors
def context(
    perturbation: Annotated[str, typer.Argument(help="drug, ligand or gene name")],
    cell_line: Annotated[str | None, typer.Option("--cell-line", help="cell line name or id")] = None,
    kb: KbOpt = None,
    budget: Annotated[int, typer.Option("--budget", help="token budget")] = 2000,
    kind: Annotated[str | None, typer.Option("--kind", help="force drug / ligand / genetic")] = None,
    json_out: JsonOpt = False,
) -> None:
    """What retrieval would hand a proposer for a perturbation (no signature): targets, paths, TFs, drivers."""
    from mechcell.datasets.schemas import Condition
    from mechcell.knowledge import Retriever

    ctx = Retriever(_open(kb)).context(
        Condition(perturbation=perturbation, context=cell_line), budget=budget, kind=kind
    )
    if json_out:
        emit_json(ctx)
    else:
        out_console.print(ctx.text, highlight=False, markup=False)
