"""`mechcell train`: train the local models on the project's data and traces.

`mechcell train predictor` cross-validates the expression predictors against the baselines (split by drug or by
cell line), prints the table, then fits every model on all conditions and writes the checkpoint
(`predictor.json` + `weights.npz`) and a training report (`report.md`, `cv.json`) to --out.
`mechcell train policy` trains the graph-building proposer policy (behaviour cloning on the store's accepted
traces, then f-TB against the verifier panel) with a progress bar, and writes the checkpoint (`policy.json` +
`weights.pt`) and the training report (`report.md`, `report.json`) to --out.
Thin doors over `mechcell.models.predictors` and `mechcell.models.train_policy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mechcell.cli._common import (
    JsonOpt,
    KbOpt,
    SeedOpt,
    StoreOpt,
    emit_json,
    err_console,
    friendly_errors,
    out_console,
    progress,
)

if TYPE_CHECKING:
    from mechcell.eval.expression import ModelResult

app = typer.Typer(help="Train local models: expression predictors (and the proposer policy).", no_args_is_help=True)

DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", help="dataset id registered in the store, or a dataset path (default: the only one)"),
]
SplitOpt = Annotated[str, typer.Option("--split", help="hold out whole drugs (drug) or cell lines (cell_line)")]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="comma list of predictors, or all / baselines / trace (the simple baselines are always included, "
        "mlp_drug with any MLP): "
        "control_mean, mean_effect, additive, ridge_drug, mlp_drug, trace_ridge, trace_ridge_aux, trace_mlp, "
        "trace_mlp_aux",
    ),
]
MechOpt = Annotated[
    str,
    typer.Option(
        "--mechanisms",
        help="auto (the store's traces, else the oracle truth.json beside the dataset) | traces | trace-prior "
        "(leakage-free: a per-fold prior from the training drugs' traces) | oracle | none",
    ),
]
TruthOpt = Annotated[Path | None, typer.Option("--truth", help="truth.json of a synthetic world (oracle mechanisms)")]
FoldsOpt = Annotated[int, typer.Option("--folds", min=2, help="grouped CV folds (fewer when there are fewer groups)")]
RepeatsOpt = Annotated[int, typer.Option("--repeats", min=1, help="CV repeats with reshuffled groups")]
NdeOpt = Annotated[int, typer.Option("--n-de", min=1, help="N of the DE overlap@N metric")]
AllTracesOpt = Annotated[
    bool, typer.Option("--all-traces", help="also use traces that were not accepted by the verifiers")
]


def _settings(store: Path | None, kb: Path | None, seed: int | None) -> Any:
    from mechcell.config import load_settings

    return load_settings(store_path=store, kb_path=kb, seed=seed)


def render_table(
    title: str, models: list[ModelResult], margins: dict[str, Any], best: dict[str, str | None], notes: list[str]
) -> None:
    """The models × metrics table (mean [95% CI]; * = best baseline) and the margin column, on stdout."""
    from rich.table import Table

    from mechcell.eval.expression import table_rows

    header, rows = table_rows(models, margins, best)
    tab = Table(title=title, title_justify="left")
    for i, h in enumerate(header):
        tab.add_column(h, overflow="fold", no_wrap=i == 0)
    for r in rows:
        tab.add_row(*r)
    out_console.print(tab)
    for n in notes:
        out_console.print(n, highlight=False, markup=False)


def check_choices(split: str, model: str) -> None:
    """Reject a bad --split / --model before any data is read."""
    from mechcell.errors import InputError
    from mechcell.models.predictors import resolve_models

    if split not in ("drug", "cell_line"):
        raise InputError(f"--split {split!r}: choose drug or cell_line")
    resolve_models(model)


def load_inputs(
    *,
    settings: Any,
    dataset: str | None,
    mechanisms: str,
    truth: Path | None,
    all_traces: bool,
    checkpoint_prior: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Deltas, KB features and mechanisms, with a progress bar over conditions on stderr (`checkpoint_prior`: a
    checkpoint's trace prior gives the mechanisms of the conditions it was not fitted on)."""
    from mechcell.models.predictors import prepare_inputs

    with progress("pseudobulk deltas") as advance:
        return prepare_inputs(
            settings.store_path,
            dataset,
            kb=settings.kb_path,
            mechanisms=mechanisms,  # type: ignore[arg-type]
            truth=truth,
            accepted_only=not all_traces,
            on_progress=advance,
            checkpoint_prior=checkpoint_prior,
        )


def run_cv(inputs: Any, *, split: str, model: str, folds: int, repeats: int, seed: int, n_de: int) -> Any:
    """`run_experiment` with a progress bar over the (fold × model) fits."""
    from mechcell.errors import InputError
    from mechcell.eval.expression import run_experiment
    from mechcell.models.predictors import make_folds, resolve_models

    if split not in ("drug", "cell_line"):
        raise InputError(f"--split {split!r}: choose drug or cell_line")
    names = resolve_models(model)
    n_fits = len(make_folds(inputs.table, split, n_folds=folds, n_repeats=repeats, seed=seed)) * len(names)  # type: ignore[arg-type]
    with progress(f"cross-validating {len(names)} models", total=n_fits) as advance:
        return run_experiment(
            inputs,
            by=split,  # type: ignore[arg-type]
            models=names,
            n_folds=folds,
            n_repeats=repeats,
            seed=seed,
            n_de=n_de,
            on_progress=advance,
        )


def cv_notes(result: Any) -> list[str]:
    from mechcell.eval.expression import LEAKAGE_NOTE

    src = result.mechanism_source
    label = "ORACLE mechanism (planted truth graphs)" if src == "oracle" else src
    return [
        f"split by {result.split}: {result.n_conditions} conditions, {result.n_groups} groups, {result.n_folds} folds"
        f" × {result.n_repeats}; mechanisms: {label} ({result.n_with_mechanism} conditions); CIs: {result.ci}",
        LEAKAGE_NOTE,
    ]


@app.command("predictor")
@friendly_errors
def predictor_cmd(
    store: StoreOpt = None,
    dataset: DatasetOpt = None,
    kb: KbOpt = None,
    split: SplitOpt = "drug",
    model: ModelOpt = "all",
    mechanisms: MechOpt = "auto",
    truth: TruthOpt = None,
    folds: FoldsOpt = 5,
    repeats: RepeatsOpt = 1,
    n_de: NdeOpt = 20,
    all_traces: AllTracesOpt = False,
    seed: SeedOpt = None,
    out: Annotated[Path, typer.Option("--out", help="directory for the checkpoint and the training report")] = Path(
        "predictor"
    ),
    cv: Annotated[bool, typer.Option("--cv/--no-cv", help="cross-validate against the baselines first")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Train expression predictors: CV table against the baselines, then fit on all conditions and save."""
    from mechcell.eval.expression import result_json, write_training_report
    from mechcell.models.predictors import fit_predictors, save_predictors

    check_choices(split, model)
    settings = _settings(store, kb, seed)
    inputs, info = load_inputs(
        settings=settings, dataset=dataset, mechanisms=mechanisms, truth=truth, all_traces=all_traces
    )
    result = None
    if cv:
        result = run_cv(inputs, split=split, model=model, folds=folds, repeats=repeats, seed=settings.seed, n_de=n_de)
    with err_console.status("fitting on all conditions …", spinner="dots"):
        fitted = fit_predictors(inputs, model, seed=settings.seed, by=split)  # type: ignore[arg-type]
        save_predictors(out, fitted, inputs, seed=settings.seed, kb_version=info.get("kb_version"))
    report = write_training_report(out, result, info) if result is not None else None
    if json_out:
        emit_json(
            {
                "checkpoint": str(out),
                "prior": None if inputs.mechanism_prior is None else str(out / "prior.json"),
                "report": None if report is None else str(report),
                "inputs": info,
                "models": list(fitted),
                "cv": None if result is None else result_json(result),
            }
        )
        return
    if result is not None:
        render_table(
            f"expression predictors — CV, unseen {'drugs' if split == 'drug' else 'cell lines'}",
            result.models,
            result.margins,
            result.best_baseline,
            cv_notes(result),
        )
    out_console.print(f"checkpoint: {out}" + (f"  report: {report}" if report else ""), highlight=False)


@app.command("policy")
@friendly_errors
def policy_cmd(
    store: StoreOpt = None,
    kb: KbOpt = None,
    truth: TruthOpt = None,
    out: Annotated[Path, typer.Option("--out", help="directory for the checkpoint and the training report")] = Path(
        "policy"
    ),
    alpha: Annotated[float, typer.Option("--alpha", help="f-TB α (0.5 Hellinger, 1 = TB, 2 Pearson)")] = 0.5,
    anneal_to: Annotated[float | None, typer.Option("--anneal-to", help="anneal α linearly to this value")] = None,
    steps: Annotated[int, typer.Option("--steps", min=0, help="f-TB steps")] = 60,
    bc_steps: Annotated[int, typer.Option("--bc-steps", min=0, help="behaviour-cloning steps")] = 150,
    beta: Annotated[float, typer.Option("--beta", min=1e-6, help="log R = reward / beta")] = 0.1,
    explain_weight: Annotated[
        float,
        typer.Option(
            "--explain-weight",
            min=0.0,
            help="training reward of an accepted graph += this × share of the explainable genes it covers",
        ),
    ] = 0.0,
    normaliser: Annotated[str, typer.Option("--normaliser", help="devgrad | learned (conditional log Z)")] = "devgrad",
    holdout: Annotated[
        float, typer.Option("--holdout", min=0.0, max=0.9, help="share of drugs held out for the evaluation")
    ] = 0.0,
    seed: SeedOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the proposer policy: behaviour cloning on accepted traces, then f-TB against the verifier panel."""
    from mechcell.errors import InputError
    from mechcell.models.policy import PolicyConfig
    from mechcell.models.train_policy import PolicyTrainConfig, eval_table, train_policy

    if normaliser not in ("devgrad", "learned"):
        raise InputError(f"--normaliser {normaliser!r}: choose devgrad or learned")
    settings = _settings(store, kb, seed)
    config = PolicyTrainConfig(
        seed=settings.seed,
        policy=PolicyConfig(seed=settings.seed),
        alpha=alpha,
        anneal_to=anneal_to,
        steps=steps,
        bc_steps=bc_steps,
        beta=beta,
        explain_weight=explain_weight,
        normaliser=normaliser,  # type: ignore[arg-type]
    )
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        tasks = {
            "bc": bar.add_task("behaviour cloning", total=max(bc_steps, 1), info=""),
            "ftb": bar.add_task(f"f-TB (α={alpha})", total=max(steps, 1), info=""),
        }

        def on_progress(phase: str, step: int, total: int, rec: dict[str, float]) -> None:
            info = f"log P {rec['mean_log_pf']:.2f}" if phase == "bc" else f"reward {rec['reward']:.3f}"
            bar.update(tasks[phase], completed=step, info=info)

        result = train_policy(
            settings.store_path,
            out=out,
            kb=settings.kb_path,
            config=config,
            truth=truth,
            holdout=holdout,
            on_progress=on_progress,
        )
    if json_out:
        emit_json(result.model_dump(mode="json"))
        return
    out_console.print(Path(result.report_md).read_text(), highlight=False, markup=False)
    if result.evaluations:
        from rich.table import Table

        rows = eval_table(result.evaluations)
        tab = Table(title="held-out conditions", title_justify="left")
        for h in rows[0]:
            tab.add_column(h)
        for r in rows[1:]:
            tab.add_row(*r)
        out_console.print(tab)
    out_console.print(f"checkpoint: {result.checkpoint}  report: {result.report_md}", highlight=False)
