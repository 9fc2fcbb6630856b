"""`verify(graph, condition, kb=, store=)`: the one call the CLI, the agents and Python users make."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mechcell.errors import NotFoundError
from mechcell.graphs import ActionGraph, parse_text
from mechcell.verifiers.base import PanelSettings
from mechcell.verifiers.doses import DoseSeries, dose_series
from mechcell.verifiers.panel import run_panel, verify_text
from mechcell.verifiers.structural import problem_feedback
from mechcell.verifiers.types import VerificationReport

if TYPE_CHECKING:
    from mechcell.datasets.cells import CellData
    from mechcell.datasets.schemas import Condition
    from mechcell.datasets.store import Store
    from mechcell.knowledge import KnowledgeBase


class CellCache:
    """Loads a condition's cells once (for every gene the graph names) and serves column subsets."""

    def __init__(self, store: Store, dataset_id: str, condition: Condition, genes: Sequence[str]) -> None:
        self.store, self.dataset_id, self.condition = store, dataset_id, condition
        self.genes = list(dict.fromkeys(genes))
        self._data: CellData | None = None
        self._failed: str | None = None

    def _load(self) -> CellData | None:
        if self._data is None and self._failed is None:
            try:
                ds = self.store.open(self.dataset_id)
                present = set(ds.genes)
                genes = [g for g in self.genes if g in present]
                if ds.layout == "de" or not genes:
                    self._failed = "no cell-level data"
                else:
                    self._data = ds.cells(self.condition, genes)
            except Exception as exc:  # missing file, moved dataset: the tests that need cells become uncheckable
                self._failed = f"{type(exc).__name__}: {exc}"
        return self._data

    def __call__(self, genes: Sequence[str]) -> CellData | None:
        from mechcell.datasets.cells import CellData

        data = self._load()
        if data is None:
            return None
        cols = [data.genes.index(g) for g in genes if g in data.genes]
        if not cols:
            return None
        return CellData(
            condition=data.condition,
            X=data.X[:, cols],
            genes=[data.genes[i] for i in cols],
            treated=data.treated,
            covariates=data.covariates,
        )


class OtherContexts:
    """The observational estimate ω for a condition: the same perturbation and dose in up to `max_contexts` other
    cell lines of the dataset, their treated − control difference of the signed gene score (obs-exp verifier)."""

    def __init__(
        self, store: Store, dataset_id: str, condition: Condition, genes: Sequence[str], max_contexts: int = 2
    ) -> None:
        rows = store.condition_summaries(dataset_id=dataset_id, perturbation=condition.perturbation)
        others = [
            r.condition for r in rows if r.condition.context != condition.context and r.condition.dose == condition.dose
        ]
        self.caches = [CellCache(store, dataset_id, o, genes) for o in others[:max_contexts]]

    def __call__(self, genes: Sequence[str], direction: str) -> tuple[float, list[str]] | None:
        from mechcell.verifiers.obsexp import effect_on

        effects, names = [], []
        for cache in self.caches:
            cells = cache(genes)
            if cells is not None and cells.n_treated >= 10 and cells.n_control >= 10:
                effects.append(effect_on(cells, direction))
                names.append(cache.condition.context or cache.condition.key)
        return (float(sum(effects) / len(effects)), names) if effects else None


def verify(
    graph: ActionGraph | str,
    condition: Condition | str | None = None,
    *,
    kb: KnowledgeBase | Path | str | None = None,
    store: Store | Path | str | None = None,
    settings: PanelSettings | None = None,
    method: str | None = None,
    use_cells: bool = True,
    **overrides: Any,
) -> VerificationReport:
    """Verify a graph (an `ActionGraph` or four-tag text) for a condition (a `Condition` or its key).

    kb: a KnowledgeBase, a path (built store or source directory), or None for the starter KB.
    store: the project store holding the condition's signature (and its dataset, for cell-level tests).
    """
    from mechcell.datasets.schemas import Condition
    from mechcell.datasets.store import Store
    from mechcell.knowledge import KnowledgeBase, load_kb

    settings = (
        (settings or PanelSettings()).model_copy(update=overrides) if overrides else (settings or PanelSettings())
    )
    kb_obj = kb if isinstance(kb, KnowledgeBase) else load_kb(kb)
    parsed_issues: list = []
    if isinstance(graph, str):
        parsed = parse_text(graph)
        if parsed.graph is None:
            return VerificationReport(
                structural=[p for p in parsed.issues if p.severity == "error"],
                feedback=[problem_feedback(p) for p in parsed.issues],
                kb_version=kb_obj.version,
            )
        graph, parsed_issues = parsed.graph, parsed.issues
    st: Store | None = None
    own = False
    if store is not None:
        st = store if isinstance(store, Store) else Store(store, read_only=True)
        own = not isinstance(store, Store)
    try:
        cond: Condition | None = None
        signature = None
        cells = None
        reference = None
        doses = None
        if condition is not None:
            key = condition if isinstance(condition, str) else condition.key
            if st is not None:
                found = st.find_condition(key)
                cond = found.condition
                try:
                    signature = st.signature(key, method)
                except NotFoundError:
                    signature = None
                if signature is not None and (settings.dose_pooling or settings.require_drug_effect):
                    doses = dose_series(st, cond, dataset_id=found.dataset_id, method=signature.method)
                if use_cells:
                    genes = [g for c in graph.claims() for g in c.genes]
                    cells = CellCache(st, found.dataset_id, cond, genes)
                    reference = OtherContexts(st, found.dataset_id, cond, genes)
            else:
                cond = condition if isinstance(condition, Condition) else Condition.from_key(key)
        return run_panel(
            graph,
            condition=cond,
            kb=kb_obj,
            signature=signature,
            cells=cells,
            settings=settings,
            structural_extra=parsed_issues,
            reference=reference,
            doses=doses,
        )
    finally:
        if own and st is not None:
            st.close()


__all__ = ["CellCache", "DoseSeries", "dose_series", "verify", "verify_text"]
