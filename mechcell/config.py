"""One typed `Settings` object, read once at the edge (CLI, web, Python entry points) and passed down.

Why: no module reads `os.environ` on its own, so a run is reproducible from the settings it records.
Sources, highest priority first: explicit keyword arguments, `MECHCELL_*` environment variables, a TOML
file (`MECHCELL_CONFIG` or `./mechcell.toml`), a named preset, the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PresetName = Literal["default", "fast", "thorough", "offline"]

#: Named presets: small dictionaries of overrides (PaperQA2-style), applied below the TOML file.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {"n_permutations": 200, "max_revise_rounds": 1, "n_candidates": 2},
    "thorough": {"n_permutations": 2000, "max_revise_rounds": 4, "n_candidates": 6},
    "offline": {"llm_base_url": None, "llm_model": None},
}


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the optional TOML file and the preset it names; lower priority than the environment."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.path is not None and self.path.is_file():
            try:
                with self.path.open("rb") as fh:
                    data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"config file {self.path} is not valid TOML: {exc}") from exc
            data = data.get("mechcell", data)
        preset = data.get("preset", "default")
        if preset not in PRESETS:
            raise ValueError(f"config file {self.path}: unknown preset {preset!r} (have: {', '.join(PRESETS)})")
        return {**PRESETS[preset], **data}


class Settings(BaseSettings):
    """Everything a mechcell run can be configured with.

    Environment variables are the field names upper-cased with the prefix `MECHCELL_`
    (e.g. `MECHCELL_LLM_BASE_URL`, `MECHCELL_STORE_PATH`, `MECHCELL_SEED`).
    """

    model_config = SettingsConfigDict(env_prefix="MECHCELL_", extra="ignore", validate_default=True)

    preset: PresetName = "default"
    # LLM endpoint: any OpenAI-compatible server; None means the local proposer serves.
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout: float = Field(60.0, gt=0, description="seconds per LLM request")
    llm_max_concurrency: int = Field(4, ge=1, le=256)
    llm_max_retries: int = Field(5, ge=0, le=50)
    # Where things live.
    kb_path: Path | None = Field(None, description="a built KB store (.duckdb) or a directory of source tables")
    data_dir: Path = Path("data")
    store_path: Path = Path("mechcell.duckdb")
    cache_dir: Path = Field(Path(".mechcell-cache"), description="built KB stores from source directories, etc.")
    # Reproducibility and pipeline knobs.
    seed: int = 0
    n_permutations: int = Field(1000, ge=10)
    n_candidates: int = Field(3, ge=1, le=64)
    max_revise_rounds: int = Field(2, ge=0, le=20)
    policy_checkpoint: Path | None = Field(
        None, description="a `mechcell train policy` output directory: what `--proposer policy` loads"
    )
    # Web door.
    api_token: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The config file's location is itself configuration; this is the one place it is read.
        raw = os.environ.get("MECHCELL_CONFIG")
        path = Path(raw) if raw else Path("mechcell.toml")
        return (init_settings, env_settings, _TomlSource(settings_cls, path), file_secret_settings)

    @property
    def llm_configured(self) -> bool:
        """True when an OpenAI-compatible endpoint is set (otherwise the local proposer is used)."""
        return bool(self.llm_base_url and self.llm_model)


def load_settings(**overrides: Any) -> Settings:
    """Settings from env + TOML + preset, with explicit overrides (CLI flags) on top; None overrides are ignored."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
