"""Settings: defaults, MECHCELL_* environment, TOML file and presets, with explicit overrides on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from mechcell.config import Settings, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MECHCELL_CONFIG", raising=False)
    s = Settings()
    assert s.store_path == Path("mechcell.duckdb") and s.seed == 0 and not s.llm_configured


def test_env_toml_preset_and_override_priority(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "my.toml"
    cfg.write_text('preset = "thorough"\nseed = 7\nllm_model = "toml-model"\nn_candidates = 5\n')
    monkeypatch.setenv("MECHCELL_CONFIG", str(cfg))
    monkeypatch.setenv("MECHCELL_LLM_MODEL", "env-model")
    monkeypatch.setenv("MECHCELL_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    s = load_settings(seed=None, n_candidates=2)
    assert s.llm_model == "env-model"  # env beats the file
    assert s.seed == 7  # file beats defaults; a None override is ignored
    assert s.n_candidates == 2  # an explicit override beats everything
    assert s.n_permutations == 2000  # from the preset named in the file
    assert s.llm_configured


def test_bad_toml_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("seed = = 3\n")
    monkeypatch.setenv("MECHCELL_CONFIG", str(cfg))
    with pytest.raises(ValueError, match="bad.toml"):
        Settings()


def test_unknown_preset_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('preset = "turbo"\n')
    monkeypatch.setenv("MECHCELL_CONFIG", str(cfg))
    with pytest.raises(ValueError, match="turbo"):
        Settings()
