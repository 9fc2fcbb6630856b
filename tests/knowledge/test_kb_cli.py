"""`mechcell kb …` through typer's CliRunner: one JSON document on stdout with --json, typed errors as exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mechcell.cli import app


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mini_dir: Path, runner: CliRunner) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cli") / "kb.duckdb"
    res = runner.invoke(app, ["kb", "build", "--from", str(mini_dir), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_build_json_summary(built: tuple[Path, dict]) -> None:
    out, doc = built
    assert out.is_file() and doc["path"] == str(out)
    by = {s["source"]: s for s in doc["sources"]}
    assert by["collectri"]["n_relations"] == 5 and by["mechcell-starter"]["status"] == "ok"
    cov = doc["coverage"]
    assert cov["n_drugs"] == 5 and cov["drugs_with_targets"] == 4  # Talc has no target


def test_build_default_out_goes_to_the_cache(
    tmp_path: Path, mini_dir: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MECHCELL_CACHE_DIR", str(tmp_path / "cache"))
    res = runner.invoke(app, ["kb", "build", "--from", str(mini_dir), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert Path(doc["path"]).parent == tmp_path / "cache" and Path(doc["path"]).name == f"kb-{doc['version']}.duckdb"


def test_build_human_output(tmp_path: Path, mini_dir: Path, runner: CliRunner) -> None:
    res = runner.invoke(app, ["kb", "build", "--from", str(mini_dir), "--out", str(tmp_path / "k.duckdb")])
    assert res.exit_code == 0 and "Tahoe coverage" in res.stdout and "collectri" in res.stdout


def test_stats_show_paths_context(built: tuple[Path, dict], runner: CliRunner) -> None:
    out, summary = built
    res = runner.invoke(app, ["kb", "stats", "--kb", str(out), "--json"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["version"] == summary["version"] and doc["coverage"]["n_drugs"] == 5

    res = runner.invoke(app, ["kb", "show", "trametinib", "--kb", str(out), "--json"])
    doc = json.loads(res.stdout)
    assert doc["id"] == "Trametinib" and {r["object"] for r in doc["relations_out"]} == {"MAP2K1", "MAP2K2"}

    res = runner.invoke(app, ["kb", "show", "MEK", "--kb", str(out)])
    assert res.exit_code == 0 and "MAP2K1, MAP2K2" in res.stdout

    res = runner.invoke(app, ["kb", "paths", "MAP2K1", "ETS1", "--kb", str(out), "--json"])
    doc = json.loads(res.stdout)
    assert [p["nodes"] for p in doc["paths"]] == [["MAP2K1", "MAPK1", "ETS1"], ["MAP2K1", "MAPK3", "ETS1"]]

    res = runner.invoke(app, ["kb", "paths", "ETS1", "MAP2K1", "--kb", str(out)])
    assert res.exit_code == 1 and "no signed path" in res.stdout

    res = runner.invoke(app, ["kb", "context", "Trametinib", "--cell-line", "A549", "--kb", str(out), "--json"])
    doc = json.loads(res.stdout)
    assert doc["kind"] == "drug" and {t["gene"] for t in doc["targets"]} == {"MAP2K1", "MAP2K2"}


def test_starter_is_the_default_kb(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MECHCELL_KB_PATH", raising=False)
    res = runner.invoke(app, ["kb", "paths", "Trametinib", "ETS1", "--json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["paths"][0]["nodes"][:2] in (["Trametinib", "MAP2K1"], ["Trametinib", "MAP2K2"])


def test_errors_are_one_line_and_exit_2(tmp_path: Path, runner: CliRunner) -> None:
    res = runner.invoke(app, ["kb", "stats", "--kb", str(tmp_path / "missing.duckdb")])
    assert res.exit_code == 2 and "NotFoundError" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["kb", "show", "Zzyzx-unknown"])
    assert res.exit_code == 2 and "NotFoundError" in res.output
    res = runner.invoke(app, ["kb", "build", "--no-starter"])
    assert res.exit_code == 2 and "nothing to build" in res.output


def test_online_route_is_explicit_and_reports_missing_clients(
    tmp_path: Path, mini_dir: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    # an ordinary build never touches the online clients
    res = runner.invoke(app, ["kb", "build", "--from", str(mini_dir), "--out", str(tmp_path / "a.duckdb"), "--json"])
    assert res.exit_code == 0 and "decoupler" not in sys.modules and "omnipath" not in sys.modules
    # asking for it without the clients installed is a clear, typed error
    monkeypatch.setitem(sys.modules, "decoupler", None)
    res = runner.invoke(app, ["kb", "build", "--online", "--out", str(tmp_path / "b.duckdb")])
    assert res.exit_code == 2 and "pip install decoupler omnipath" in res.output
    assert not (tmp_path / "b.duckdb").exists()
