"""The synthetic world's contracts: its configuration, its ground truth and the summary of one generation run.

Why pydantic: the truth crosses every later wall — verifiers, proposers and eval figures are all scored against
`truth.json` — so it must validate and round-trip through JSON exactly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mechcell.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from mechcell.graphs import ActionGraph

SCHEMA_VERSION = 1
GENERATOR_VERSION = "1"
CONTROL_LABEL = "DMSO_TF"
Layout = Literal["h5ad", "tahoe", "both"]


class SyntheticWorldConfig(BaseModel):
    """Everything that defines a world; the same config (and KB) gives byte-identical files.

    Defaults give a demo world: 12 drugs × 3 cell lines × 3 doses (each dose on its own plate, Tahoe-style),
    120 cells per condition in 3 wells, 2,000 genes — about 14,400 cells, written in a few seconds.
    Effect sizes are log2 fold changes at full drug activity; nuisance magnitudes are SDs on the natural-log scale.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    kb: str | None = Field(None, description="KB store (.duckdb) or source directory; None = the starter KB")
    # ---- design
    n_drugs: int = Field(12, ge=1)
    drugs: list[str] | None = Field(None, description="explicit drug panel (KB names); overrides n_drugs")
    n_cell_lines: int = Field(3, ge=1)
    cell_lines: list[str] | None = Field(None, description="explicit cell lines (names or Cellosaurus ids)")
    doses: list[float] = Field(default_factory=lambda: [0.05, 0.5, 5.0], min_length=1)
    dose_unit: str = "uM"
    n_plates: int | None = Field(None, ge=1, description="plates; dose of plate p is doses[(p-1) % len(doses)]")
    cells_per_condition: int = Field(120, ge=1, description="cells per drug × dose × cell line (over its wells)")
    wells_per_condition: int = Field(3, ge=1, description="wells (samples) per drug × dose; all lines pooled")
    control_wells_per_plate: int = Field(4, ge=1)
    n_genes: int = Field(2000, ge=50)
    cells_per_shard: int = Field(50_000, ge=1000)
    # ---- mechanisms
    frac_inactive: float = Field(0.17, ge=0.0, le=1.0)
    frac_decoy: float = Field(0.25, ge=0.0, le=1.0)
    max_path_len: int = Field(3, ge=0, le=4, description="signalling steps from a target to a TF")
    max_tfs_per_drug: int = Field(2, ge=1)
    max_targets_per_drug: int = Field(2, ge=1)
    min_regulon_size: int = Field(8, ge=1)
    regulon_genes_per_tf: int = Field(20, ge=1)
    footprint_genes: int = Field(12, ge=0)
    effect_log2: tuple[float, float] = (0.8, 1.6)
    ec50: tuple[float, float] = Field((0.05, 1.0), description="log-uniform range, in dose_unit")
    hill: tuple[float, float] = (1.0, 2.5)
    gof_sensitivity: float = Field(2.5, gt=0, description="potency gain from a GoF driver upstream/on the path")
    lof_sensitivity: float = Field(0.3, gt=0, description="potency and efficacy factor from a LoF of target/TF")
    min_active_effect: float = Field(0.1, ge=0.0, description="effect scale below which a condition counts inactive")
    arrest_fraction: float = Field(0.35, ge=0.0, le=1.0, description="share of active drugs that arrest in G1")
    # ---- nuisance
    mean_library_size: float | None = Field(
        None, gt=0, description="None: n_genes (≈1 count per gene per cell, which keeps ~70 % zeros whatever n_genes)"
    )
    library_size_sd: float = Field(0.45, ge=0)
    dispersion: float = Field(0.25, gt=0, description="median NB dispersion φ (var = μ + φμ²)")
    base_expression_sd: float = Field(1.8, gt=0)
    line_effect_sd: float = Field(0.4, ge=0)
    plate_effect_sd: float = Field(0.2, ge=0)
    plate_depth_sd: float = Field(0.15, ge=0)
    well_effect_sd: float = Field(0.05, ge=0)
    well_depth_sd: float = Field(0.1, ge=0)

    @field_validator("doses")
    @classmethod
    def _doses(cls, v: list[float]) -> list[float]:
        if any(not math.isfinite(d) or d <= 0 for d in v):
            raise ValueError(f"doses must be finite and > 0, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"doses must be distinct, got {v}")
        return [float(d) for d in v]

    @field_validator("effect_log2", "ec50", "hill")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 < v[0] <= v[1]):
            raise ValueError(f"a range must satisfy 0 < low ≤ high, got {v}")
        return v

    @model_validator(mode="after")
    def _plates(self) -> SyntheticWorldConfig:
        if self.n_plates is not None and self.n_plates < len(self.doses):
            raise ValueError(f"n_plates={self.n_plates} < {len(self.doses)} doses: each dose needs its own plate")
        return self

    @property
    def plates(self) -> int:
        return self.n_plates or len(self.doses)

    @property
    def library_size(self) -> float:
        return self.mean_library_size or float(self.n_genes)


class PlantedGene(BaseModel):
    """A gene the world moves in one condition: log2 fold change (vs plate-matched controls) and what moves it."""

    model_config = ConfigDict(frozen=True)

    gene: str
    log2fc: float
    via: str = Field(description="the TF (regulon) or pathway (footprint) that carries the effect")


class DecoyEdge(BaseModel):
    """A KB drug → target annotation the world deliberately does not act on: claims resting on it are false."""

    model_config = ConfigDict(frozen=True)

    drug: str
    target: str
    predicate: str
    sign: int
    sources: list[str]
    model_generated: bool = Field(description="every KB record of this edge came from a model-generated source")
    kind: Literal["other_target", "inactive_drug"]
    why: str
    predicted_tfs: list[str] = Field(
        default_factory=list, description="TFs nearest the target in the KB (what trusting it predicts)"
    )


class DrugTruth(BaseModel):
    """One drug's planted mechanism (the same in every condition of the drug; effect sizes scale)."""

    drug: str
    active: bool
    kb_targets: list[str] = Field(description="every signed KB target annotation of the drug")
    engaged_targets: list[str] = Field(description="targets the world acts on (start of the planted paths)")
    decoy_targets: list[str]
    paths: list[str] = Field(description="planted signed paths, rendered: Trametinib ⊣ MAP2K1 → MAPK1 → ELK1")
    tfs: dict[str, Literal["up", "down"]] = Field(default_factory=dict, description="TF → activity change")
    pathways: dict[str, Literal["up", "down"]] = Field(default_factory=dict)
    ec50: float
    hill: float
    emax_log2: float
    arrest: float = Field(description="maximal extra share of cells pushed into G1 (0: no cell-cycle effect)")
    base_log2fc: dict[str, float] = Field(default_factory=dict, description="gene → log2fc at full effect")


class CellLineTruth(BaseModel):
    name: str
    context: str = Field(description="the id used in the data and condition keys (Cellosaurus when known)")
    drivers: list[str] = Field(default_factory=list, description="gene variant (effect)")
    phase_probs: dict[str, float] = Field(default_factory=dict, description="G1 / S / G2M baseline")


class ConditionTruth(BaseModel):
    """Ground truth of one condition (key = `Condition.key`, as the readers produce it)."""

    key: str
    drug: str
    dose: float
    dose_unit: str
    context: str
    cell_line: str
    plate: str
    samples: list[str]
    n_cells: int
    active: bool
    activity: float = Field(description="Hill fraction at this dose with the line's potency shift")
    sensitivity: float = Field(description="cell-line potency multiplier (driver mutations)")
    sensitivity_reasons: list[str] = Field(default_factory=list)
    effect_scale: float = Field(description="multiplies the drug's base log2 fold changes")
    targets: list[str] = Field(default_factory=list)
    tfs: list[str] = Field(default_factory=list)
    pathways: list[str] = Field(default_factory=list)
    up: list[PlantedGene] = Field(default_factory=list)
    down: list[PlantedGene] = Field(default_factory=list)
    g1_shift: float = Field(0.0, description="extra share of cells in G1 from drug-induced arrest")
    graph: str | None = Field(None, description="planted ActionGraph in the four-tag text (None when inactive)")


class PlateTruth(BaseModel):
    plate: str
    dose: float
    drugs: list[str]


class SampleTruth(BaseModel):
    sample: str
    plate: str
    drug: str
    dose: float | None
    n_cells: int


class Truth(BaseModel):
    """Everything planted in a world. `conditions` maps `Condition.key` → its truth."""

    schema_version: int = SCHEMA_VERSION
    generator_version: str = GENERATOR_VERSION
    seed: int
    kb_version: str
    config: SyntheticWorldConfig
    control_label: str = CONTROL_LABEL
    n_cells: int
    genes: list[str]
    cell_lines: list[CellLineTruth]
    plates: list[PlateTruth]
    samples: list[SampleTruth]
    drugs: list[DrugTruth]
    conditions: dict[str, ConditionTruth]
    decoys: list[DecoyEdge]

    def condition(self, key: str) -> ConditionTruth:
        try:
            return self.conditions[key]
        except KeyError:
            raise NotFoundError(f"condition {key!r} is not in this world ({len(self.conditions)} conditions)") from None

    def drug(self, name: str) -> DrugTruth:
        for d in self.drugs:
            if d.drug == name:
                return d
        raise NotFoundError(f"drug {name!r} is not in this world (have: {', '.join(d.drug for d in self.drugs)})")

    def active_keys(self) -> list[str]:
        return [k for k, c in self.conditions.items() if c.active]

    def graph(self, key: str) -> ActionGraph | None:
        """The planted ActionGraph of a condition (None when the condition is inactive)."""
        from mechcell.graphs import parse_text

        text = self.condition(key).graph
        return None if text is None else parse_text(text).graph


class WorldSummary(BaseModel):
    """What `generate_world` wrote and how fast (printed by `mechcell data synth`)."""

    out_dir: str
    layout: Layout
    files: dict[str, str]
    seed: int
    kb_version: str
    n_cells: int
    n_genes: int
    n_drugs: int
    n_cell_lines: int
    n_plates: int
    n_samples: int
    n_conditions: int
    n_active_conditions: int
    n_decoys: int
    zero_fraction: float = Field(description="share of zero entries in the count matrix")
    mean_library_size: float
    seconds: float
    cells_per_second: float


TRUTH_FILE = "truth.json"


def load_truth(path: str | Path) -> Truth:
    """Read a world's `truth.json` (pass the file or the world directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / TRUTH_FILE
    if not p.is_file():
        raise NotFoundError(f"no ground truth at {p} (generate a world with `mechcell data synth --out DIR`)")
    try:
        return Truth.model_validate_json(p.read_text())
    except ValueError as exc:
        raise InputError(f"{p} is not a mechcell synthetic-world truth file: {exc}") from None
