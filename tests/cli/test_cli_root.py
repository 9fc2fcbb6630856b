"""The CLI shell: version, help listing the command groups, and the graph group end to end in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import mechcell
from mechcell.cli import app

EXAMPLE = """<explain>
set_context(id="n0", cell_type="A549")
binds_to(id="n1", actor="Trametinib", target="MAP2K1")
modulates_molecule_activity(id="n2", target="MAP2K1", direction="down")
regulates_expression(id="n3", regulator="MAPK1", gene_list=["DUSP6"], direction="down")
</explain>
<dag>
edge("n1","n2")
edge("n2","n3")
</dag>"""


def test_version_and_help() -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == mechcell.__version__
    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0 and "graph" in r.stdout


def test_graph_check_json_in_a_real_process(tmp_path: Path) -> None:
    f = tmp_path / "g.txt"
    f.write_text(EXAMPLE)
    exe = Path(sys.executable).parent / "mechcell"
    out = subprocess.run([str(exe), "graph", "check", str(f), "--json"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # exactly one JSON document on stdout
    assert doc["valid"] and doc["n_nodes"] == 4 and doc["n_edges"] == 2 and len(doc["hash"]) == 64


def test_graph_check_reports_problems_and_exit_code(tmp_path: Path) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(EXAMPLE.replace('edge("n2","n3")', 'edge("n2","n9")'))
    r = CliRunner().invoke(app, ["graph", "check", str(f), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert not doc["valid"] and any(p["kind"] == "undeclared_id" and p["line"] == 9 for p in doc["problems"])


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["graph", "claims", str(tmp_path / "nope.txt")])
    assert r.exit_code == 2
    assert "does not exist" in r.output and "Traceback" not in r.output
