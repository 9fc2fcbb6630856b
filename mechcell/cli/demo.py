"""`mechcell demo`: the main job on a synthetic world, with nothing configured (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mechcell.cli._common import JsonOpt, KbOpt, SeedOpt, StoreOpt, emit_json, err_console, friendly_errors, out_console


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


@friendly_errors
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="where the world and the report go")] = Path("demo_out"),
    store: StoreOpt = None,
    kb: KbOpt = None,
    seed: SeedOpt = None,
    conditions: Annotated[int, typer.Option("--conditions", help="how many conditions to explain")] = 12,
    cells: Annotated[bool, typer.Option("--cells/--no-cells", help="cell-level tests (≈10× slower)")] = False,
    drugs: Annotated[int | None, typer.Option("--drugs", help="drugs in the world (default 12)")] = None,
    cell_lines: Annotated[int | None, typer.Option("--cell-lines", help="cell lines in the world (default 3)")] = None,
    genes: Annotated[int | None, typer.Option("--genes", help="genes in the world (default 2000)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate a small synthetic world, explain a dozen conditions with the local proposer, score the result."""
    from rich.table import Table

    from mechcell.agents.demo import DemoConfig, run_demo
    from mechcell.config import load_settings
    from mechcell.eval.report import fmt

    settings = load_settings(store_path=store, kb_path=kb, seed=seed)
    cfg = DemoConfig(
        out_dir=out,
        store_path=settings.store_path,
        kb=str(kb) if kb is not None else (str(settings.kb_path) if settings.kb_path else None),
        seed=settings.seed,
        n_conditions=conditions,
        use_cells=cells,
        n_permutations=settings.n_permutations,
        world={
            k: v for k, v in (("n_drugs", drugs), ("n_cell_lines", cell_lines), ("n_genes", genes)) if v is not None
        },
    )
    with err_console.status("mechcell demo", spinner="dots") as status:
        result = run_demo(cfg, settings=settings, on_stage=lambda m: status.update(f"mechcell demo: {m}"))
    if json_out:
        emit_json(result)
        return
    # Fit the terminal: the condition and the mechanism columns give way, the numbers never do.
    width = out_console.width
    cond_w = min(42, max(14, width // 4))
    mech_w = max(14, min(72, width - cond_w - 9 - 7 - 14 - 16))
    table = Table(title="mechcell demo", title_justify="left")
    table.add_column("condition", no_wrap=True, overflow="ellipsis", max_width=cond_w)
    table.add_column("verified mechanism", no_wrap=True, overflow="ellipsis", max_width=mech_w)
    table.add_column("factual P", justify="right", no_wrap=True)
    table.add_column("expr. P", justify="right", no_wrap=True)
    table.add_column("planted", no_wrap=True)
    for r in result.rows:
        if r.active:
            rec = "[green]yes[/]" if r.recovered else "[red]no[/]"
        else:
            rec = "[green]yes[/] (no claim)" if r.recovered else "[red]no[/] (claimed)"
        table.add_row(r.key, r.mechanism, _fmt(r.factual_precision), _fmt(r.expression_precision), rec)
    out_console.print(table)
    s = result.summary
    out_console.print(
        f"edge precision {fmt(s.get('edge_precision'))}, edge recall {fmt(s.get('edge_recall'))} "
        f"(active conditions), planted path recovered in {fmt(s.get('path_recovery'))} of active conditions, "
        f"inactive left unclaimed {fmt(s.get('inactive_abstention'))} ('planted' for an inactive condition: "
        "yes when no mechanism was claimed)",
        highlight=False,
    )
    t = result.timings
    out_console.print(
        f"{len(result.rows)} traces in {result.store_path} (world {'reused' if result.world_reused else 'generated'}"
        f" in {result.world_dir}); report {result.report_path}; {t.get('total', 0):.1f} s "
        f"(world {t.get('world', 0):.1f}, signatures {t.get('signatures', 0):.1f}, "
        f"pipeline {t.get('pipeline', 0):.1f})",
        highlight=False,
    )
    out_console.print("next: `mechcell chat` to ask about them, `mechcell serve` for the web page.", highlight=False)
