"""Expression predictors: a condition's pseudobulk delta for unseen drugs and unseen cell lines.

Baselines (what any mechanism-aware model must beat):
    control_mean      delta ≡ 0 (the plate-matched control profile)
    mean_effect       the mean delta over training conditions
    additive          μ + dose-level + drug + drug×dose + cell-line effects (shrunken main effects; an unseen
                      level contributes 0)
    ridge_drug        multi-output ridge on KB drug features (target one-hot, signed target neighbourhood),
                      cell line one-hot and log-dose (with drug-feature × log-dose interactions); λ by grouped CV
    mlp_drug          the trace_mlp network on ridge_drug's inputs, no mechanism: the flexible-model control

Trace-conditioned (use each condition's verified mechanism — `features.Mechanism`):
    trace_ridge       ridge_drug's inputs + mechanism indicators (targets, activities, TFs, pathways) + the
                      predicted signature as a sparse gene vector M, plus a gene-wise term (θᵀz_c)·M[c, g]
                      (z_c = 1, log-dose, log-dose², cell line) that carries a mechanism's gene directions to
                      genes no training condition moved. Auxiliary head: ridge from the mechanism-free inputs to
                      the mechanism's gene directions, used when a condition has no mechanism.
    trace_ridge_aux   the mechanism only as an auxiliary *target*: at prediction time the gene-wise term uses the
                      auxiliary head's predicted directions for every condition (no test-time mechanism needed).
    trace_mlp         small torch MLP on the same inputs, two heads — delta (MSE) and the mechanism's gene
                      direction flags (down / none / up, cross-entropy, auxiliary) — plus the gene-wise term on
                      M (or on the flag head's expected direction when a condition has no mechanism).
    trace_mlp_aux     trace_mlp with the mechanism as auxiliary target only (never an input).

Why the gene-wise term: a condition-level model maps features to a fixed set of output weights, so a mechanism
naming genes outside the training conditions' reach cannot move them; multiplying M by a learned
condition-level scale transfers "which genes, which direction" to any gene.

Leakage note (state it in every report): a verified trace of a held-out condition was built and verified against
that condition's own measured signature, so feeding it as an input is transductive — an upper bound on what a
mechanism-first pipeline gains, not a forecast from prior knowledge. The `_aux` models and mechanisms proposed
from the KB alone avoid that; an oracle (planted) mechanism says how much a correct mechanism is worth.

Leakage-free mechanisms for unseen drugs (`features.TracePrior`, `--mechanisms trace-prior`): per CV fold, the
verified traces of the training drugs say which KB ends (TFs, pathways) are live and which genes move under them;
a held-out drug gets its KB targets' reachable ends weighted by P(active) × P(end | active), both fitted on the
training drugs' traces. `save_predictors` writes the prior fitted on all training traces beside the checkpoint
(`prior.json`); `prepare_inputs(checkpoint_prior=...)` gives new conditions (unseen drugs) their mechanisms from
it. See docs/predictors.md.

Splits (`make_folds`) hold out whole drugs or cell lines; `mechcell.eval.expression.run_experiment` cross-validates
every model and scores it with the field's metrics (cell-eval definitions), cluster-bootstrap CIs over drugs and
paired margins against the best baseline per metric (evaluation lives above this layer: models never import eval).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mechcell.errors import InputError, NotFoundError
from mechcell.models.features import (
    DeltaTable,
    FittedTracePrior,
    GroupBy,
    Mechanism,
    TracePrior,
    mechanism_sources,
)

if TYPE_CHECKING:
    from mechcell.knowledge import KnowledgeBase

__all__ = [
    "BASELINES",
    "CHECKPOINT_SCHEMA_VERSION",
    "PREDICTORS",
    "ExpressionPredictor",
    "Fold",
    "PredictorCheckpoint",
    "PredictorInputs",
    "PredictorSpec",
    "TRACE_MODELS",
    "align_genes",
    "fit_predictors",
    "load_checkpoint_prior",
    "load_predictors",
    "make_folds",
    "make_predictor",
    "prepare_inputs",
    "resolve_models",
    "save_predictors",
]

CHECKPOINT_SCHEMA_VERSION = 1
PRIOR_FILE = "prior.json"
MechanismMode = Literal["auto", "traces", "trace-prior", "oracle", "none"]


# ------------------------------------------------------------------------------------------------ inputs


@dataclass
class PredictorInputs:
    """Everything a predictor may read: the deltas, KB drug features (by drug) and mechanisms (by condition key).

    `mechanism_prior`: when set, cross-validation replaces the mechanisms fold by fold with this prior fitted on
    the training fold (`TracePrior.fold`), so a held-out drug's mechanism never comes from its own data."""

    table: DeltaTable
    drug_features: dict[str, dict[str, float]]
    mechanisms: dict[str, Mechanism]
    mechanism_label: str = "none"
    mechanism_prior: TracePrior | None = None

    def subset(self, idx: Sequence[int] | np.ndarray) -> PredictorInputs:
        return PredictorInputs(
            self.table.subset(idx), self.drug_features, self.mechanisms, self.mechanism_label, self.mechanism_prior
        )

    def mechanism_of(self, key: str) -> Mechanism | None:
        return self.mechanisms.get(key)

    @property
    def n_with_mechanism(self) -> int:
        return sum(k in self.mechanisms for k in self.table.keys)


class _Vocab:
    """A fixed, sorted feature vocabulary (fitted on training rows); unknown names are ignored at transform."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = sorted(set(names))
        self.index = {n: i for i, n in enumerate(self.names)}

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, float]]) -> _Vocab:
        return cls([k for r in rows for k in r])

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        X = np.zeros((len(rows), len(self.names)), dtype=np.float64)
        for i, r in enumerate(rows):
            for k, v in r.items():
                j = self.index.get(k)
                if j is not None:
                    X[i, j] = v
        return X


class _Dose:
    """Standardised log10 dose (missing dose → the training mean) and its square."""

    def __init__(self, doses: np.ndarray) -> None:
        ld = self._log(doses)
        ok = np.isfinite(ld)
        self.mean = float(ld[ok].mean()) if ok.any() else 0.0
        sd = float(ld[ok].std()) if ok.sum() > 1 else 0.0
        self.sd = sd if sd > 0 else 1.0

    @staticmethod
    def _log(doses: np.ndarray) -> np.ndarray:
        d = np.asarray(doses, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d > 0, np.log10(np.where(d > 0, d, 1.0)), np.nan)

    def transform(self, doses: np.ndarray) -> np.ndarray:
        ld = self._log(doses)
        z = np.where(np.isfinite(ld), (ld - self.mean) / self.sd, 0.0)
        return np.column_stack([z, z * z])


def _mechanism_gene_matrix(inputs: PredictorInputs, gene_index: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(M: conditions × genes of predicted directions ±1, has: conditions with a mechanism)."""
    t = inputs.table
    M = np.zeros((len(t), len(gene_index)), dtype=np.float64)
    has = np.zeros(len(t), dtype=bool)
    for i, k in enumerate(t.keys):
        m = inputs.mechanisms.get(k)
        if m is None:
            continue
        has[i] = True
        for g, s in m.gene_values().items():
            j = gene_index.get(g)
            if j is not None:
                M[i, j] = s
    return M, has


# ------------------------------------------------------------------------------------------------ ridge core


def _scale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    return mu, np.where(sd > 1e-12, sd, 1.0)


def _ridge_weights(Xs: np.ndarray, Yc: np.ndarray, lam: float) -> np.ndarray:
    """argmin ||Yc − Xs W||² + λ||W||² for centred inputs, through the thin SVD (works for p ≫ n)."""
    if Xs.shape[1] == 0:
        return np.zeros((0, Yc.shape[1]))
    U, S, Vt = np.linalg.svd(Xs, full_matrices=False)
    d = S / (S * S + lam)
    return Vt.T @ (d[:, None] * (U.T @ Yc))


def _group_folds(groups: np.ndarray, n_folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Test-row indices of `n_folds` folds, whole groups per fold (shuffled groups dealt round-robin)."""
    uniq = np.unique(groups.astype(str))
    rng.shuffle(uniq)
    k = min(n_folds, uniq.size)
    fold_of = {g: i % k for i, g in enumerate(uniq)}
    lab = np.array([fold_of[str(g)] for g in groups])
    return [np.flatnonzero(lab == f) for f in range(k)]


LAMBDA_GRID = tuple(float(x) for x in np.logspace(-2, 3, 11))


def _choose_lambda(X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None, seed: int, n_folds: int = 3) -> float:
    """λ (per training row, so it scales with n) minimising grouped-CV squared error; the grid's middle when
    there are fewer than two groups."""
    n = X.shape[0]
    if groups is None or np.unique(groups.astype(str)).size < 2 or n < 4:
        return LAMBDA_GRID[len(LAMBDA_GRID) // 2] * n
    folds = _group_folds(groups, n_folds, np.random.default_rng(seed))
    err = np.zeros(len(LAMBDA_GRID))
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        mu, sd = _scale(X[train])
        ym = Y[train].mean(axis=0)
        Xs, Xt = (X[train] - mu) / sd, (X[test] - mu) / sd
        U, S, Vt = np.linalg.svd(Xs, full_matrices=False)
        UtY = U.T @ (Y[train] - ym)
        XtV = Xt @ Vt.T  # test rows in the SVD basis: each λ then costs (n_test × r) @ (r × G)
        for j, lam in enumerate(LAMBDA_GRID):
            d = S / (S * S + lam * train.size)
            pred = XtV @ (d[:, None] * UtY) + ym
            err[j] += float(((Y[test] - pred) ** 2).sum())
    return LAMBDA_GRID[int(np.argmin(err))] * n


class _Ridge:
    """Multi-output ridge with standardised inputs and an unpenalised intercept."""

    def __init__(self, lam: float | None = None) -> None:
        self.lam = lam
        self.mu: np.ndarray | None = None
        self.sd: np.ndarray | None = None
        self.W: np.ndarray | None = None
        self.b: np.ndarray | None = None

    def fit(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None, seed: int = 0) -> _Ridge:
        if self.lam is None:
            self.lam = _choose_lambda(X, Y, groups, seed)
        self.mu, self.sd = _scale(X)
        self.b = Y.mean(axis=0)
        self.W = _ridge_weights((X - self.mu) / self.sd, Y - self.b, float(self.lam))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        assert self.W is not None and self.mu is not None and self.sd is not None and self.b is not None
        return ((X - self.mu) / self.sd) @ self.W + self.b

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        assert self.W is not None and self.mu is not None and self.sd is not None and self.b is not None
        return {
            f"{prefix}mu": self.mu,
            f"{prefix}sd": self.sd,
            f"{prefix}W": self.W,
            f"{prefix}b": self.b,
            f"{prefix}lam": np.array([self.lam]),
        }

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray], prefix: str) -> _Ridge:
        r = cls(float(a[f"{prefix}lam"][0]))
        r.mu, r.sd, r.W, r.b = a[f"{prefix}mu"], a[f"{prefix}sd"], a[f"{prefix}W"], a[f"{prefix}b"]
        return r


# ------------------------------------------------------------------------------------------------ predictors


class ExpressionPredictor(ABC):
    """fit on training conditions, predict deltas (conditions × genes, the training table's gene order).

    `groups` passed to `fit` are the split's groups of the training rows (used for inner CV)."""

    name: ClassVar[str]
    kind: ClassVar[Literal["baseline", "trace"]] = "baseline"
    uses_mechanism: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, *, seed: int = 0, **params: Any) -> None:
        self.seed = seed
        self.params = params
        self.genes: list[str] = []

    @abstractmethod
    def _fit(self, inputs: PredictorInputs, groups: np.ndarray | None) -> None: ...

    @abstractmethod
    def _predict(self, inputs: PredictorInputs) -> np.ndarray: ...

    def fit(self, inputs: PredictorInputs, groups: np.ndarray | None = None) -> ExpressionPredictor:
        if len(inputs.table) == 0:
            raise InputError(f"{self.name}: no training conditions")
        self.genes = list(inputs.table.genes)
        self._fit(inputs, None if groups is None else np.asarray(groups, dtype=object))
        return self

    def predict(self, inputs: PredictorInputs) -> np.ndarray:
        if not self.genes:
            raise InputError(f"{self.name}: fit the predictor before predicting")
        if list(inputs.table.genes) != self.genes:
            raise InputError(f"{self.name}: the table's genes differ from the training genes; align them first")
        out = np.asarray(self._predict(inputs), dtype=np.float64)
        return out.reshape(len(inputs.table), len(self.genes))

    # persistence: JSON-able state + named arrays
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def set_state(self, state: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        return None


class ControlMean(ExpressionPredictor):
    name = "control_mean"
    description = "delta ≡ 0: the plate-matched control profile"

    def _fit(self, inputs: PredictorInputs, groups: np.ndarray | None) -> None:
        return None

    def _predict(self, inputs: PredictorInputs) -> np.ndarray:
        return np.zeros((len(inputs.table), len(self.genes)))


class MeanEffect(ExpressionPredictor):
    name = "mean_effect"
    description = "mean delta over training conditions"

    def _fit(self, inputs: PredictorInputs, groups: np.ndarray | None) -> None:
        self.mean = inputs.table.delta.mean(axis=0)

    def _predict(self, inputs: PredictorInputs) -> np.ndarray:
        return np.broadcast_to(self.mean, (len(inputs.table), self.mean.size)).copy()

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"mean": self.mean}

    def set_state(self, state: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.mean = arrays["mean"]


def _levels(t: DeltaTable) -> dict[str, list[str]]:
    dose = [f"{d:g}{u}" if math.isfinite(d) else "-" for d, u in zip(t.doses, t.dose_units, strict=True)]
    return {
        "dose": dose,
        "drug": list(t.perturbations),
        "drug_dose": [f"{p}|{d}" for p, d in zip(t.perturbations, dose, strict=True)],
        "cell_line": list(t.contexts),
    }


def _eb_kappa(R: np.ndarray, code: np.ndarray, cnt: np.ndarray) -> float:
    """Empirical-Bayes shrinkage κ = σ²_within / τ²_between of one factor, pooled over genes (James–Stein style):
    a factor whose level means vary no more than noise would make them is shrunk to ~0, a strong one barely."""
    L = cnt.size
    sums = np.zeros((L, R.shape[1]))
    np.add.at(sums, code, R)
    means = sums / np.maximum(cnt, 1)[:, None]
    dfw = R.shape[0] - L
    if dfw <= 0:
        return 1.0
    s2w = float(((R - means[code]) ** 2).sum() / (dfw * R.shape[1]))
    tau2 = float((means**2).mean()) - s2w * float((1.0 / np.maximum(cnt, 1)).mean())
    if tau2 <= 1e-12 * max(s2w, 1e-300):
        return 1e6
    return min(s2w / tau2, 1e6)


class Additive(ExpressionPredictor):
    """Additive main effects by backfitting, each level's effect = Σ partial residuals / (n_level + κ_factor) with
    κ_factor estimated by empirical Bayes (or fixed with `kappa=`). Drug×dose shares the drug's effect at one
    dose; a factor that adds nothing beyond the others shrinks to zero."""

    name = "additive"
    description = "μ + dose + drug + drug×dose + cell-line effects (unseen levels contribute 0)"
    FACTORS = ("dose", "drug", "drug_dose", "cell_line")

    def _fit(self, inputs: PredictorInputs, groups: np.ndarray | None) -> None:
        fixed = self.params.get("kappa")
        t = inputs.table
        Y = t.delta
        self.mu = Y.mean(axis=0)
        lev = _levels(t)
        self.effects: dict[str, dict[str, np.ndarray]] = {f: {} for f in self.FACTORS}
        R = Y - self.mu
        codes = {f: np.unique(np.asarray(lev[f], dtype=str), return_inverse=True) for f in self.FACTORS}
        for _ in range(int(self.params.get("iterations", 15))):
            for f in self.FACTORS:
                names, code = codes[f]
                cur = np.zeros((names.size, Y.shape[1]))
                for i, nm in enumerate(names):
                    if nm in self.effects[f]:
                        cur[i] = self.effects[f][nm]
                R = R + cur[code]
                sums = np.zeros_like(cur)
                np.add.at(sums, code, R)
                cnt = np.bincount(code, minlength=names.size).astype(np.float64)
                kappa = float(fixed) if fixed is not None else _eb_kappa(R, code, cnt)
                new = sums / (cnt + kappa)[:, None]
                R = R - new[code]
                self.effects[f] = {str(nm): new[i] for i, nm in enumerate(names)}

    def _predict(self, inputs: PredictorInputs) -> np.ndarray:
        lev = _levels(inputs.table)
        out = np.tile(self.mu, (len(inputs.table), 1))
        for f in self.FACTORS:
            for i, nm in enumerate(lev[f]):
                e = self.effects[f].get(nm)
                if e is not None:
                    out[i] += e
        return out

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"mu": self.mu}
        names: dict[str, list[str]] = {}
        for f in self.FACTORS:
            names[f] = sorted(self.effects[f])
            arrays[f"eff_{f}"] = (
                np.vstack([self.effects[f][n] for n in names[f]]) if names[f] else np.zeros((0, self.mu.size))
            )
        return {"levels": names}, arrays

    def set_state(self, state: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.mu = arrays["mu"]
        self.effects = {f: {n: arrays[f"eff_{f}"][i] for i, n in enumerate(state["levels"][f])} for f in self.FACTORS}


class _Design:
    """Condition-level design matrix: KB drug features, cell line one-hot, dose; optionally mechanism parts."""

    def __init__(self, inputs: PredictorInputs, *, mechanism: bool, gene_index: Mapping[str, int]) -> None:
        t = inputs.table
        self.mechanism = mechanism
        self.drug_vocab = _Vocab.of([inputs.drug_features.get(d, {}) for d in t.perturbations])
        self.line_vocab = _Vocab(t.contexts)
        self.dose = _Dose(t.doses)
        self.gene_index = dict(gene_index)
        self.mech_vocab = _Vocab.of(
            [m.features() for k in t.keys if (m := inputs.mechanisms.get(k)) is not None] if mechanism else []
        )

    def base(self, inputs: PredictorInputs) -> np.ndarray:
        t = inputs.table
        D = self.drug_vocab.matrix([inputs.drug_features.get(d, {}) for d in t.perturbations])
        L = self.line_vocab.matrix([{c: 1.0} for c in t.contexts])
        z = self.dose.transform(t.doses)
        return np.hstack([D, D * z[:, :1], L, z])

    def z(self, inputs: PredictorInputs) -> np.ndarray:
        """Covariates of the gene-wise mechanism scale: 1, log-dose, log-dose², cell line one-hot."""
        t = inputs.table
        L = self.line_vocab.matrix([{c: 1.0} for c in t.contexts])
        return np.hstack([np.ones((len(t), 1)), self.dose.transform(t.doses), L])

    def mech(self, inputs: PredictorInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indicator block incl. has-mechanism and × log-dose, M, has)."""
        t = inputs.table
        rows = [m.features() if (m := inputs.mechanisms.get(k)) is not None else {} for k in t.keys]
        F = self.mech_vocab.matrix(rows)
        M, has = _mechanism_gene_matrix(inputs, self.gene_index)
        z = self.dose.transform(t.doses)[:, :1]
        return np.hstack([F, F * z, has[:, None].astype(np.float64)]), M, has

    def state(self) -> dict[str, Any]:
        return {
            "drug_vocab": self.drug_vocab.names,
            "line_vocab": self.line_vocab.names,
            "mech_vocab": self.mech_vocab.names,
            "dose": [self.dose.mean, self.dose.sd],
            "mechanism": self.mechanism,
        }

    @classmethod
    def from_state(cls, s: dict[str, Any], gene_index: Mapping[str, int]) -> _Design:
        d = cls.__new__(cls)
        d.mechanism = bool(s["mechanism"])
        d.drug_vocab, d.line_vocab, d.mech_vocab = (
            _Vocab(s["drug_vocab"]),
            _Vocab(s["line_vocab"]),
            _Vocab(s["mech_vocab"]),
        )
        d.dose = _Dose.__new__(_Dose)
        d.dose.mean, d.dose.sd = float(s["dose"][0]), float(s["dose"][1])
        d.gene_index = dict(gene_index)
        return d


class RidgeDrug(ExpressionPredictor):
    name = "ridge_drug"
    description = "ridge on KB drug features (targets, signed neighbourhood), cell line, log-dose"

    def _fit(self, inputs: PredictorInputs, groups: np.ndarray | None) -> None:
        self.design = _Design(inputs, mechanism=False, gene_index={g: i for i, g in enumerate(self.genes)})
        self.ridge = _Ridge(self.params.get("lam")).fit(self.design.base(inputs), inputs.table.delta, groups, self.seed)

    def _predict(self, inputs: PredictorInputs) -> np.ndarray:
        return self.ridge.predict(self.design.base(inputs))

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"design": self.design.state()}, self.ridge.arrays("r_")

    def set_state(self, state: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.design = _Design.from_state(state["design"], {g: i for i, g in enumerate(self.genes)})
        self.ridge = _Ridge.from_arrays(arrays, "r_")


def _genewise_theta(R: np.ndarray, Z: np.ndarray, Ds: Sequence[np.ndarray], ridge: float = 1e-6) -> np.ndarray:
    """θ (J × K) minimising ||R − Σ_j Σ_k θ_jk z_k ⊙ D_j||² over conditions × genes: (J·K)² normal equations.

    Each direction matrix D_j (conditions × genes) gets its own condition-level scale z_c·θ_j."""
    J, K = len(Ds), Z.shape[1]
    cross = np.stack([np.stack([(Ds[j] * Ds[i]).sum(axis=1) for i in range(J)]) for j in range(J)])  # J × J × n
    A = np.einsum("jic,ck,cl->jkil", cross, Z, Z).reshape(J * K, J * K)
    b = np.stack([Z.T @ (Ds[j] * R).sum(axis=1) for j in range(J)]).reshape(J * K)
    A = A + ridge * max(float(np.trace(A)), 1.0) * np.eye(J * K)
    return np.linalg.solve(A, b).reshape(J, K)


def _genewise(Z: np.ndarray, Ds: Sequence[np.ndarray], theta: np.ndarray) -> np.ndarray:
    out = np.zeros_like(Ds[0])
    for j, D in enumerate(Ds):
        out += (Z @ theta[j])[:, None] * D
    return out


class TraceRidge(ExpressionPredictor):
    name = "trace_ridge"
    kind = "trace"
    uses_mechanism = True
    mechanism_input: ClassVar[bool] = True
    description = (
        "ridge on drug + mechanism features (targets, TFs, pathways, predicted gene directions) + gene-wise term"
    )

    def _fit(self, inputs: PredictorInputs, groups: np.ndarray | None) -> None:
        gi = {g: i for i, g in enumerate(self.genes)}
        self.design = _Design(inputs, mechanism=self.mechanism_input, gene_index=gi)
        Y = inputs.table.delta
        Xb = self.design.base(inputs)
        Fm, M, has = self.design.mech(inputs)
        Z = self.design.z(inputs)
        # auxiliary head: the mechanism's gene directions from mechanism-free inputs (trained where one exists)
        self.aux = _Ridge(self.params.get("aux_lam"))
        if has.sum() >= 2:
            self.aux.fit(Xb[has], M[has], None if groups is None else groups[has], self.seed)
        else:
            self.aux.fit(Xb, np.zeros_like(M), None, self.seed)
        Ds = self._directions(Xb, M, has)
        X = np.hstack([Xb, Fm, M]) if self.mechanism_input else Xb
        self.theta = _genewise_theta(Y - Y.mean(axis=0), Z, Ds)
        lam = self.params.get("lam")
        for it in range(int(self.params.get("iterations", 4))):
            self.ridge = _Ridge(lam).fit(X, Y - _genewise(Z, Ds, self.theta), groups, self.seed + it)
            lam = self.ridge.lam
            self.theta = _genewise_theta(Y - self.ridge.predict(X), Z, Ds)

    def _directions(self, Xb: np.ndarray, M: np.ndarray, has: np.ndarray) -> list[np.ndarray]:
        """Gene-direction matrices, each with its own learned scale: the mechanism's M (rows with one) and the
        aux head's guess for rows without one — or, with the mechanism as target only, the guess everywhere.
        Why separate scales: a condition with no verified mechanism is often one with no effect, so the model
        must be free to trust the guess less than a verified mechanism."""
        guess = np.clip(self.aux.predict(Xb), -1.0, 1.0)
        if not self.mechanism_input:
            return [guess]
        return [M * has[:, None], guess * (~has)[:, None]]

    def _predict(self, inputs: PredictorInputs) -> np.ndarray:
        Xb = self.design.base(inputs)
        Fm, M, has = self.design.mech(inputs)
        Z = self.design.z(inputs)
        X = np.hstack([Xb, Fm, M]) if self.mechanism_input else Xb
        return self.ridge.predict(X) + _genewise(Z, self._directions(Xb, M, has), self.theta)

    def predict_mechanism(self, inputs: PredictorInputs) -> np.ndarray:
        """The auxiliary head: predicted gene directions (−1 … 1) from drug, cell line and dose alone."""
        return np.clip(self.aux.predict(self.design.base(inputs)), -1.0, 1.0)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"design": self.design.state()}, {
            **self.ridge.arrays("r_"),
            **self.aux.arrays("a_"),
            "theta": self.theta,
        }

    def set_state(self, state: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.design = _Design.from_state(state["design"], {g: i for i, g in enumerate(self.genes)})
        self.ridge = _Ridge.from_arrays(arrays, "r_")
        self.aux = _Ridge.from_arrays(arrays, "a_")
        self.theta = arrays["theta"]


class TraceRidgeAux(TraceRidge):
    name = "trace_ridge_aux"
    mechanism_input = False
    description = "trace_ridge with the mechanism as auxiliary target only (predicted directions at test time)"


class TraceMLP(ExpressionPredictor):
    """Two-headed MLP: delta (MSE) and the mechanism's gene-direction flags (cross-entropy, auxiliary), plus the
    gene-wise term scale(z_c) · gene_scale_g · direction[c, g]. Full-batch Adam, seeded, float32 weights."""

    name = "trace_mlp"
    kind = "trace"
    uses_mechanism = True
    mechanism_input: ClassVar[bool] = True
    description = "MLP on drug + mechanism features, delta head + auxiliary mechanism-direction head"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "hidden": 128,
        "epochs": 250,
        "lr": 3e-3,
        "weight_decay": 1e-3,
        "dropout": 0.1,
        "aux_weight": 0.5,
    }

    def _hp(self, k: str) -> Any:
        return self.params.get(k, self.DEFAULTS[k])

    def _inputs(self, inputs: PredictorInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        Xb = self.design.base(inputs)
        Fm, M, has = self.design.mech(inputs)
        X = np.hstack([Xb, Fm, M]) if self.mechanism_input else Xb
        return X, self.design.z(inputs), M, has

    def _net(self, p: int, n_z: int) -> Any:
        import torch
        from torch import nn

        G, h, drop = len(self.genes), int(self._hp("hidden")), float(self._hp("dropout"))

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.trunk = nn.Sequential(nn.Linear(p, h), nn.ReLU(), nn.Dropout(drop), nn.Linear(h, h))
                self.act = nn.ReLU()
                self.delta = nn.Linear(h, G)
                self.flags = nn.Linear(h, 3 * G)
                self.scale = nn.Linear(n_z, 1, bias=False)  # on the mechanism's directions
                self.guess_scale = nn.Linear(n_z, 1, bias=False)  # on the flag head's, rows without one
                self.gene_scale = nn.Parameter(torch.ones(G))

            def forward(self, x: Any, z: Any, m: Any, use_m: Any) -> tuple[Any, Any]:
                hdn = self.act(self.trunk(x))
                logits = self.flags(hdn).view(x.shape[0], 3, G)  # classes on dim 1: contiguous genes, fast
                prob = torch.softmax(logits, dim=1)
                u = use_m[:, None].to(m.dtype)
                genewise = self.scale(z) * m * u + self.guess_scale(z) * (prob[:, 2] - prob[:, 0]) * (1 - u)
                return self.delta(hdn) + genewise * self.gene_scale, logits

        return Net()

    def _fit(self, inputs: PredictorInputs, groups: np.ndarray | None) -> None:
        import torch

        gi = {g: i for i, g in enumerate(self.genes)}
        self.design = _Design(inputs, mechanism=self.mechanism_input, gene_index=gi)
        X, Z, M, has = self._inputs(inputs)
        Y = inputs.table.delta
        self.x_mu, self.x_sd = _scale(X)
        self.y_mu = Y.mean(axis=0)
        self.y_sd = float((Y - self.y_mu).std()) or 1.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._net(X.shape[1], Z.shape[1])
            xt = torch.as_tensor((X - self.x_mu) / self.x_sd, dtype=torch.float32)
            zt = torch.as_tensor(Z, dtype=torch.float32)
            mt = torch.as_tensor(M, dtype=torch.float32)
            ht = torch.as_tensor(has & self.mechanism_input)
            yt = torch.as_tensor((Y - self.y_mu) / self.y_sd, dtype=torch.float32)
            flag_t = torch.as_tensor(np.sign(M) + 1, dtype=torch.long)  # 0 down, 1 none, 2 up (weights dropped)
            has_t = torch.as_tensor(has)
            decay = [p for n, p in net.named_parameters() if n.startswith(("trunk", "delta", "flags"))]
            free = [p for n, p in net.named_parameters() if not n.startswith(("trunk", "delta", "flags"))]
            opt = torch.optim.Adam(
                [{"params": decay, "weight_decay": float(self._hp("weight_decay"))}, {"params": free}],
                lr=float(self._hp("lr")),
            )
            aux_w = float(self._hp("aux_weight"))
            net.train()
            for _ in range(int(self._hp("epochs"))):
                opt.zero_grad()
                pred, logits = net(xt, zt, mt, ht)
                loss = torch.mean((pred - yt) ** 2)
                if aux_w > 0 and bool(has_t.any()):
                    ce = torch.nn.functional.cross_entropy(logits[has_t], flag_t[has_t])
                    loss = loss + aux_w * ce
                loss.backward()
                opt.step()
            net.eval()
        self.net = net

    def _forward(self, inputs: PredictorInputs) -> tuple[np.ndarray, np.ndarray]:
        import torch

        X, Z, M, has = self._inputs(inputs)
        with torch.no_grad():
            pred, logits = self.net(
                torch.as_tensor((X - self.x_mu) / self.x_sd, dtype=torch.float32),
                torch.as_tensor(Z, dtype=torch.float32),
                torch.as_tensor(M, dtype=torch.float32),
                torch.as_tensor(has & self.mechanism_input),
            )
        return pred.double().numpy() * self.y_sd + self.y_mu, torch.softmax(logits, 1).double().numpy()

    def _predict(self, inputs: PredictorInputs) -> np.ndarray:
        return self._forward(inputs)[0]

    def predict_mechanism(self, inputs: PredictorInputs) -> np.ndarray:
        """The auxiliary head's expected gene direction P(up) − P(down), conditions × genes."""
        p = self._forward(inputs)[1]
        return p[:, 2] - p[:, 0]

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"net.{k}": v.detach().numpy().copy() for k, v in self.net.state_dict().items()}
        arrays.update(x_mu=self.x_mu, x_sd=self.x_sd, y_mu=self.y_mu, y_sd=np.array([self.y_sd]))
        return {"design": self.design.state()}, arrays

    def set_state(self, state: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        import torch

        self.design = _Design.from_state(state["design"], {g: i for i, g in enumerate(self.genes)})
        self.x_mu, self.x_sd, self.y_mu = arrays["x_mu"], arrays["x_sd"], arrays["y_mu"]
        self.y_sd = float(arrays["y_sd"][0])
        self.net = self._net(self.x_mu.size, 1 + 2 + len(self.design.line_vocab.names))
        self.net.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("net.")})
        self.net.eval()


class TraceMLPAux(TraceMLP):
    name = "trace_mlp_aux"
    mechanism_input = False
    description = "trace_mlp with the mechanism as auxiliary target only (never an input)"


class MLPDrug(TraceMLP):
    """The same network and inputs as `trace_mlp_aux` without any mechanism (no auxiliary loss): the control that
    separates what the mechanism adds from what a flexible model adds."""

    name = "mlp_drug"
    kind = "baseline"
    uses_mechanism = False
    mechanism_input = False
    description = "MLP of trace_mlp's size on KB drug features, cell line, log-dose; no mechanism"

    def _hp(self, k: str) -> Any:
        return 0.0 if k == "aux_weight" else super()._hp(k)

    def _inputs(self, inputs: PredictorInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        X, Z, M, has = super()._inputs(inputs)
        return X, Z, np.zeros_like(M), np.zeros_like(has)


# ------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class PredictorSpec:
    """One registered predictor: its class, whether it is a baseline, whether it reads mechanisms."""

    name: str
    cls: type[ExpressionPredictor]

    @property
    def kind(self) -> str:
        return self.cls.kind

    @property
    def uses_mechanism(self) -> bool:
        return self.cls.uses_mechanism

    @property
    def description(self) -> str:
        return self.cls.description


PREDICTORS: dict[str, PredictorSpec] = {
    c.name: PredictorSpec(c.name, c)
    for c in (ControlMean, MeanEffect, Additive, RidgeDrug, MLPDrug, TraceRidge, TraceRidgeAux, TraceMLP, TraceMLPAux)
}
BASELINES = tuple(n for n, s in PREDICTORS.items() if s.kind == "baseline")
TRACE_MODELS = tuple(n for n, s in PREDICTORS.items() if s.kind == "trace")
DEFAULT_MODELS = (*BASELINES, *TRACE_MODELS)


def make_predictor(name: str, *, seed: int = 0, **params: Any) -> ExpressionPredictor:
    spec = PREDICTORS.get(name)
    if spec is None:
        raise InputError(f"unknown predictor {name!r} (have: {', '.join(PREDICTORS)})")
    return spec.cls(seed=seed, **params)


def resolve_models(models: Sequence[str] | str | None) -> list[str]:
    """'all' / None → every model; 'baselines'; 'trace'; or a comma list. The four simple baselines are always
    added (a table without them has nothing to compare against), and `mlp_drug` — the flexible-model control —
    whenever an MLP is asked for, so an MLP's margin is never measured against linear baselines only."""
    if models is None or models == "all" or (not isinstance(models, str) and list(models) == ["all"]):
        return list(DEFAULT_MODELS)
    items = models.split(",") if isinstance(models, str) else list(models)
    names: list[str] = []
    for it in (x.strip() for x in items):
        if not it:
            continue
        if it in ("all", "default"):
            names += list(DEFAULT_MODELS)
        elif it == "baselines":
            names += list(BASELINES)
        elif it == "trace":
            names += list(TRACE_MODELS)
        elif it in PREDICTORS:
            names.append(it)
        else:
            raise InputError(f"unknown predictor {it!r} (have: {', '.join(PREDICTORS)}, all, baselines, trace)")
    simple = [b for b in BASELINES if b != "mlp_drug"]
    control = ["mlp_drug"] if any("mlp" in n for n in names) else []
    return list(dict.fromkeys([*simple, *control, *names]))


# ------------------------------------------------------------------------------------------------ experiments


class Fold(BaseModel):
    """One train/test split: whole groups (drugs or cell lines) held out."""

    model_config = ConfigDict(frozen=True)

    by: GroupBy
    repeat: int
    fold: int
    train: list[int]
    test: list[int]
    held_out: list[str]


def make_folds(
    table: DeltaTable, by: GroupBy = "drug", *, n_folds: int = 5, n_repeats: int = 1, seed: int = 0
) -> list[Fold]:
    """Grouped k-fold (k = min(n_folds, number of groups); leave-one-group-out when there are fewer), repeated
    with reshuffled groups; every condition is in exactly one test fold per repeat."""
    if n_folds < 2:
        raise InputError(f"n_folds must be ≥ 2, got {n_folds}")
    g = table.groups(by)
    if np.unique(g.astype(str)).size < 2:
        raise InputError(f"a split by {by} needs ≥ 2 distinct {by}s (have {np.unique(g.astype(str)).size})")
    out: list[Fold] = []
    for r in range(n_repeats):
        folds = _group_folds(g, n_folds, np.random.default_rng([seed, r]))
        for f, test in enumerate(folds):
            train = np.setdiff1d(np.arange(len(table)), test)
            out.append(
                Fold(
                    by=by,
                    repeat=r,
                    fold=f,
                    train=train.tolist(),
                    test=test.tolist(),
                    held_out=sorted({str(x) for x in g[test]}),
                )
            )
    return out


# ------------------------------------------------------------------------------------------------ data assembly


def prepare_inputs(
    store: str | Path | None,
    dataset: str | Path | None = None,
    *,
    kb: KnowledgeBase | str | Path | None = None,
    mechanisms: MechanismMode = "auto",
    truth: str | Path | None = None,
    accepted_only: bool = True,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_prior: FittedTracePrior | None = None,
) -> tuple[PredictorInputs, dict[str, Any]]:
    """Deltas, KB drug features and mechanisms for one dataset, plus a description of what was used.

    dataset: a dataset id registered in `store`, a dataset path (h5ad / Tahoe), or None (the store's only
    dataset). mechanisms: `traces` (the store's traces), `trace-prior` (the store's traces as a corpus: cross-
    validation fits a `TracePrior` per fold on the training fold's traces and gives held-out drugs its KB-path
    mechanisms; leakage-free), `oracle` (the planted graphs of `truth`, default
    truth.json beside the dataset), `auto` (traces when the store holds any for these conditions, else the oracle
    when a truth file is found, else none), `none`.

    checkpoint_prior: the trace prior saved in a predictor checkpoint (`load_checkpoint_prior`); when given, the
    mechanisms are that prior's for every condition it was not fitted on (the KB reach of the dataset's drugs is
    built here, with the prior's settings), whatever `mechanisms` says: predicting unseen drugs from a checkpoint.
    """
    from mechcell.datasets.readers import open_dataset
    from mechcell.datasets.store import Store
    from mechcell.knowledge import KnowledgeBase, load_kb
    from mechcell.models.features import (
        kb_drug_features,
        kb_reach,
        mechanisms_from_traces,
        mechanisms_from_truth,
        pseudobulk_deltas,
    )

    if mechanisms not in ("auto", "traces", "trace-prior", "oracle", "none"):
        raise InputError(f"--mechanisms {mechanisms!r}: choose auto, traces, trace-prior, oracle or none")
    info: dict[str, Any] = {"store": None if store is None else str(store)}
    st = None
    if store is not None and Path(store).is_file():
        st = Store(store, read_only=True)
    try:
        did: str | None = None
        if dataset is not None and not Path(str(dataset)).exists():
            if st is None:
                raise NotFoundError(f"dataset {dataset!r} is neither a path nor registered (no store at {store})")
            did = str(dataset)
            ds = st.open(did)
        elif dataset is not None:
            ds = open_dataset(dataset)
            if st is not None:
                known = [d for d in st.datasets() if Path(d.path).resolve() == Path(str(dataset)).resolve()]
                did = known[0].id if known else None
        else:
            if st is None:
                raise NotFoundError(
                    f"no store at {store}: pass --dataset PATH or ingest one (`mechcell data ingest ... --store`)"
                )
            recs = st.datasets()
            if len(recs) != 1:
                have = ", ".join(r.id for r in recs) or "none"
                raise InputError(f"store {store} holds {len(recs)} datasets ({have}): pass --dataset ID")
            did = recs[0].id
            ds = st.open(did)
        info.update(dataset_id=did, dataset_path=ds.path)
        try:
            table = pseudobulk_deltas(ds, dataset_id=did, on_progress=on_progress)
        finally:
            ds.close()
        own_kb = not isinstance(kb, KnowledgeBase)
        kbo = kb if isinstance(kb, KnowledgeBase) else load_kb(kb)
        reach = None
        try:
            feats = kb_drug_features(kbo, set(table.perturbations))
            if checkpoint_prior is not None:
                r = checkpoint_prior.reach
                reach = kb_reach(
                    kbo,
                    set(table.perturbations),
                    max_len=r.max_len,
                    footprint_genes=r.footprint_genes,
                    min_regulon=r.min_regulon,
                )
            elif mechanisms == "trace-prior":
                reach = kb_reach(kbo, set(table.perturbations))
            info["kb_version"] = kbo.version
        finally:
            if own_kb:
                kbo.close()
        if checkpoint_prior is not None and reach is not None:
            seen = set(checkpoint_prior.seen_keys)
            new = [(k, d) for k, d in zip(table.keys, table.perturbations, strict=True) if k not in seen]
            prior = checkpoint_prior.with_reach(reach)
            mech = prior.mechanisms([k for k, _ in new], [d for _, d in new])
            info.update(
                mechanism_source="trace-prior",
                n_with_mechanism=len(mech),
                prior_fitted_on_drugs=len(checkpoint_prior.seen_drugs),
                prior_unseen_drugs=len({d for _, d in new} - set(checkpoint_prior.seen_drugs)),
            )
            return PredictorInputs(table, feats, mech, "trace-prior"), info
        mech = {}
        label = "none"
        if mechanisms in ("auto", "traces", "trace-prior") and st is not None:
            from mechcell.datasets.traces import TraceStore

            mech = mechanisms_from_traces(TraceStore(st), table.keys, accepted_only=accepted_only)
            label = "traces" if mech else "none"
        if mechanisms in ("traces", "trace-prior") and not mech:
            raise NotFoundError(
                f"no {'accepted ' if accepted_only else ''}traces for the dataset's conditions in {store}; "
                "build them (`mechcell demo`, `mechcell traces build`) or pass --mechanisms oracle"
            )
        if mechanisms == "oracle" or (mechanisms == "auto" and not mech):
            tp = Path(truth) if truth is not None else _truth_beside(ds.path)
            if tp is not None and tp.exists():
                from mechcell.datasets.synthetic import load_truth

                mech = mechanisms_from_truth(load_truth(tp), table.keys)
                label = "oracle" if mech else "none"
                info["truth"] = str(tp)
            elif mechanisms == "oracle":
                raise NotFoundError(f"no truth.json for the oracle mechanisms (looked at {tp}); pass --truth")
        info.update(mechanism_source=label, n_with_mechanism=sum(k in mech for k in table.keys))
        if reach is not None:
            # cross-validation swaps in the per-fold prior; a plain fit keeps the verified traces
            info["mechanism_source"] = "trace-prior"
            return PredictorInputs(table, feats, mech, "trace-prior", TracePrior(reach)), info
        return PredictorInputs(table, feats, mech, mechanism_sources(mech) if mech else label), info
    finally:
        if st is not None:
            st.close()


def _truth_beside(path: str) -> Path | None:
    p = Path(path)
    for cand in (p.parent / "truth.json", p / "truth.json", p.parent.parent / "truth.json"):
        if cand.is_file():
            return cand
    return None


# ------------------------------------------------------------------------------------------------ checkpoints


class PredictorCheckpoint(BaseModel):
    """What a saved predictor directory holds: the config it was trained with and what it saw."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = CHECKPOINT_SCHEMA_VERSION
    models: list[str]
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seed: int
    genes: list[str]
    train_keys: list[str]
    dataset_id: str | None = None
    mechanism_source: str
    kb_version: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    code_version: str = ""
    states: dict[str, dict[str, Any]] = Field(default_factory=dict)
    prior: str | None = Field(
        None, description="file of the trace prior fitted on the training conditions' traces (trace-prior runs)"
    )


def fit_predictors(
    inputs: PredictorInputs,
    models: Sequence[str] | str | None = None,
    *,
    seed: int = 0,
    by: GroupBy = "drug",
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, ExpressionPredictor]:
    """Every requested model (baselines included) fitted on all conditions of `inputs`. With a mechanism prior,
    the training rows get the mechanisms cross-validation trained on (`TracePrior.fold` with no held-out rows)."""
    if inputs.mechanism_prior is not None:
        inputs = inputs.mechanism_prior.fold(inputs, inputs.subset([]))[0]
    groups = inputs.table.groups(by)
    return {
        m: make_predictor(m, seed=seed, **dict((params or {}).get(m, {}))).fit(inputs, groups)
        for m in resolve_models(models)
    }


def save_predictors(
    out_dir: str | Path,
    fitted: Mapping[str, ExpressionPredictor],
    inputs: PredictorInputs,
    *,
    seed: int,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    kb_version: str | None = None,
) -> Path:
    """Write `predictor.json` (the checkpoint config and each model's JSON state) and `weights.npz`; with a
    mechanism prior, also `prior.json`: the prior fitted on the training conditions' own traces (all of them, and
    nothing else), which `mechcell eval predictor --checkpoint` uses to give unseen drugs their mechanisms."""
    from mechcell.datasets.traces import code_version

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    states: dict[str, dict[str, Any]] = {}
    own = {name: {**m.params, **dict((params or {}).get(name, {}))} for name, m in fitted.items()}
    for name, m in fitted.items():
        s, a = m.get_state()
        states[name] = s
        arrays.update({f"{name}/{k}": v for k, v in a.items()})
    ck = PredictorCheckpoint(
        models=list(fitted),
        params={k: v for k, v in own.items() if v},
        seed=seed,
        genes=list(inputs.table.genes),
        train_keys=list(inputs.table.keys),
        dataset_id=inputs.table.dataset_id,
        mechanism_source=inputs.mechanism_label,
        kb_version=kb_version,
        code_version=code_version(),
        states=states,
    )
    prior_file = None
    if inputs.mechanism_prior is not None:
        t = inputs.table
        own = {k: inputs.mechanisms[k] for k in t.keys if k in inputs.mechanisms}
        fitted_prior = inputs.mechanism_prior.fit(own, list(t.keys), list(t.perturbations))
        prior_file = PRIOR_FILE
        (out / PRIOR_FILE).write_text(fitted_prior.model_dump_json() + "\n")
    else:
        (out / PRIOR_FILE).unlink(missing_ok=True)  # never leave a stale prior beside a new checkpoint
    ck = ck.model_copy(update={"prior": prior_file})
    np.savez_compressed(out / "weights.npz", **arrays)
    (out / "predictor.json").write_text(ck.model_dump_json(indent=1) + "\n")
    return out


def load_checkpoint_prior(path: str | Path, checkpoint: PredictorCheckpoint) -> FittedTracePrior | None:
    """The trace prior saved with a checkpoint (None when it was trained without one)."""
    if checkpoint.prior is None:
        return None
    p = Path(path) / checkpoint.prior
    if not p.is_file():
        raise NotFoundError(f"checkpoint {path} names its trace prior {checkpoint.prior} but {p} is missing")
    try:
        prior = FittedTracePrior.model_validate_json(p.read_text())
    except ValueError as exc:
        raise InputError(f"{p} is not a mechcell trace prior: {exc}") from None
    if set(prior.seen_keys) != set(checkpoint.train_keys):
        raise InputError(f"{p} was not fitted on this checkpoint's training conditions")
    return prior


def load_predictors(path: str | Path) -> tuple[PredictorCheckpoint, dict[str, ExpressionPredictor]]:
    """Read a directory written by `save_predictors` back into fitted models."""
    p = Path(path)
    cfg = p / "predictor.json"
    if not cfg.is_file():
        raise NotFoundError(
            f"no predictor checkpoint at {p} (expected {cfg}; train one with `mechcell train predictor`)"
        )
    try:
        ck = PredictorCheckpoint.model_validate_json(cfg.read_text())
    except ValueError as exc:
        raise InputError(f"{cfg} is not a mechcell predictor checkpoint: {exc}") from None
    if ck.schema_version != CHECKPOINT_SCHEMA_VERSION:
        raise InputError(
            f"{cfg}: checkpoint schema {ck.schema_version}, this mechcell reads {CHECKPOINT_SCHEMA_VERSION}"
        )
    z = np.load(p / "weights.npz", allow_pickle=False)
    out: dict[str, ExpressionPredictor] = {}
    for name in ck.models:
        m = make_predictor(name, seed=ck.seed, **ck.params.get(name, {}))
        m.genes = list(ck.genes)
        pre = f"{name}/"
        m.set_state(ck.states.get(name, {}), {k[len(pre) :]: z[k] for k in z.files if k.startswith(pre)})
        out[name] = m
    return ck, out


def align_genes(inputs: PredictorInputs, genes: Sequence[str]) -> PredictorInputs:
    """The same inputs with the table's genes in `genes` order (every one must be present)."""
    t = inputs.table
    idx = {g: i for i, g in enumerate(t.genes)}
    missing = [g for g in genes if g not in idx]
    if missing:
        raise InputError(f"{len(missing)} of the model's genes are not in the data (e.g. {', '.join(missing[:5])})")
    cols = np.array([idx[g] for g in genes], dtype=np.int64)
    nt = DeltaTable(
        keys=t.keys,
        perturbations=t.perturbations,
        contexts=t.contexts,
        doses=t.doses,
        dose_units=t.dose_units,
        batches=t.batches,
        genes=list(genes),
        delta=t.delta[:, cols],
        padj=t.padj[:, cols],
        control=t.control[:, cols],
        n_treated_wells=t.n_treated_wells,
        n_control_wells=t.n_control_wells,
        dataset_id=t.dataset_id,
        meta=t.meta,
    )
    return PredictorInputs(nt, inputs.drug_features, inputs.mechanisms, inputs.mechanism_label, inputs.mechanism_prior)
