"""Readers: `open_dataset(path, schema)` picks the layout (h5ad file, Tahoe shards, precomputed DE table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from mechcell.datasets.perturbation import PerturbationSchema
from mechcell.datasets.readers.base import Dataset, PseudobulkGroup
from mechcell.errors import InputError

__all__ = ["Dataset", "Layout", "PseudobulkGroup", "detect_layout", "open_dataset"]

Layout = Literal["h5ad", "tahoe", "de"]
LAYOUTS: tuple[str, ...] = ("h5ad", "tahoe", "de")


def detect_layout(path: str | Path) -> Layout:
    """The layout of a path: `.h5ad` file → h5ad; parquet with genes/expressions lists (or a directory /
    glob / hf:// of them) → tahoe; a parquet/CSV with log2FoldChange/padj → de."""
    from mechcell.datasets.readers.precomputed import is_de_table
    from mechcell.datasets.readers.tahoe import METADATA_NAMES, is_tahoe_shard

    p = str(path)
    if p.lower().endswith(".h5ad"):
        return "h5ad"
    if "://" in p or any(ch in p for ch in "*?["):
        return "tahoe"
    q = Path(p)
    if not q.exists():
        raise InputError(f"dataset path {q} does not exist")
    if q.is_dir():
        files = sorted(q.rglob("*.parquet"))
        if any(f.stem not in METADATA_NAMES and is_tahoe_shard(f) for f in files):
            return "tahoe"
        h5 = sorted(q.glob("*.h5ad"))
        if len(h5) == 1:
            raise InputError(f"{q} is a directory holding {h5[0].name}: pass the .h5ad file itself")
        des = [f for f in sorted(q.iterdir()) if f.is_file() and is_de_table(str(f))]
        if des:
            raise InputError(f"{q} holds DE tables ({des[0].name}, ...): pass one file or a glob")
        raise InputError(
            f"cannot tell the layout of directory {q}: no Tahoe shards (parquet with 'genes' and "
            "'expressions') and no .h5ad; pass --layout"
        )
    if is_tahoe_shard(q):
        return "tahoe"
    if is_de_table(p):
        return "de"
    raise InputError(
        f"cannot tell the layout of {q}: not .h5ad, not a Tahoe shard, not a DE table with "
        "gene_name/log2FoldChange/pvalue/padj; pass --layout"
    )


def open_dataset(
    path: str | Path | Any, schema: PerturbationSchema | None = None, *, layout: str | None = None, **options: Any
) -> Dataset:
    """Open a dataset, dispatching on its layout (given, or detected from the path).

    `schema` None uses the Tahoe preset (and for DE tables Tahoe's DE columns). `options` go to the reader:
    h5ad — counts_layer, backed, chunk_size; tahoe — memory_limit, threads, temp_dir, gene_metadata,
    sample_metadata, obs_metadata, cell_line_metadata, expression (explicit shard list); all —
    require_controls. `Dataset.options` holds what reopens the same dataset. An in-memory AnnData object
    is accepted as `path`.
    """
    import anndata as ad

    if isinstance(path, ad.AnnData):
        from mechcell.datasets.readers.h5ad import AnnDataDataset

        return AnnDataDataset(path, schema or PerturbationSchema.tahoe(), **options)
    lay = layout or detect_layout(path)
    if lay not in LAYOUTS:
        raise InputError(f"unknown layout {lay!r} (have: {', '.join(LAYOUTS)})")
    if lay == "h5ad":
        from mechcell.datasets.readers.h5ad import AnnDataDataset

        return AnnDataDataset(path, schema or PerturbationSchema.tahoe(), **options)
    if lay == "tahoe":
        from mechcell.datasets.readers.tahoe import TahoeDataset, TahoeSource

        meta = {
            k: options.pop(k)
            for k in ("gene_metadata", "sample_metadata", "obs_metadata", "cell_line_metadata")
            if k in options
        }
        expression = options.pop("expression", None)
        src = TahoeSource(expression=list(expression), **meta) if expression else TahoeSource.discover(path, **meta)
        return TahoeDataset(src, schema, **options)
    from mechcell.datasets.readers.precomputed import PrecomputedDEDataset

    return PrecomputedDEDataset(path, schema, **options)
