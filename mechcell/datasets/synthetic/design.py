"""The plate layout of a synthetic world, Tahoe-style.

Dose is confounded with plate as in Tahoe-100M: plate p carries dose `doses[(p-1) % len(doses)]` only, so a
plate effect and a dose effect cannot be told apart except through the DMSO_TF control wells every plate holds.
A well (sample) holds one drug at one dose and a pool of every cell line (Tahoe multiplexes ~50 lines per well),
so a condition drug × dose × line on its plate spans `wells_per_condition` wells and its cells inherit the well's
effect: well-level permutation tests have wells to permute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechcell.datasets.synthetic.mechanisms import CellLine, DrugPlan, TargetInfo
from mechcell.datasets.synthetic.models import CONTROL_LABEL, SyntheticWorldConfig

SAMPLE_OFFSET = 1495  # Tahoe's first sample id is smp_1495


def drugconc(drug: str, dose: float, unit: str) -> str:
    """Tahoe's `drugname_drugconc` string: `[('Trametinib', 0.05, 'uM')]`."""
    return f"[({drug!r}, {dose!r}, {unit!r})]"


def moa(targets: dict[str, TargetInfo]) -> str:
    acts = sorted({(t.action or t.predicate) for t in targets.values()})
    return "; ".join(acts) if acts else "unclear"


@dataclass
class Well:
    """One sample: a well of one plate with one drug (or the DMSO_TF control) at one dose."""

    index: int
    sample: str
    plate: str
    plate_index: int
    drug: str
    dose: float | None
    drugconc: str
    moa: str
    cells: list[int]  # cells per cell line (aligned with the world's lines)

    @property
    def is_control(self) -> bool:
        return self.drug == CONTROL_LABEL

    @property
    def n_cells(self) -> int:
        return int(sum(self.cells))


@dataclass
class Design:
    plates: list[str]
    plate_dose: list[float]
    plate_drugs: list[list[str]]
    wells: list[Well]

    @property
    def n_cells(self) -> int:
        return sum(w.n_cells for w in self.wells)


def build_design(cfg: SyntheticWorldConfig, plans: list[DrugPlan], lines: list[CellLine]) -> Design:
    """Plates (each dose on its own plates), control wells on every plate, drug wells, cells per well × line."""
    rng = np.random.default_rng([cfg.seed, 4])
    n_plates = cfg.plates
    plates = [f"plate{p + 1}" for p in range(n_plates)]
    plate_dose = [cfg.doses[p % len(cfg.doses)] for p in range(n_plates)]
    by_dose = {d: [p for p in range(n_plates) if plate_dose[p] == d] for d in cfg.doses}
    plate_drugs: list[list[str]] = [[] for _ in plates]
    for j, plan in enumerate(plans):
        for d in cfg.doses:
            ps = by_dose[d]
            plate_drugs[ps[j % len(ps)]].append(plan.drug)
    per_well = cfg.cells_per_condition / cfg.wells_per_condition
    ctrl_conc = drugconc(CONTROL_LABEL, 0.0, cfg.dose_unit)
    moas = {p.drug: moa(p.targets) for p in plans}
    wells: list[Well] = []

    def add(p: int, drug: str, dose: float | None, conc: str, m: str) -> None:
        i = len(wells)
        cells = [max(1, round(per_well * float(rng.uniform(0.8, 1.2)))) for _ in lines]
        wells.append(
            Well(
                index=i,
                sample=f"smp_{SAMPLE_OFFSET + i}",
                plate=plates[p],
                plate_index=p,
                drug=drug,
                dose=dose,
                drugconc=conc,
                moa=m,
                cells=cells,
            )
        )

    for p in range(n_plates):
        for _ in range(cfg.control_wells_per_plate):
            add(p, CONTROL_LABEL, None, ctrl_conc, "Vehicle")
        for drug in plate_drugs[p]:
            for _ in range(cfg.wells_per_condition):
                add(p, drug, plate_dose[p], drugconc(drug, plate_dose[p], cfg.dose_unit), moas[drug])
    return Design(plates=plates, plate_dose=plate_dose, plate_drugs=plate_drugs, wells=wells)
