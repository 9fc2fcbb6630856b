"""Entity resolution: user-facing names → the store's canonical ids.

Genes: current symbol, Ensembl / Entrez / HGNC / UniProt id, FamPlex family, previous symbol, alias — in that order;
an alias shared by several genes comes back `ambiguous` with every candidate, never a guess. Drugs: case,
whitespace, unicode dashes, salt / solvate / hydrate suffixes ("Trametinib (DMSO_TF solvate)", "Lapatinib
ditosylate") and synonyms. Whatever cannot be resolved comes back `unresolved` with close suggestions.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from mechcell.knowledge.models import Resolution

#: Trailing words that name a salt, solvate, hydrate or ester form rather than a different active compound.
SALT_WORDS = frozenset(
    (
        "hydrochloride",
        "dihydrochloride",
        "trihydrochloride",
        "hcl",
        "hydrobromide",
        "hydroiodide",
        "mesylate",
        "dimesylate",
        "mesilate",
        "tosylate",
        "ditosylate",
        "besylate",
        "besilate",
        "sulfate",
        "sulphate",
        "bisulfate",
        "hemisulfate",
        "citrate",
        "maleate",
        "dimaleate",
        "fumarate",
        "hemifumarate",
        "tartrate",
        "bitartrate",
        "phosphate",
        "diphosphate",
        "acetate",
        "diacetate",
        "succinate",
        "propionate",
        "dipropionate",
        "malate",
        "s-malate",
        "lactate",
        "oxalate",
        "nitrate",
        "chloride",
        "bromide",
        "iodide",
        "sodium",
        "disodium",
        "potassium",
        "dipotassium",
        "calcium",
        "magnesium",
        "zinc",
        "hydrate",
        "monohydrate",
        "dihydrate",
        "trihydrate",
        "tetrahydrate",
        "pentahydrate",
        "hexahydrate",
        "octahydrate",
        "hemihydrate",
        "sesquihydrate",
        "solvate",
        "olamine",
        "meglumine",
        "erbumine",
        "isethionate",
        "hyclate",
        "salt",
        "anhydrous",
    )
)
_DASHES = dict.fromkeys(map(ord, "‐‑‒–—―−"), "-")
_WS = re.compile(r"\s+")
_ENSEMBL = re.compile(r"^(ENS[A-Z]*G\d+)\.\d+$")
_GENETIC = re.compile(
    r"^(?:sg|si|sh|crispr[ia]?[-_ ]?)(?P<g1>[A-Za-z0-9-]+)$"
    r"|^(?P<g2>[A-Za-z0-9-]+?)[-_ ]?(?:ko|kd|knockout|knockdown|crispr[ia]?|sg\d*|si\d*|sh\d*|null|del|-/-)$",
    re.IGNORECASE,
)

GENE_TIERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("symbol", frozenset({"symbol"})),
    ("id", frozenset({"hgnc_id", "entrez", "ensembl", "uniprot"})),
    ("previous", frozenset({"previous"})),
    ("alias", frozenset({"alias", "tahoe_symbol"})),
)


def _nfkc(s: str) -> str:
    return unicodedata.normalize("NFKC", s).translate(_DASHES)


def normalize_key(name: str) -> str:
    """Case-, width- and whitespace-insensitive key (families, pathways, gene sets, cell lines)."""
    return _WS.sub(" ", _nfkc(str(name))).strip().strip("'\"").casefold()


def compact_key(name: str) -> str:
    """`normalize_key` without punctuation or spaces: "HT29" ~ "HT-29", "MK8353" ~ "MK-8353"."""
    return re.sub(r"[^0-9a-z]", "", normalize_key(name))


def normalize_gene_key(name: str) -> str:
    """Upper-cased, trimmed; an Ensembl id loses its version suffix."""
    k = _WS.sub("", _nfkc(str(name))).strip("'\"").upper()
    m = _ENSEMBL.match(k)
    return m.group(1) if m else k


def normalize_drug_key(name: str) -> str:
    return normalize_key(name)


def strip_salts(name: str) -> str:
    """Drop trailing parenthesised forms and salt / solvate words: "Lapatinib ditosylate" → "Lapatinib",
    "Dapagliflozin ((2S)-1,2-propanediol, hydrate)" → "Dapagliflozin". A leading "(S)-" is kept (a stereoisomer is
    a different compound) and a name is never stripped to nothing."""
    s = _WS.sub(" ", _nfkc(str(name))).strip()
    while s.endswith(")"):
        depth, i = 0, len(s) - 1
        while i >= 0:
            depth += {")": 1, "(": -1}.get(s[i], 0)
            if depth == 0:
                break
            i -= 1
        if i <= 0 or not s[:i].strip():
            break
        s = s[:i].rstrip(" ,;")
    words = s.split(" ")
    while len(words) > 1 and words[-1].casefold().strip(",;") in SALT_WORDS:
        words.pop()
    return " ".join(words).rstrip(" ,;")


def drug_base_key(name: str) -> str:
    return normalize_drug_key(strip_salts(name))


def display_drug_name(name: str) -> str:
    """The canonical display form of a drug: salt-stripped, capitalised when the source wrote it all lower-case."""
    base = strip_salts(name)
    return base[:1].upper() + base[1:] if base.islower() else base


def genetic_gene_part(name: str) -> str | None:
    """The gene in a genetic-perturbation label ("sgTP53", "TP53_KO", "KRAS knockdown"), else None."""
    m = _GENETIC.match(_nfkc(name).strip())
    if not m:
        return None
    return m.group("g1") or m.group("g2")


class AliasIndex:
    """key → [(entity_type, entity_id, kind)] over sorted key arrays (binary search: cheap to build for ~10⁶
    aliases), with lazily built indexes for punctuation-insensitive matches and suggestions."""

    def __init__(self, aliases: pd.DataFrame) -> None:
        a = aliases.dropna(subset=["key", "entity_id"])
        keys = a["key"].to_numpy(dtype=object)
        if len(keys) > 1 and not bool((keys[1:] >= keys[:-1]).all()):
            order = np.argsort(keys, kind="stable")
            a = a.iloc[order]
            keys = keys[order]
        self._keys = keys
        self._etype = a["entity_type"].to_numpy(dtype=object)
        self._eid = a["entity_id"].to_numpy(dtype=object)
        self._kind = a["kind"].to_numpy(dtype=object)
        self._compact_index: dict[str, list[tuple[str, str, str]]] | None = None
        self._pools: dict[tuple[str, str], list[str]] = {}

    def _range(self, lo_key: str, hi_key: str | None = None) -> tuple[int, int]:
        lo = int(np.searchsorted(self._keys, lo_key, "left"))
        hi = int(
            np.searchsorted(self._keys, hi_key if hi_key is not None else lo_key, "right" if hi_key is None else "left")
        )
        return lo, hi

    def _hits(self, lo: int, hi: int) -> list[tuple[str, str, str]]:
        return [(self._etype[i], self._eid[i], self._kind[i]) for i in range(lo, hi)]

    @property
    def _compact(self) -> dict[str, list[tuple[str, str, str]]]:
        if self._compact_index is None:
            idx: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
            for i in np.flatnonzero(self._etype != "gene"):
                idx[compact_key(self._keys[i])].append((self._etype[i], self._eid[i], self._kind[i]))
            self._compact_index = idx
        return self._compact_index

    def get(self, key: str, types: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
        hits = self._hits(*self._range(key))
        if types is None:
            return hits
        ts = set(types)
        return [h for h in hits if h[0] in ts]

    def get_compact(self, key: str, types: Iterable[str]) -> list[tuple[str, str, str]]:
        ts = set(types)
        return [h for h in self._compact.get(compact_key(key), []) if h[0] in ts]

    def _pool(self, etype: str, first: str) -> list[str]:
        """Distinct keys of one entity type starting with one character (a contiguous range of the sorted keys)."""
        k = (etype, first)
        if k not in self._pools:
            lo, hi = self._range(first, chr(ord(first) + 1))
            m = self._etype[lo:hi] == etype
            self._pools[k] = list(dict.fromkeys(self._keys[lo:hi][m].tolist()))
        return self._pools[k]

    def suggest(self, key: str, etype: str, n: int = 5, cutoff: float = 0.7) -> list[str]:
        """Close keys of one entity type, mapped to their entity ids (same first character, for speed)."""
        if not key:
            return []
        pool = self._pool(etype, key[:1])
        close = difflib.get_close_matches(key, pool, n=n * 2, cutoff=cutoff)
        first = key.split(" ")[0]
        if first != key:  # "trametinib dimethyl sulfoxide": the first word alone may be a known name
            close += [k for k in difflib.get_close_matches(first, pool, n=n, cutoff=0.85) if k not in close]
        out: list[str] = []
        for k in close:
            for t, eid, _ in self.get(k):
                if t == etype and eid not in out:
                    out.append(eid)
        return out[:n]


def resolve_gene(index: AliasIndex, name: str, expand_family: Callable[[str], list[str]] | None = None) -> Resolution:
    """Tiered gene resolution (see module docstring)."""
    key = normalize_gene_key(name)
    hits = index.get(key, ["gene"])
    for tier, kinds in GENE_TIERS:
        syms = list(dict.fromkeys(eid for _, eid, kind in hits if kind in kinds))
        if tier == "previous":  # a family name ("ERK", "MEK") wins over a gene's long-retired symbol
            fam = index.get(normalize_key(name), ["family", "complex"])
            if fam:
                fid = fam[0][1]
                members = expand_family(fid) if expand_family else []
                return Resolution(
                    query=name, status="resolved", entity_type=fam[0][0], id=fid, symbols=members, matched_by="family"
                )
        if len(syms) == 1:
            note = None if tier == "symbol" else f"matched {tier} {name!r} → {syms[0]}"
            return Resolution(
                query=name,
                status="resolved",
                entity_type="gene",
                id=syms[0],
                symbols=syms,
                matched_by=tier if tier != "id" else next(k for _, e, k in hits if e == syms[0]),
                note=note,
            )
        if len(syms) > 1:
            return Resolution(
                query=name,
                status="ambiguous",
                entity_type="gene",
                symbols=sorted(syms),
                matched_by=tier,
                note=f"{name!r} is a {tier} of {len(syms)} genes; not guessing",
            )
    return Resolution(query=name, status="unresolved", suggestions=index.suggest(key, "gene"))


def resolve_drug(index: AliasIndex, name: str) -> Resolution:
    """Exact (normalised) name or synonym, then the salt-stripped base, then punctuation-insensitive."""
    attempts = (("name", normalize_drug_key(name)), ("salt/solvate stripped", drug_base_key(name)))
    for how, key in attempts:
        ids = list(dict.fromkeys(eid for _, eid, _ in index.get(key, ["drug"])))
        if ids:
            return _pick(name, "drug", ids, how)
    ids = list(dict.fromkeys(eid for _, eid, _ in index.get_compact(drug_base_key(name), ["drug"])))
    if ids:
        return _pick(name, "drug", ids, "punctuation-insensitive")
    return Resolution(query=name, status="unresolved", suggestions=index.suggest(drug_base_key(name), "drug"))


def resolve_named(index: AliasIndex, name: str, types: tuple[str, ...]) -> Resolution:
    """Resolve a family, pathway, gene set, process or cell line by (normalised, then compact) name."""
    ids = list(dict.fromkeys((t, eid) for t, eid, _ in index.get(normalize_key(name), types)))
    how = "name"
    if not ids:
        ids = list(dict.fromkeys((t, eid) for t, eid, _ in index.get_compact(name, types)))
        how = "punctuation-insensitive"
    if len(ids) == 1:
        return Resolution(query=name, status="resolved", entity_type=ids[0][0], id=ids[0][1], matched_by=how)
    if ids:
        return Resolution(
            query=name, status="ambiguous", entity_type=ids[0][0], symbols=[i for _, i in ids], matched_by=how
        )
    sugg: list[str] = []
    for t in types:
        sugg += index.suggest(normalize_key(name), t, n=3)
    return Resolution(query=name, status="unresolved", suggestions=sugg[:5])


def _pick(name: str, etype: str, ids: list[str], how: str) -> Resolution:
    if len(ids) == 1:
        return Resolution(
            query=name,
            status="resolved",
            entity_type=etype,
            id=ids[0],
            symbols=[],
            matched_by=how,
            note=None if how == "name" else f"{name!r} → {ids[0]} ({how})",
        )
    return Resolution(query=name, status="ambiguous", entity_type=etype, symbols=sorted(ids), matched_by=how)
