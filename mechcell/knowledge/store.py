"""`KnowledgeBase`: the DuckDB-backed store with resolution, queries, signed paths and in-memory views.

Why DuckDB plus in-memory views: the relations (≈10⁶ rows with the real sources) stay queryable by SQL and by
`relations(...)`, while the hot structures — the signed network, regulons, footprints, alias index — are loaded
once on first use so retrieval over a whole drug panel stays in milliseconds per condition.
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import networkx as nx
import numpy as np
import pandas as pd

from mechcell.config import Settings
from mechcell.errors import InputError, NotFoundError
from mechcell.knowledge.graph import SignedAdjacency, path_sign, simple_paths
from mechcell.knowledge.models import (
    DRUG_TARGET_PREDICATES,
    SIGNALLING_PREDICATES,
    Coverage,
    Driver,
    Relation,
    Resolution,
    SignedPath,
    SourceInfo,
)
from mechcell.knowledge.resolve import (
    AliasIndex,
    normalize_key,
    resolve_drug,
    resolve_gene,
    resolve_named,
)
from mechcell.knowledge.starter import STARTER_SOURCE

_REL_COLS = (
    "subject, subject_type, predicate, object, object_type, sign, weight, action, source, version, "
    "record_id, evidence, model_generated, attrs"
)
_REL_NAMES = [c.strip() for c in _REL_COLS.split(",")]
#: Which type an id means when several entities share it (EGFR the gene before EGFR the PROGENy pathway).
_TYPE_ORDER = (
    "drug",
    "gene",
    "family",
    "complex",
    "pathway",
    "gene_set",
    "process",
    "cell_line",
    "metabolite",
    "reaction",
)
#: The store's own tables; anything else in a DuckDB file means it is not a mechcell KB.
_TABLES = {"relations", "entities", "aliases", "roles", "sources", "meta"}


def _to_relation(row: tuple) -> Relation:
    d = dict(zip(_REL_NAMES, row, strict=True))
    ev = d["evidence"]
    d["evidence"] = [] if ev is None else [str(x) for x in ev]
    a = d.get("attrs")
    d["attrs"] = json.loads(a) if isinstance(a, str) and a else {}
    w = d.get("weight")
    d["weight"] = None if w is None or (isinstance(w, float) and math.isnan(w)) else float(w)
    d["sign"] = int(d["sign"] or 0)
    d["model_generated"] = bool(d["model_generated"])
    return Relation.model_construct(**d)


class KnowledgeBase:
    """A built knowledge store. Open with `load_kb`; safe to share between threads (queries are serialised)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, *, path: Path | None = None) -> None:
        have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if not have >= _TABLES:
            where = f" {path}" if path else ""
            raise InputError(
                f"DuckDB file{where} is not a mechcell knowledge base (missing tables: "
                f"{sorted(_TABLES - have)}); build one with `mechcell kb build --from DIR`"
            )
        self._con = con
        self.path = path
        self._lock = threading.RLock()
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ plumbing
    def _q(self, sql: str, params: list | None = None) -> list[tuple]:
        with self._lock:
            return self._con.execute(sql, params or []).fetchall()

    def _df(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self._lock:
            return self._con.execute(sql, params or []).df()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KnowledgeBase(version={self.version!r}, path={str(self.path) if self.path else ':memory:'})"

    @cached_property
    def meta(self) -> dict[str, str]:
        return dict(self._q("SELECT key, value FROM meta"))

    @property
    def version(self) -> str:
        """Content hash of the sources this store was built from (recorded in every trace)."""
        return self.meta["version"]

    @cached_property
    def sources(self) -> dict[str, SourceInfo]:
        df = self._df("SELECT * FROM sources")
        return {
            r["source"]: SourceInfo(
                **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            )
            for r in df.to_dict("records")
        }

    # ------------------------------------------------------------------ resolution
    @cached_property
    def _aliases(self) -> AliasIndex:
        return AliasIndex(self._df("SELECT key, entity_type, entity_id, kind FROM aliases ORDER BY key"))

    @cached_property
    def _entity_types(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for i, t in self._q("SELECT id, type FROM entities"):
            out[i].add(t)
        return dict(out)

    def resolve_gene(self, name: str) -> Resolution:
        """Symbol, Ensembl / Entrez / HGNC / UniProt id, previous symbol, family, alias → current symbol."""
        return resolve_gene(self._aliases, name, self.expand_family)

    def resolve_drug(self, name: str) -> Resolution:
        """Case, whitespace, salt / solvate suffixes and synonyms → the canonical drug id."""
        return resolve_drug(self._aliases, name)

    def resolve_cell_line(self, name: str) -> Resolution:
        """Cell line name, Cellosaurus or DepMap id (punctuation-insensitive) → the cell line's name."""
        return resolve_named(self._aliases, name, ("cell_line",))

    def resolve(self, name: str) -> Resolution:
        """Any entity: an exact id first, then drug, gene (incl. family), pathway, gene set, process, cell line."""
        types = self._entity_types.get(name)
        if types:
            t = min(types, key=lambda x: _TYPE_ORDER.index(x) if x in _TYPE_ORDER else len(_TYPE_ORDER))
            return Resolution(
                query=name,
                status="resolved",
                entity_type=t,
                id=name,
                symbols=[name] if t == "gene" else [],
                matched_by="id",
            )
        tries = [
            self.resolve_drug(name),
            self.resolve_gene(name),
            resolve_named(self._aliases, name, ("pathway", "gene_set", "process", "cell_line", "complex", "family")),
        ]
        for r in tries:
            if r.status == "resolved":
                return r
        for r in tries:
            if r.status == "ambiguous":
                return r
        sugg = list(dict.fromkeys(s for r in tries for s in r.suggestions))[:6]
        return tries[0].model_copy(update={"suggestions": sugg})

    @cached_property
    def _family_members(self) -> dict[str, set[str]]:
        direct: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for s, st, o in self._q(
            "SELECT subject, subject_type, object FROM relations WHERE predicate IN ('is_a', 'part_of')"
        ):
            direct[o].add((s, st))
        out: dict[str, set[str]] = {}

        def expand(f: str, seen: frozenset[str]) -> set[str]:
            if f in out:
                return out[f]
            genes: set[str] = set()
            for s, st in direct.get(f, ()):
                if st == "gene":
                    genes.add(s)
                elif s not in seen:
                    genes |= expand(s, seen | {s})
            out[f] = genes
            return genes

        for f in list(direct):
            expand(f, frozenset({f}))
        return out

    def expand_family(self, name: str) -> list[str]:
        """Member genes of a family or complex (recursively): "MEK" → [MAP2K1, MAP2K2]. [] when unknown."""
        fams = self._family_members
        if name in fams:
            return sorted(fams[name])
        hits = self._aliases.get(normalize_key(name), ["family", "complex"]) or self._aliases.get_compact(
            name, ["family", "complex"]
        )
        members: set[str] = set()
        for _, fid, _ in hits:
            members |= fams.get(fid, set())
        return sorted(members)

    # ------------------------------------------------------------------ plain queries
    def _node_id(self, name: str, role: str) -> str:
        if name in self._entity_types:
            return name
        r = self.resolve_drug(name) if role == "subject" else Resolution(query=name, status="unresolved")
        if r.status != "resolved":
            r = self.resolve_gene(name)
        if r.status != "resolved":
            r = self.resolve(name)
        return r.id if r.status == "resolved" and r.id else name

    def relations(
        self,
        subject: str | None = None,
        predicate: str | list[str] | None = None,
        object: str | None = None,
        *,
        source: str | None = None,
        subject_type: str | None = None,
        object_type: str | None = None,
        resolve: bool = True,
        limit: int | None = None,
    ) -> list[Relation]:
        """Relations matching every given field. Names are resolved to ids first (`resolve=False` to match
        literally): relations(subject="trametinib", predicate="inhibits") finds Trametinib's rows."""
        where, params = [], []
        if subject is not None:
            where.append("subject = ?")
            params.append(self._node_id(subject, "subject") if resolve else subject)
        if object is not None:
            where.append("object = ?")
            params.append(self._node_id(object, "object") if resolve else object)
        if predicate is not None:
            preds = [predicate] if isinstance(predicate, str) else list(predicate)
            where.append(f"predicate IN ({', '.join('?' * len(preds))})")
            params += preds
        for col, val in (("source", source), ("subject_type", subject_type), ("object_type", object_type)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        sql = f"SELECT {_REL_COLS} FROM relations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY subject, predicate, object, source, record_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_to_relation(r) for r in self._q(sql, params)]

    @cached_property
    def _drug_target_rows(self) -> dict[str, list[Relation]]:
        preds = ", ".join(f"'{p}'" for p in DRUG_TARGET_PREDICATES)
        out: dict[str, list[Relation]] = defaultdict(list)
        for row in self._q(
            f"SELECT {_REL_COLS} FROM relations WHERE subject_type = 'drug' AND predicate IN ({preds}) "
            "ORDER BY subject, object, model_generated, source"
        ):
            out[row[0]].append(_to_relation(row))
        return dict(out)

    def drug_targets(self, drug: str) -> list[Relation]:
        """Every drug → target relation of the drug (all sources; Tahoe's are flagged model_generated)."""
        rid = drug if drug in self._drug_target_rows else None
        if rid is None:
            r = self.resolve_drug(drug)
            if r.status != "resolved":
                return []
            rid = r.id
        return list(self._drug_target_rows.get(rid or "", []))

    def drugs(self) -> list[str]:
        return sorted(i for i, ts in self._entity_types.items() if "drug" in ts)

    def genes(self) -> list[str]:
        """The gene vocabulary: every gene entity (HGNC approved symbols when HGNC was built in)."""
        return sorted(i for i, ts in self._entity_types.items() if "gene" in ts)

    @cached_property
    def _roles(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for e, r in self._q("SELECT entity_id, role FROM roles"):
            out[e].add(r)
        return dict(out)

    def roles(self, gene: str) -> list[str]:
        """Roles of a gene: tf, kinase, ligand, receptor."""
        return sorted(self._roles.get(gene, set()))

    def entity(self, name: str) -> dict[str, Any]:
        """An entity's id, type, name, attributes and relation counts per predicate (for `kb show`)."""
        r = self.resolve(name)
        if r.status != "resolved" or not r.id:
            raise NotFoundError(
                f"no entity {name!r} in KB {self.version}"
                + (f" (ambiguous: {', '.join(r.symbols)})" if r.status == "ambiguous" else "")
                + (f"; did you mean {', '.join(r.suggestions)}?" if r.suggestions else "")
            )
        rows = self._q(
            "SELECT id, type, name, source, attrs FROM entities WHERE id = ? AND type = ?", [r.id, r.entity_type]
        )
        info: dict[str, Any] = {"id": r.id, "type": r.entity_type, "resolution": r.model_dump()}
        if rows:
            info.update(name=rows[0][2], source=rows[0][3], attrs=json.loads(rows[0][4]) if rows[0][4] else {})
        out_counts = self._q(
            "SELECT predicate, source, count(*) FROM relations WHERE subject = ? GROUP BY ALL ORDER BY ALL", [r.id]
        )
        in_counts = self._q(
            "SELECT predicate, source, count(*) FROM relations WHERE object = ? GROUP BY ALL ORDER BY ALL", [r.id]
        )
        info["outgoing"] = [{"predicate": p, "source": s, "n": n} for p, s, n in out_counts]
        info["incoming"] = [{"predicate": p, "source": s, "n": n} for p, s, n in in_counts]
        info["roles"] = self.roles(r.id)
        if r.entity_type in ("family", "complex"):
            info["members"] = self.expand_family(r.id)
        return info

    # ------------------------------------------------------------------ regulons, footprints, gene sets
    def _source_rank(self, source: str) -> int:
        """Real sources outrank the starter when both describe the same regulon or footprint."""
        return 1 if source == STARTER_SOURCE else 0

    @cached_property
    def _regulons(self) -> dict[str, dict[str, int]]:
        votes: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for tf, tgt, s in self._q(
            "SELECT subject, object, sign FROM relations WHERE predicate = 'regulates_expression'"
        ):
            votes[tf][tgt].append(int(s))
        out: dict[str, dict[str, int]] = {}
        for tf, d in votes.items():
            reg = {}
            for g, ss in d.items():
                tot = sum(ss)
                if tot != 0:  # sources that disagree evenly leave the edge out
                    reg[g] = 1 if tot > 0 else -1
            if reg:
                out[tf] = reg
        return out

    def regulon_tfs(self) -> list[str]:
        """TFs (or TF complexes such as CollecTRI's NFKB, AP1) with a regulon."""
        return sorted(self._regulons)

    def regulons(self) -> dict[str, dict[str, int]]:
        return self._regulons

    def regulon(self, tf: str) -> dict[str, int]:
        """target gene → sign (+1 induced, −1 repressed) for a TF; {} when the TF has no regulon."""
        if tf in self._regulons:
            return dict(self._regulons[tf])
        r = self.resolve_gene(tf)
        if r.status == "resolved" and r.id in self._regulons:
            return dict(self._regulons[r.id])
        if r.status == "resolved" and r.entity_type in ("family", "complex") and r.id in self._regulons:
            return dict(self._regulons[r.id])
        return {}

    @cached_property
    def _footprints(self) -> dict[str, dict[str, float]]:
        by: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for pw, g, w, src in self._q(
            "SELECT subject, object, weight, source FROM relations WHERE predicate = 'footprint'"
        ):
            by[pw][src][g] = float(w)
        return {pw: dict(srcs[min(srcs, key=lambda s: (self._source_rank(s), s))]) for pw, srcs in by.items()}

    def footprint_names(self) -> list[str]:
        return sorted(self._footprints)

    def footprints(self) -> dict[str, dict[str, float]]:
        return self._footprints

    def footprint(self, pathway: str) -> dict[str, float]:
        """gene → weight of a pathway's footprint (PROGENy when built in, else the starter's); {} when unknown."""
        if pathway in self._footprints:
            return dict(self._footprints[pathway])
        r = resolve_named(self._aliases, pathway, ("pathway",))
        return dict(self._footprints.get(r.id or "", {})) if r.status == "resolved" else {}

    @cached_property
    def _anchors(self) -> dict[str, list[Relation]]:
        out: dict[str, list[Relation]] = defaultdict(list)
        for row in self._q(f"SELECT {_REL_COLS} FROM relations WHERE predicate = 'activity_anchor' ORDER BY ALL"):
            out[row[3]].append(_to_relation(row))
        return dict(out)

    def pathway_anchors(self, pathway: str) -> list[Relation]:
        """gene → activity_anchor → pathway relations: whose activity stands for the pathway's."""
        return list(self._anchors.get(pathway, []))

    def _set_id(self, name: str) -> str | None:
        if name in self._entity_types:
            return name
        r = resolve_named(self._aliases, name, ("gene_set", "process", "pathway"))
        return r.id if r.status == "resolved" else None

    def gene_set(self, name: str) -> list[str]:
        """Member genes of a gene set / GO process / pathway (by id or name); [] when unknown."""
        sid = self._set_id(name)
        if sid is None:
            return []
        return [
            r[0]
            for r in self._q(
                "SELECT DISTINCT subject FROM relations WHERE predicate = 'member_of' AND object = ? ORDER BY 1", [sid]
            )
        ]

    def gene_sets_of(self, gene: str) -> list[str]:
        """Ids of the gene sets / processes a gene belongs to."""
        r = self.resolve_gene(gene)
        g = r.id if r.status == "resolved" and r.entity_type == "gene" else gene
        return [
            x[0]
            for x in self._q(
                "SELECT DISTINCT object FROM relations WHERE predicate = 'member_of' AND subject = ? ORDER BY 1", [g]
            )
        ]

    def cell_line_drivers(self, cell_line: str) -> list[Driver]:
        """Driver mutations of a cell line (name, Cellosaurus or DepMap id); [] when the line is unknown."""
        r = self.resolve_cell_line(cell_line)
        if r.status != "resolved":
            return []
        rows = self._q(
            f"SELECT {_REL_COLS} FROM relations WHERE predicate = 'has_driver' AND subject = ? "
            "ORDER BY (source = ?), object, record_id",
            [r.id, STARTER_SOURCE],
        )
        seen: set[tuple[str, str | None]] = set()
        out = []
        for row in rows:
            rel = _to_relation(row)
            key = (rel.object, rel.attrs.get("variant") or rel.action)
            if key in seen:
                continue
            seen.add(key)
            out.append(
                Driver(
                    cell_line=rel.subject,
                    gene=rel.object,
                    variant=rel.attrs.get("variant") or rel.action,
                    effect=rel.attrs.get("effect"),
                    gene_role=rel.attrs.get("gene_role"),
                    source=rel.source,
                    record_id=rel.record_id,
                )
            )
        return out

    # ------------------------------------------------------------------ signed network
    @cached_property
    def _signed(self) -> dict[str, Any]:
        """The signalling relations, sorted by (subject, object), as column arrays; one aggregated row per edge."""
        preds = ", ".join(f"'{p}'" for p in SIGNALLING_PREDICATES)
        df = self._df(
            f"SELECT {_REL_COLS} FROM relations WHERE predicate IN ({preds}) AND subject_type <> 'drug' "
            "AND object_type <> 'drug' ORDER BY subject, object, (source = 'mechcell-starter'), source"
        )
        cols = {c: df[c].to_numpy() for c in _REL_NAMES}
        n = len(df)
        if n == 0:
            empty = np.zeros(0, dtype=np.int64)
            return {
                "cols": cols,
                "s": cols["subject"],
                "o": cols["object"],
                "sign": empty,
                "start": empty,
                "end": empty,
                "pos": {},
            }
        s_, o_ = cols["subject"], cols["object"]
        new = np.ones(n, dtype=bool)
        new[1:] = (s_[1:] != s_[:-1]) | (o_[1:] != o_[:-1])
        start = np.flatnonzero(new)
        end = np.append(start[1:], n)
        signs = cols["sign"].astype(np.int64)
        lo, hi = np.minimum.reduceat(signs, start), np.maximum.reduceat(signs, start)
        sign = np.where(lo == hi, lo, 0)  # sources that disagree on the sign leave it 0
        pos = dict(zip(zip(s_[start].tolist(), o_[start].tolist(), strict=True), range(len(start)), strict=True))
        return {
            "cols": cols,
            "s": s_[start],
            "o": o_[start],
            "sign": sign,
            "start": start,
            "end": end,
            "pos": pos,
            "st": cols["subject_type"][start],
            "ot": cols["object_type"][start],
        }

    def _row(self, i: int) -> Relation:
        cols = self._signed["cols"]
        return _to_relation(tuple(cols[c][i] for c in _REL_NAMES))

    def signed_graph(self) -> nx.DiGraph:
        """The signed network as a networkx view: node attr `type`; edge attrs `sign` (+1/−1, 0 when the sources
        disagree), `source` (first source), `sources`, `predicate`. Built once, then shared: do not mutate."""
        if "graph" not in self._cache:
            sg = self._signed
            src, pred = sg["cols"]["source"], sg["cols"]["predicate"]
            g = nx.DiGraph()
            for j in range(len(sg["start"])):
                s, o = sg["s"][j], sg["o"][j]
                g.add_node(s, type=sg["st"][j])
                g.add_node(o, type=sg["ot"][j])
                a, b = sg["start"][j], sg["end"][j]
                sources = list(dict.fromkeys(src[a:b].tolist()))
                g.add_edge(s, o, sign=int(sg["sign"][j]), source=sources[0], sources=sources, predicate=pred[a])
            self._cache["graph"] = g
        return self._cache["graph"]

    def adjacency(self, via_metabolites: bool = False) -> SignedAdjacency:
        """Adjacency lists of the signed network (metabolite and metabolic-reaction nodes left out unless asked
        for: paths through metabolism are real but rarely what a drug → TF question means)."""
        key = f"adj-{via_metabolites}"
        if key not in self._cache:
            sg = self._signed
            keep = np.ones(len(sg["start"]), dtype=bool)
            if not via_metabolites and len(keep):
                bad = {"metabolite", "reaction"}
                keep = ~(np.isin(sg["st"], list(bad)) | np.isin(sg["ot"], list(bad)))
            edges = zip(sg["s"][keep].tolist(), sg["o"][keep].tolist(), sg["sign"][keep].tolist(), strict=True)
            self._cache[key] = SignedAdjacency.from_edges(edges)
        return self._cache[key]

    def edge_relations(self, u: str, v: str) -> list[Relation]:
        """Every relation behind the signed edge u → v (curated sources before the starter)."""
        sg = self._signed
        j = sg["pos"].get((u, v))
        if j is None:
            return []
        return [self._row(i) for i in range(sg["start"][j], sg["end"][j])]

    def _endpoints(self, name: str, role: str, adj: SignedAdjacency) -> dict[str, Relation | None]:
        """Graph nodes a path may start (role=source) or end (role=target) at for a name, with the hop that
        links them to the name (drug → target, anchor gene → pathway), if any."""
        if name in adj:
            return {name: None}
        if role == "source":
            r = self.resolve_drug(name)
            if r.status == "resolved":
                hops: dict[str, Relation | None] = {}
                for rel in self.drug_targets(r.id or name):  # curated sources sort before model-generated ones
                    if rel.object in adj:
                        hops.setdefault(rel.object, rel)
                return hops
        else:
            r = resolve_named(self._aliases, name, ("pathway",))
            if r.status == "resolved" and r.id in self._anchors:
                return {rel.subject: rel for rel in self._anchors[r.id] if rel.subject in adj}
        r = self.resolve_gene(name)
        if r.status == "resolved":
            nodes = r.symbols if r.entity_type in ("family", "complex") else [r.id or name]
            return {n: None for n in nodes if n in adj}
        if r.status == "ambiguous":
            raise InputError(f"{name!r} is ambiguous ({', '.join(r.symbols)}); name one of them")
        return {}

    def paths(
        self, a: str, b: str, max_len: int = 3, k: int = 10, *, via_metabolites: bool = False
    ) -> list[SignedPath]:
        """Up to k shortest signed paths a → b with at most `max_len` signalling edges, shortest first.

        `a` may be a gene, complex, process, family (any member) or drug (its targets; the drug → target hop is
        prepended and not counted in max_len); `b` a gene, family, complex, process or pathway (through its
        activity anchors; the anchor hop is appended and not counted)."""
        if max_len < 0:
            raise InputError(f"max_len must be ≥ 0, got {max_len}")
        adj = self.adjacency(via_metabolites)
        starts = self._endpoints(a, "source", adj)
        ends = self._endpoints(b, "target", adj)
        if not starts or not ends:
            return []
        found: list[tuple[list[str], list[int]]] = []
        for L in range(0, max_len + 1):
            found = simple_paths(adj, starts, ends, L, limit=max(k * 20, 200))
            if len(found) >= k:
                break
        return [self._signed_path(n, s, starts.get(n[0]), ends.get(n[-1])) for n, s in found[:k]]

    def _signed_path(
        self, nodes: list[str], signs: list[int], head: Relation | None, tail: Relation | None
    ) -> SignedPath:
        rels = []
        for u, v in zip(nodes, nodes[1:], strict=False):
            rels.append(self._row(int(self._signed["start"][self._signed["pos"][(u, v)]])))
        nodes, signs = list(nodes), list(signs)
        if head is not None:
            nodes.insert(0, head.subject)
            signs.insert(0, head.sign)
            rels.insert(0, head)
        if tail is not None:
            nodes.append(tail.object)
            signs.append(tail.sign)
            rels.append(tail)
        return SignedPath(nodes=nodes, signs=signs, sign=path_sign(signs), relations=rels)

    # ------------------------------------------------------------------ summaries
    def stats(self) -> dict[str, Any]:
        """Counts per source and predicate, entity counts per type, version and build metadata."""
        per_source = self._q("SELECT source, predicate, count(*) FROM relations GROUP BY ALL ORDER BY ALL")
        ents = self._q("SELECT type, count(*) FROM entities GROUP BY ALL ORDER BY ALL")
        cov = self.meta.get("coverage")
        return {
            "version": self.version,
            "path": str(self.path) if self.path else None,
            "built_at": self.meta.get("built_at"),
            "n_relations": sum(n for *_, n in per_source),
            "relations": [{"source": s, "predicate": p, "n": n} for s, p, n in per_source],
            "entities": {t: n for t, n in ents},
            "sources": [s.model_dump() for s in self.sources.values()],
            "regulon_tfs": len(self._regulons),
            "footprints": self.footprint_names(),
            "coverage": json.loads(cov) if cov else None,
        }

    def coverage(self, max_steps: int = 3) -> Coverage:
        """How many Tahoe drugs have targets that resolve to genes, and reach a TF (with a regulon) or a pathway
        (through its activity anchor) in ≤ max_steps signed steps from a target."""
        from mechcell.knowledge.graph import shortest_path_dag
        from mechcell.knowledge.resolve import normalize_drug_key

        tahoe = self._q(
            "SELECT record_id, list(DISTINCT object) FROM relations WHERE source = 'tahoe_drugs' GROUP BY record_id"
        )
        tahoe_targets = {normalize_drug_key(lab): set(t) for lab, t in tahoe}
        # one entry per Tahoe label ("Trametinib" and "Trametinib (DMSO_TF solvate)" both count), mapped to its drug
        labels = self._q(
            "SELECT DISTINCT key, entity_id FROM aliases WHERE entity_type = 'drug' AND "
            "source = 'tahoe_drugs' ORDER BY key"
        )
        if not labels:
            labels = [(d, d) for d in self.drugs()]
        genes = {g for g, ts in self._entity_types.items() if "gene" in ts}
        hgnc = "hgnc" in self.sources and self.sources["hgnc"].status == "ok"
        approved = (
            {r[0] for r in self._q("SELECT id FROM entities WHERE type = 'gene' AND source = 'hgnc'")}
            if hgnc
            else genes
        )
        adj = self.adjacency()
        tf_nodes = self._tf_nodes(adj)
        anchors = {rel.subject for rels in self._anchors.values() for rel in rels}
        cov = Coverage(n_drugs=len(labels), max_steps=max_steps)
        n_sym = n_res = with_t = with_res = reach_tf = reach_any = 0
        reach_cache: dict[str, tuple[bool, bool]] = {}
        for label, d in labels:
            tt = tahoe_targets.get(label, set())
            n_sym += len(tt)
            n_res += sum(t in approved for t in tt)
            targets = {r.object for r in self.drug_targets(d)}
            if targets:
                with_t += 1
            res = [t for t in targets if t in approved]
            if res:
                with_res += 1
            tf_hit = any_hit = False
            for t in res:
                if t not in reach_cache:
                    dist, _ = shortest_path_dag(adj, t, max_steps) if t in adj else ({}, {})
                    hit_tf = any(n in tf_nodes for n in dist)
                    reach_cache[t] = (hit_tf, hit_tf or any(n in anchors for n in dist))
                tf_hit |= reach_cache[t][0]
                any_hit |= reach_cache[t][1]
            reach_tf += tf_hit
            reach_any += any_hit
        return cov.model_copy(
            update={
                "drugs_with_targets": with_t,
                "drugs_with_resolved_targets": with_res,
                "tahoe_target_symbols": n_sym,
                "tahoe_target_symbols_resolved": n_res,
                "drugs_reaching_tf": reach_tf,
                "drugs_reaching_tf_or_pathway": reach_any,
            }
        )

    def _tf_nodes(self, adj: SignedAdjacency) -> dict[str, list[str]]:
        """graph node → regulon TFs it stands for (itself, or the TF complexes it is a member of)."""
        key = "tf_nodes"
        if key not in self._cache:
            out: dict[str, list[str]] = defaultdict(list)
            for tf in self._regulons:
                if tf in adj:
                    out[tf].append(tf)
                elif tf in self._family_members:
                    for m in self._family_members[tf]:
                        if m in adj:
                            out[m].append(tf)
            self._cache[key] = dict(out)
        return self._cache[key]


# ------------------------------------------------------------------------------------------------ loading


def _open_file(path: Path) -> KnowledgeBase:
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise InputError(f"cannot open KB store {path}: {exc}") from exc
    try:
        return KnowledgeBase(con, path=path)
    except Exception:
        con.close()
        raise


def starter_kb() -> KnowledgeBase:
    """The starter KB (shipped tables), built in memory — a fraction of a second."""
    from mechcell.knowledge.build import populate

    con = duckdb.connect(":memory:")
    populate(con, None, include_starter=True)
    return KnowledgeBase(con)


def load_kb(path: Path | str | None = None, *, settings: Settings | None = None) -> KnowledgeBase:
    """Open a knowledge base.

    None → `settings.kb_path` when set, else the starter KB; a `.duckdb` file → that built store (read-only); a
    directory of source tables (the layout of ../shared/kb) → built on first use into
    `settings.cache_dir / f"kb-{content_hash}.duckdb"` (atomically) and reused while the hash matches.
    """
    if path is None and settings is not None and settings.kb_path is not None:
        path = settings.kb_path
    if path is None:
        return starter_kb()
    p = Path(path).expanduser()
    if p.is_file():
        return _open_file(p)
    if p.is_dir():
        from mechcell.knowledge.build import build_store, content_hash

        settings = settings or Settings()
        h = content_hash(p)
        out = Path(settings.cache_dir).expanduser() / f"kb-{h}.duckdb"
        if not out.is_file():
            try:
                build_store(p, out)
            except OSError as exc:  # e.g. a read-only cache folder
                raise InputError(
                    f"cannot build the KB for {p} into {out.parent}: {exc}; set MECHCELL_CACHE_DIR to a writable folder"
                ) from exc
        return _open_file(out)
    raise NotFoundError(f"KB path {p} does not exist (pass a built .duckdb store or a directory of source tables)")
