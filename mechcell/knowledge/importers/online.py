"""Optional: fetch the same resources through the ecosystem's own clients (decoupler, omnipath) when online.

Why optional: mechcell must build and run offline (CI, air-gapped clusters). This route is taken only when the
user asks for it (`mechcell kb build --online`); it writes the fetched tables in the `../shared/kb` layout so the
ordinary importers read them, and never runs implicitly. The clients are not dependencies of mechcell: install
them yourself (`pip install decoupler omnipath`).
"""

from __future__ import annotations

import os
from pathlib import Path

from mechcell.errors import InputError
from mechcell.knowledge.importers import SOURCES


def fetch_online(dest: Path, base: Path | None = None) -> list[str]:
    """Fetch CollecTRI, PROGENy (decoupler) and the OmniPath signed interactions (omnipath) into `dest`; link
    every other registered file from `base` when given. Returns the relative paths written."""
    try:
        import decoupler as dc  # type: ignore[import-not-found]
        import omnipath as op  # type: ignore[import-not-found]
    except ImportError as exc:
        raise InputError(
            f"--online needs the decoupler and omnipath clients ({exc.name} is not installed): "
            "pip install decoupler omnipath"
        ) from exc
    dest.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    try:
        collectri = dc.op.collectri(organism="human")
        progeny = dc.op.progeny(organism="human", top=500)
        inter = op.interactions.OmniPath.get(genesymbols=True)
    except Exception as exc:  # network, server or API-version errors
        raise InputError(f"fetching through decoupler / omnipath failed: {type(exc).__name__}: {exc}") from exc
    (dest / "regulons").mkdir(exist_ok=True)
    c = collectri.rename(columns={"PMID": "PMID"})[
        ["source", "target", "weight"] + (["PMID"] if "PMID" in collectri.columns else [])
    ]
    c.to_csv(dest / "regulons/collectri.csv", index=False)
    written.append("regulons/collectri.csv")
    (dest / "footprints").mkdir(exist_ok=True)
    p = progeny.rename(columns={"source": "pathway", "target": "gene"})
    p = p.assign(**{"p.value": p["padj"] if "padj" in p.columns else None})[["gene", "pathway", "weight", "p.value"]]
    p.to_csv(dest / "footprints/progeny_human_top500.tsv", sep="\t", index=False)
    written.append("footprints/progeny_human_top500.tsv")
    (dest / "networks").mkdir(exist_ok=True)
    signed = inter[(inter["consensus_stimulation"] != inter["consensus_inhibition"]) & inter["consensus_direction"]]
    pkn = signed.assign(interaction=signed["consensus_stimulation"].map({True: 1, False: -1}))[
        ["source_genesymbol", "interaction", "target_genesymbol"]
    ].set_axis(["source", "interaction", "target"], axis=1)
    pkn.to_csv(dest / "networks/omnipath_signed_pkn.tsv", sep="\t", index=False)
    written.append("networks/omnipath_signed_pkn.tsv")
    if base is not None:
        for spec in SOURCES:
            for rel in spec.paths:
                src, dst = base / rel, dest / rel
                if src.is_file() and not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(src.resolve(), dst)
    return written
