"""Observational vs experimental: falsify a transferred effect size, and label extrapolations as such.

The perturbation data are experimental (treatment assigned per well). An effect size often comes from elsewhere —
here the same drug and dose in *other* cell lines of the dataset, an association across contexts, i.e. an
observational estimate ω for this line. `causal_stats.falsify_gap` tests H0: τ − ω = 0 on this line's cells
(Y = the claimed genes' mean log-normalised expression, signed by the claimed direction; X = log library size and
cell-cycle scores; assignment probability p = the treated share). Rejecting falsifies the transfer; not rejecting
validates nothing, so this verifier never says `supported`. It says `contradicted` only when the experiment also
puts the effect on the other side of zero.

`extrapolate` answers questions about contexts that were not measured with `causal_stats.gap_intervals`: an
interval on the effect, labelled extrapolation — never a verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from mechcell.causal_stats import falsify_gap, gap_intervals
from mechcell.graphs import Claim
from mechcell.verifiers.base import VerificationContext, register
from mechcell.verifiers.types import Evidence, Verdict

if TYPE_CHECKING:
    from mechcell.datasets.cells import CellData

_DIR = {"up": 1, "down": -1}


def trial_arrays(cells: CellData, direction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, T, Y) for one condition: standardised covariates, treatment, signed mean log-normalised expression."""
    cov = cells.covariates
    lib = np.maximum(np.asarray(cov["library_size"], dtype=np.float64), 1.0)
    Y = _DIR.get(direction, 1) * np.log1p(cells.X / lib[:, None] * 1e4).mean(axis=1)
    cols = [np.log(lib)] + [np.asarray(cov[k], dtype=np.float64) for k in ("S_score", "G2M_score") if k in cov]
    X = np.column_stack(cols)
    sd = X.std(0)
    X = (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)
    return X, cells.treated.astype(np.int64), Y


def effect_on(cells: CellData, direction: str) -> float:
    """Difference in means of the signed score, treated − control (the experimental τ on the Y scale)."""
    _, T, Y = trial_arrays(cells, direction)
    return float(Y[T == 1].mean() - Y[T == 0].mean())


class ObsExpVerifier:
    name = "obs-exp"
    description = "falsify the effect size transferred from other cell lines (never validates)"

    def verify(self, claims: Sequence[Claim], ctx: VerificationContext) -> list[Verdict]:
        ref: Callable[[Sequence[str], str], tuple[float, list[str]] | None] | None = ctx.cache.get("reference")
        if ref is None or ctx.cells is None:
            return []
        out = []
        for c in claims:
            if c.kind != "expression_set":
                continue
            cells = ctx.cells(c.genes)
            found = ref(c.genes, c.direction or "up")
            if cells is None or found is None or cells.n_treated < 10 or cells.n_control < 10:
                continue
            omega, contexts = found
            X, T, Y = trial_arrays(cells, c.direction or "up")
            p = float(T.mean())
            res = falsify_gap(X, T, Y, np.full(len(Y), omega), p, n_boot=500, seed=ctx.settings.seed)
            tau = float(Y[T == 1].mean() - Y[T == 0].mean())
            ev = [
                Evidence(
                    source="falsify_gap",
                    detail=f"ω = {omega:+.3f} from {', '.join(contexts)}; "
                    f"experimental τ̂ = {tau:+.3f} in {ctx.condition.context if ctx.condition else 'this line'}",
                )
            ]
            common: dict[str, Any] = dict(
                statistic=res.statistic,
                p_value=res.p_value,
                e_value=res.e_value,
                null=res.null,
                evidence=ev,
                diagnostics={"omega": omega, "tau": tau},
            )
            if res.p_value < ctx.settings.alpha and tau < 0 < omega:
                out.append(
                    Verdict(
                        claim=c,
                        verifier=self.name,
                        status="contradicted",
                        reason=f"the effect seen in {', '.join(contexts)} (ω {omega:+.2f}) is falsified "
                        f"here, and here it goes the other way (τ̂ {tau:+.2f})",
                        **common,
                    )
                )
            elif res.p_value < ctx.settings.alpha:
                out.append(
                    Verdict(
                        claim=c,
                        verifier=self.name,
                        status="inconclusive",
                        reason=f"effect size from other lines (ω {omega:+.2f}) falsified here "
                        f"(τ̂ {tau:+.2f}, p {res.p_value:.2g}); the direction stands",
                        **common,
                    )
                )
            else:
                out.append(
                    Verdict(
                        claim=c,
                        verifier=self.name,
                        status="inconclusive",
                        reason=f"not falsified by this line's cells (p {res.p_value:.2g}); "
                        "an observational estimate is never validated",
                        **common,
                    )
                )
        return out


class Extrapolation(BaseModel):
    """An interval for an unmeasured context: explicitly an extrapolation, never a verdict."""

    model_config = ConfigDict(frozen=True)

    label: str = "extrapolation"
    mean: list[float]
    lower: list[float]
    upper: list[float]
    in_support: list[bool]
    note: str


def extrapolate(
    cells: CellData,
    direction: str,
    omega: float,
    X_query: np.ndarray,
    omega_query: float,
    seed: int = 0,
    max_units: int = 300,
) -> Extrapolation:
    """Effect interval τ(x*) = ω(x*) + Δ(x*) at covariate points X_query (same standardisation as the trial).

    The GP is exact (O(n³) per likelihood evaluation): at most `max_units` cells, subsampled with the seed."""
    X, T, Y = trial_arrays(cells, direction)
    if len(Y) > max_units:
        keep = np.sort(np.random.default_rng(seed).choice(len(Y), size=max_units, replace=False))
        X, T, Y = X[keep], T[keep], Y[keep]
    gi = gap_intervals(
        X,
        T,
        Y,
        np.full(len(Y), omega),
        float(T.mean()),
        X_query,
        omega_query=np.full(len(X_query), omega_query),
        seed=seed,
    )
    return Extrapolation(
        mean=[float(x) for x in gi.tau_mean],
        lower=[float(x) for x in gi.tau_lower],
        upper=[float(x) for x in gi.tau_upper],
        in_support=[bool(x) for x in gi.in_support],
        note="GP interval on the effect from the observational estimate plus the gap learnt where "
        "the experiment ran; outside the support it is prior-driven",
    )


OBS_EXP = register(ObsExpVerifier())
