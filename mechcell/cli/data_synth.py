"""`mechcell data synth`: write a synthetic Tahoe-style world with known mechanisms (a thin door over
`mechcell.datasets.synthetic.generate_world`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mechcell.cli._common import JsonOpt, KbOpt, SeedOpt, emit_json, friendly_errors, out_console, progress
from mechcell.cli.data import app as data_app
from mechcell.errors import InputError


@friendly_errors
def synth(
    out: Annotated[Path, typer.Option("--out", help="output directory (world.h5ad, tahoe/, truth.json, world.md)")],
    seed: SeedOpt = None,
    drugs: Annotated[int | None, typer.Option("--drugs", help="drugs in the panel (default 12)", min=1)] = None,
    cell_lines: Annotated[int | None, typer.Option("--cell-lines", help="cell lines (default 3)", min=1)] = None,
    cells_per_condition: Annotated[
        int | None, typer.Option("--cells-per-condition", min=1, help="cells per drug × dose × line (default 150)")
    ] = None,
    genes: Annotated[int | None, typer.Option("--genes", help="genes measured (default 2000)", min=50)] = None,
    kb: KbOpt = None,
    layout: Annotated[str, typer.Option("--layout", help="h5ad | tahoe | both")] = "both",
    json_out: JsonOpt = False,
) -> None:
    """Generate a world whose drug mechanisms follow real KB edges (plus decoys), with Tahoe's nuisance
    structure, in h5ad and/or Tahoe parquet layout, and its ground truth (truth.json)."""
    from pydantic import ValidationError

    from mechcell.config import load_settings
    from mechcell.datasets.synthetic import SyntheticWorldConfig, generate_world

    if layout not in ("h5ad", "tahoe", "both"):
        raise InputError(f"--layout {layout!r}: choose one of h5ad, tahoe, both")
    settings = load_settings()
    fields = {
        "seed": settings.seed if seed is None else seed,
        "n_drugs": drugs,
        "n_cell_lines": cell_lines,
        "cells_per_condition": cells_per_condition,
        "n_genes": genes,
        "kb": str(kb) if kb is not None else (str(settings.kb_path) if settings.kb_path else None),
    }
    try:
        config = SyntheticWorldConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"invalid world setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    total = _expected_cells(config)
    with progress(f"writing world to {out}", total=total) as advance:
        summary = generate_world(config, out, layout, settings=settings, on_progress=advance)  # type: ignore[arg-type]
    if json_out:
        emit_json(summary)
        return
    out_console.print(
        f"wrote a world of [bold]{summary.n_cells:,}[/] cells × {summary.n_genes:,} genes to {summary.out_dir}: "
        f"{summary.n_drugs} drugs × {summary.n_cell_lines} lines on {summary.n_plates} plates, "
        f"{summary.n_conditions} conditions ({summary.n_active_conditions} active), {summary.n_decoys} decoy edges; "
        f"{summary.cells_per_second:,.0f} cells/s"
    )
    for k, v in summary.files.items():
        out_console.print(f"  {k}: {v}", highlight=False)


def _expected_cells(config: object) -> float | None:
    """Approximate cell count for the progress bar (the design draws ±20 % per well)."""
    from mechcell.datasets.synthetic import SyntheticWorldConfig

    if not isinstance(config, SyntheticWorldConfig):
        return None
    n_drugs = len(config.drugs) if config.drugs else config.n_drugs
    wells = n_drugs * len(config.doses) * config.wells_per_condition + config.plates * config.control_wells_per_plate
    return wells * config.n_cell_lines * config.cells_per_condition / config.wells_per_condition


data_app.command("synth")(synth)
