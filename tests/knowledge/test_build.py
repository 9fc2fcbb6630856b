"""Building the store: provenance on every relation, versioning by content hash, atomic rebuilds, damaged sources
left out whole, and `load_kb` building a source directory once into the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from mechcell.config import Settings
from mechcell.errors import InputError, NotFoundError
from mechcell.knowledge import KnowledgeBase, load_kb
from mechcell.knowledge.build import build_store, content_hash
from mechcell.knowledge.importers import SOURCES


def test_every_relation_has_provenance(mini_kb: KnowledgeBase) -> None:
    rows = mini_kb._q(
        "SELECT count(*) FROM relations WHERE source IS NULL OR version IS NULL OR record_id IS NULL OR record_id = ''"
    )
    assert rows[0][0] == 0
    srcs = {s for (s,) in mini_kb._q("SELECT DISTINCT source FROM relations")}
    assert srcs == {s.name for s in SOURCES if s.name not in ("hgnc", "tahoe_genes", "tf_list", "kinases")}


def test_sources_table_counts_match_the_store(mini_kb: KnowledgeBase) -> None:
    for name, info in mini_kb.sources.items():
        assert info.status == "ok", info.message
        n = mini_kb._q("SELECT count(*) FROM relations WHERE source = ?", [name])[0][0]
        assert n == info.n_relations, name


def test_model_generated_flag_only_on_tahoe_drug_targets(mini_kb: KnowledgeBase) -> None:
    flagged = mini_kb._q("SELECT DISTINCT source FROM relations WHERE model_generated")
    assert flagged == [("tahoe_drugs",)]
    tram = mini_kb.drug_targets("Trametinib")
    assert {r.source for r in tram} == {"drugcentral", "tahoe_drugs"}
    assert all(r.model_generated == (r.source == "tahoe_drugs") for r in tram)


def test_gene_names_are_canonicalised(mini_kb: KnowledgeBase) -> None:
    # Tahoe's gene vocabulary says G1P2 (a previous symbol of ISG15): the store knows it as ISG15
    assert "ISG15" in mini_kb.genes() and "G1P2" not in mini_kb.genes()
    # CollecTRI's NFKB is the FamPlex complex of that name, not a gene
    assert mini_kb._q("SELECT DISTINCT subject_type FROM relations WHERE subject = 'NFKB'") == [("complex",)]
    assert mini_kb.regulon("NFKB") == {"ISG15": 1}


def test_salt_forms_merge_into_one_drug(mini_kb: KnowledgeBase) -> None:
    assert "Trametinib" in mini_kb.drugs()
    assert "Trametinib (DMSO_TF solvate)" not in mini_kb.drugs()
    assert "Lapatinib" in mini_kb.drugs()
    labels = mini_kb.entity("Trametinib")["attrs"]["labels"]
    assert {"Trametinib", "Trametinib (DMSO_TF solvate)", "trametinib"} <= set(labels)


def test_content_hash_is_location_independent_and_content_sensitive(tmp_path: Path, mini_dir: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(mini_dir, copy)
    assert content_hash(copy) == content_hash(mini_dir)
    assert content_hash(copy, include_starter=False) != content_hash(copy)
    with (copy / "regulons/collectri.csv").open("a") as fh:
        fh.write("TP53,MDM2,1,8440237\n")
    assert content_hash(copy) != content_hash(mini_dir)


def test_malformed_source_is_left_out_whole(tmp_path: Path, make_mini_kb) -> None:
    d = make_mini_kb(tmp_path / "src")
    (d / "regulons/collectri.csv").write_text("source,target,weight,PMID\nETS1,DUSP6,1,1\nSTAT1,ISG15,3,2\n")
    s = build_store(d, tmp_path / "kb.duckdb", include_starter=False)
    info = {i.source: i for i in s.sources}
    assert info["collectri"].status == "error"
    assert "collectri.csv, line 3" in (info["collectri"].message or "")
    kb = load_kb(tmp_path / "kb.duckdb")
    try:
        assert kb.regulon("ETS1") == {}  # not even the good first row was imported
        assert kb.drug_targets("trametinib")  # the other sources are there
        assert kb.sources["collectri"].status == "error"
    finally:
        kb.close()


def test_rebuild_is_atomic(tmp_path: Path, make_mini_kb) -> None:
    d = make_mini_kb(tmp_path / "src")
    out = tmp_path / "kb.duckdb"
    s1 = build_store(d, out, include_starter=False)
    old = load_kb(out)
    with (d / "regulons/collectri.csv").open("a") as fh:
        fh.write("TP53,MDM2,1,8440237\n")
    s2 = build_store(d, out, include_starter=False)
    assert s2.version != s1.version
    assert old.version == s1.version and old.regulon("TP53") == {"CDKN1A": 1}  # the open handle still reads
    old.close()
    new = load_kb(out)
    try:
        assert new.version == s2.version and new.regulon("TP53") == {"CDKN1A": 1, "MDM2": 1}
    finally:
        new.close()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") or p.name.endswith(".wal")]


def test_failed_build_leaves_old_store_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_mini_kb
) -> None:
    d = make_mini_kb(tmp_path / "src")
    out = tmp_path / "kb.duckdb"
    s1 = build_store(d, out, include_starter=False)
    import mechcell.knowledge.build as b

    def boom(*a, **k):  # noqa: ANN002, ANN003
        raise RuntimeError("disk full")

    monkeypatch.setattr(b, "_write", boom)
    with pytest.raises(RuntimeError):
        build_store(d, out, include_starter=False)
    kb = load_kb(out)
    try:
        assert kb.version == s1.version
    finally:
        kb.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kb.duckdb", "src"]


def test_load_kb_builds_a_directory_once_into_the_cache(tmp_path: Path, make_mini_kb) -> None:
    d = make_mini_kb(tmp_path / "src")
    for p in d.rglob("*"):  # the source directory may be read-only (as in CI)
        p.chmod(p.stat().st_mode & ~0o222)
    settings = Settings(cache_dir=tmp_path / "cache")
    kb = load_kb(d, settings=settings)
    try:
        cached = tmp_path / "cache" / f"kb-{content_hash(d)}.duckdb"
        assert kb.path == cached and cached.is_file()
        mtime = cached.stat().st_mtime_ns
    finally:
        kb.close()
    kb2 = load_kb(d, settings=settings)
    try:
        assert cached.stat().st_mtime_ns == mtime and kb2.version == content_hash(d)
    finally:
        kb2.close()
        for p in d.rglob("*"):
            p.chmod(p.stat().st_mode | 0o200)


def test_load_kb_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_kb(tmp_path / "nope")
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE t (x INT)")
    con.close()
    with pytest.raises(InputError, match="not a mechcell knowledge base"):
        load_kb(other)
    empty = tmp_path / "empty"
    empty.mkdir()
    kb = load_kb(empty, settings=Settings(cache_dir=tmp_path / "c"))  # no sources found: the starter alone
    try:
        assert kb.sources.keys() == {"mechcell-starter"}
    finally:
        kb.close()


def test_load_kb_uses_settings_kb_path(tmp_path: Path, mini_dir: Path) -> None:
    out = tmp_path / "kb.duckdb"
    build_store(mini_dir, out, include_starter=False)
    kb = load_kb(None, settings=Settings(kb_path=out))
    try:
        assert kb.path == out
    finally:
        kb.close()


def test_starter_kb_is_built_in_memory(starter: KnowledgeBase) -> None:
    assert starter.path is None
    assert set(starter.sources) == {"mechcell-starter"}
    assert starter.version == content_hash(None)


def test_unwritable_cache_is_a_typed_error(tmp_path: Path, mini_dir: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(InputError, match="MECHCELL_CACHE_DIR"):
        load_kb(mini_dir, settings=Settings(cache_dir=blocker))
