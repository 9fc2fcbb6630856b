"""`mechcell eval predictor`: score expression predictors against the baselines with the field's metrics.

Two modes. With `--checkpoint DIR` (written by `mechcell train predictor`), the saved models — baselines saved
alongside — predict the dataset's conditions that were not in their training set; a checkpoint trained with
`--mechanisms trace-prior` carries the prior fitted on its training traces, which gives those conditions (unseen
drugs included) their mechanisms from the KB (unless --mechanisms names another source). Without it, every model is
cross-validated on the dataset (grouped by drug or cell line), as `train predictor` does, without saving.
Registered on the `eval` group (mechcell/cli/eval.py) when that group exists.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from mechcell.cli._common import JsonOpt, KbOpt, SeedOpt, StoreOpt, emit_json, friendly_errors
from mechcell.cli.train import (
    AllTracesOpt,
    DatasetOpt,
    FoldsOpt,
    MechOpt,
    ModelOpt,
    NdeOpt,
    RepeatsOpt,
    SplitOpt,
    TruthOpt,
    _settings,
    check_choices,
    cv_notes,
    load_inputs,
    render_table,
    run_cv,
)


@friendly_errors
def eval_predictor_cmd(
    store: StoreOpt = None,
    dataset: DatasetOpt = None,
    kb: KbOpt = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="a directory from `mechcell train predictor` (default: cross-validate)"),
    ] = None,
    split: SplitOpt = "drug",
    model: ModelOpt = "all",
    mechanisms: MechOpt = "auto",
    truth: TruthOpt = None,
    folds: FoldsOpt = 5,
    repeats: RepeatsOpt = 1,
    n_de: NdeOpt = 20,
    all_traces: AllTracesOpt = False,
    include_train: Annotated[
        bool,
        typer.Option("--include-train", help="with --checkpoint: also score conditions seen in training (optimistic)"),
    ] = False,
    seed: SeedOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Score expression predictors against the baselines (pearson delta, MAE, DE overlap@N, direction)."""
    from mechcell.eval.expression import LEAKAGE_NOTE, evaluate_fitted, result_json
    from mechcell.models.predictors import load_checkpoint_prior, load_predictors

    check_choices(split, model)
    settings = _settings(store, kb, seed)
    loaded = load_predictors(checkpoint) if checkpoint is not None else None
    prior = None
    if loaded is not None and mechanisms in ("auto", "trace-prior"):
        prior = load_checkpoint_prior(checkpoint, loaded[0])  # type: ignore[arg-type]
        if prior is None and mechanisms == "trace-prior":
            from mechcell.errors import InputError

            raise InputError(
                f"checkpoint {checkpoint} holds no trace prior (trained with {loaded[0].mechanism_source}); "
                "retrain with `mechcell train predictor --mechanisms trace-prior`"
            )
    inputs, info = load_inputs(
        settings=settings,
        dataset=dataset,
        mechanisms="none" if prior is not None else mechanisms,
        truth=truth,
        all_traces=all_traces,
        checkpoint_prior=prior,
    )
    if loaded is None:
        result = run_cv(inputs, split=split, model=model, folds=folds, repeats=repeats, seed=settings.seed, n_de=n_de)
        if json_out:
            emit_json({"mode": "cv", "inputs": info, "result": result_json(result)})
            return
        render_table(
            f"expression predictors — CV, unseen {'drugs' if split == 'drug' else 'cell lines'}",
            result.models,
            result.margins,
            result.best_baseline,
            cv_notes(result),
        )
        return
    ck, fitted = loaded
    ev = evaluate_fitted(ck, fitted, inputs, include_train=include_train, n_de=n_de, seed=settings.seed)
    if json_out:
        emit_json({"mode": "checkpoint", "checkpoint": str(checkpoint), "inputs": info, "result": result_json(ev)})
        return
    render_table(
        f"expression predictors from {checkpoint} on {ev.n_conditions} conditions",
        ev.models,
        ev.margins,
        ev.best_baseline,
        [
            f"{ev.n_in_training} of them seen in training; mechanisms: {ev.mechanism_source} "
            f"({ev.n_with_mechanism} conditions); checkpoint trained with {ck.mechanism_source}; CIs: {ev.ci}",
            LEAKAGE_NOTE,
        ],
    )


if importlib.util.find_spec("mechcell.cli.eval") is not None:  # the eval group belongs to another module
    from mechcell.cli.eval import app as eval_app

    eval_app.command("predictor")(eval_predictor_cmd)
