"""The expression model of a synthetic world: gene universe, baseline, nuisance structure and NB counts.

Per cell c of cell line l in well w on plate p, with treatment effect e (log2, from the planted mechanism):

    log p_g   = base_g + line[l,g] + plate[p,g] + well[w,g] + ln2 · e_g            (then normalised over genes)
    μ_cg      = L_c · p_g · 2^(programme[phase_c, g] · amp_c) / (row normaliser)   (S / G2M cell-cycle programmes)
    x_cg      ~ Poisson(μ_cg · γ_cg),  γ_cg ~ Gamma(1/φ_g, φ_g)                      (negative binomial, var μ + φμ²)

with library size L_c log-normal around `mean_library_size` × plate depth × well depth. Each block of at most
`CHUNK` cells draws from its own seeded stream (seed, well, line, chunk), so the counts do not depend on how the
writers buffer them and never more than one chunk of cells × genes is in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mechcell.datasets.cells import G2M_GENES, S_GENES
from mechcell.datasets.synthetic.mechanisms import CellLine, DrugPlan
from mechcell.datasets.synthetic.models import SyntheticWorldConfig
from mechcell.errors import InputError

#: cells drawn at once (memory: a few CHUNK × n_genes float64 arrays)
CHUNK = 512
#: Tirosh names replaced by current HGNC symbols (the current ones are kept)
_RENAMED = {"MLF1IP", "FAM64A", "HN1"}
#: log2 boost of the S / G2M programme genes in cells of each phase (rows G1, S, G2M; columns S genes, G2M genes)
_PROGRAMME = np.array([[0.0, 0.0], [1.0, 0.3], [0.2, 1.5]])
_LN2 = math.log(2.0)
SYNTHETIC_PREFIX = "SYNG"


@dataclass
class GeneUniverse:
    """The measured genes: symbols (column order), Tahoe token ids and Ensembl ids (None when unknown)."""

    genes: list[str]
    tokens: np.ndarray
    ensembl: list[str | None]
    s_genes: list[str]
    g2m_genes: list[str]

    def __post_init__(self) -> None:
        self.index = {g: i for i, g in enumerate(self.genes)}

    def idx(self, genes: list[str]) -> np.ndarray:
        return np.array([self.index[g] for g in genes], dtype=np.int64)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"gene_symbol": self.genes, "ensembl_id": self.ensembl, "token_id": self.tokens.astype(np.int64)}
        )


def build_universe(
    cfg: SyntheticWorldConfig, plans: list[DrugPlan], vocabulary: list[str], tahoe_genes: pd.DataFrame | None
) -> GeneUniverse:
    """Every gene a mechanism touches (planted genes, path nodes, targets incl. decoys), the cell-cycle genes,
    then background genes from the KB vocabulary (Tahoe's gene list when given), synthetic names if short."""
    rng = np.random.default_rng([cfg.seed, 5])
    required: set[str] = set()
    for p in plans:
        required |= set(p.genes) | set(p.targets) | set(p.tfs)
        required |= p.path_genes()
    cap = max(cfg.n_genes // 10, 10)
    s = [g for g in S_GENES if g not in _RENAMED][:cap]
    g2m = [g for g in G2M_GENES if g not in _RENAMED][:cap]
    required |= set(s) | set(g2m)
    if len(required) > cfg.n_genes:
        raise InputError(
            f"n_genes={cfg.n_genes} is smaller than the {len(required)} genes the mechanisms and the "
            "cell-cycle programme touch; raise n_genes (--genes) or lower regulon_genes_per_tf"
        )
    pool = sorted(set(vocabulary) - required)
    k = min(cfg.n_genes - len(required), len(pool))
    background = rng.choice(pool, size=k, replace=False).tolist() if k else []
    n_syn = cfg.n_genes - len(required) - k
    taken = required | set(background)
    syn, i = [], 0
    while len(syn) < n_syn:
        i += 1
        name = f"{SYNTHETIC_PREFIX}{i:05d}"
        if name not in taken:
            syn.append(name)
    genes = sorted(required | set(background)) + syn
    ens: dict[str, str | None] = {}
    tok: dict[str, int] = {}
    if tahoe_genes is not None:
        known = tahoe_genes.drop_duplicates("gene_symbol").set_index("gene_symbol")
        for g in genes:
            if g in known.index:
                tok[g] = int(known.at[g, "token_id"])
                e = known.at[g, "ensembl_id"]
                ens[g] = None if e is None or (isinstance(e, float) and math.isnan(e)) else str(e)
    nxt = max([*tok.values(), 2]) + 1
    for g in genes:
        if g not in tok:
            tok[g] = nxt
            nxt += 1
    genes.sort(key=lambda g: tok[g])
    return GeneUniverse(
        genes=genes,
        tokens=np.array([tok[g] for g in genes], dtype=np.int64),
        ensembl=[ens.get(g) for g in genes],
        s_genes=s,
        g2m_genes=g2m,
    )


@dataclass
class Block:
    """Counts of up to CHUNK cells of one (well, cell line), as CSR pieces (float32 counts, int32 gene columns)."""

    sample: int
    line: int
    nnz: np.ndarray  # per-row number of non-zeros
    cols: np.ndarray
    data: np.ndarray
    library: np.ndarray
    barcodes: list[str]

    @property
    def n(self) -> int:
        return len(self.nnz)


class ExpressionModel:
    """Baseline expression, per-line / per-plate / per-well nuisance and the NB sampler of one world."""

    def __init__(
        self,
        cfg: SyntheticWorldConfig,
        universe: GeneUniverse,
        lines: list[CellLine],
        n_plates: int,
        plans: list[DrugPlan],
    ) -> None:
        self.cfg = cfg
        self.u = universe
        G = len(universe.genes)
        rng = np.random.default_rng([cfg.seed, 6])
        # Baseline log-expression: genes the world moves and the cell-cycle genes take values from the top 1–30 %
        # (TF targets and cycling genes are mostly well expressed); the other genes take the rest at random.
        vals = np.sort(rng.normal(0.0, cfg.base_expression_sd, G))[::-1]
        important = set(universe.s_genes) | set(universe.g2m_genes)
        for p in plans:
            important |= set(p.genes)
        imp = universe.idx(sorted(important))
        avail = np.arange(int(0.01 * G), max(int(0.3 * G), int(0.01 * G) + len(imp)))
        avail = avail[avail < G] if (avail < G).sum() >= len(imp) else np.arange(G)
        slots = rng.choice(avail, size=len(imp), replace=False)
        base = np.empty(G)
        base[imp] = vals[slots]
        rest_slots = np.setdiff1d(np.arange(G), slots)
        rest = np.setdiff1d(np.arange(G), imp)
        base[rest] = vals[rng.permutation(rest_slots)]
        self.base = base
        self.line_off = rng.normal(0.0, cfg.line_effect_sd, (len(lines), G))
        self.plate_off = rng.normal(0.0, cfg.plate_effect_sd, (n_plates, G))
        self.plate_depth = np.exp(rng.normal(0.0, cfg.plate_depth_sd, n_plates))
        self.phi = cfg.dispersion * np.exp(rng.normal(0.0, 0.4, G))
        self.shape = (1.0 / self.phi).astype(np.float32)
        self.cc_cols = np.concatenate([universe.idx(universe.s_genes), universe.idx(universe.g2m_genes)])
        self.cc_prog = np.concatenate(
            [
                np.repeat(_PROGRAMME[:, :1], len(universe.s_genes), axis=1),
                np.repeat(_PROGRAMME[:, 1:], len(universe.g2m_genes), axis=1),
            ],
            axis=1,
        )
        self.line_phase = np.array([c.phase_probs for c in lines])

    def well_state(self, well: int) -> tuple[np.ndarray, float, np.ndarray]:
        """(gene offsets, depth factor, phase jitter) of one well, from the well's own stream."""
        rng = np.random.default_rng([self.cfg.seed, 2, well])
        off = rng.normal(0.0, self.cfg.well_effect_sd, len(self.u.genes))
        depth = float(np.exp(rng.normal(0.0, self.cfg.well_depth_sd)))
        jitter = np.exp(rng.normal(0.0, 0.1, 3))
        return off, depth, jitter

    def phase_probs(self, line: int, g1_shift: float, jitter: np.ndarray) -> np.ndarray:
        g1, s, g2m = self.line_phase[line]
        g1_shift = min(g1_shift, 0.9 * (s + g2m))
        if g1_shift > 0:  # arrest moves cycling cells into G1, S and G2M shrinking in proportion
            keep = 1.0 - g1_shift / (s + g2m)
            g1, s, g2m = g1 + g1_shift, s * keep, g2m * keep
        p = np.array([g1, s, g2m]) * jitter
        return p / p.sum()

    def sample(
        self,
        *,
        well: int,
        sample: int,
        line: int,
        plate: int,
        n: int,
        effect: tuple[np.ndarray, np.ndarray],
        g1_shift: float,
        well_state: tuple[np.ndarray, float, np.ndarray],
        barcode_prefix: str,
        start: int,
        chunk: int,
    ) -> Block:
        """Counts of `n` (≤ CHUNK) cells of one well × line; `effect` = (gene columns, log2 fold changes)."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 3, well, line, chunk])
        off, wdepth, jitter = well_state
        logp = self.base + self.line_off[line] + self.plate_off[plate] + off
        cols, lfc = effect
        if cols.size:
            logp = logp.copy()
            logp[cols] += _LN2 * lfc
        p = np.exp(logp - logp.max())
        p /= p.sum()
        sd = cfg.library_size_sd
        lib = cfg.library_size * self.plate_depth[plate] * wdepth * np.exp(rng.normal(-sd * sd / 2, sd, n))
        phase = rng.choice(3, size=n, p=self.phase_probs(line, g1_shift, jitter))
        amp = rng.uniform(0.6, 1.4, n)
        boost = np.exp2(self.cc_prog[phase] * amp[:, None])  # n × cell-cycle genes
        denom = 1.0 + ((boost - 1.0) * p[self.cc_cols]).sum(axis=1)
        mu = np.outer(lib / denom, p)
        mu[:, self.cc_cols] *= boost
        G = mu.shape[1]
        # γ ~ Gamma(1/φ, φ) per entry (float32 draws: noise, not arithmetic), x ~ Poisson(μγ): NB(μ, φ)
        lam = mu * rng.standard_gamma(np.broadcast_to(self.shape, (n, G)), dtype=np.float32) * self.phi
        x = rng.poisson(lam)
        flat = np.flatnonzero(x)
        rows = flat // G
        nnz = np.bincount(rows, minlength=n).astype(np.int32)
        data = x.ravel()[flat].astype(np.float32)
        library = x.sum(axis=1).astype(np.int64)
        barcodes = [f"{barcode_prefix}{start + i:05d}" for i in range(n)]
        return Block(
            sample=sample,
            line=line,
            nnz=nnz,
            cols=(flat - rows * G).astype(np.int32),
            data=data,
            library=library,
            barcodes=barcodes,
        )
