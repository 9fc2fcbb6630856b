"""The starter tables ship inside the package (hatch includes every file under mechcell/ in the wheel)."""

from __future__ import annotations

from importlib import resources

from mechcell.knowledge.starter import STARTER_FILES, read_starter


def test_starter_tables_are_package_resources() -> None:
    root = resources.files("mechcell.knowledge.starter")
    for name in STARTER_FILES + ("README.md",):
        assert root.joinpath(name).is_file(), name
    t = read_starter()
    assert len(t.relations) > 500 and t.relations["evidence"].str.len().gt(0).all()
