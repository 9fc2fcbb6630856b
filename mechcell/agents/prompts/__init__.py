"""Versioned prompt templates: one text file per (name, version), e.g. `formalise_v1.md`.

Why files and versions: a trace must say exactly which words the model was shown. Every file starts with a small
header (`name`, `version`, `description`, `variables`) between `---` lines; `Prompt.ref` (name/version@sha12)
is what a trace records, the sha guarding against a file edited without bumping its version.

Templates use `string.Template` (`$var` / `${var}`, `$$` for a literal dollar): braces in JSON, gene lists and
graph text are never read as placeholders, and substituted values are never re-scanned. Optional role markers
(a line `=== system ===`, `=== user ===` or `=== assistant ===`) split a prompt into chat messages.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict

from mechcell.errors import InputError, NotFoundError

_FILE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*?)_(?P<version>v\d+)\.md$")
_NAMED_VERSION = re.compile(r"([a-z][a-z0-9_]*?)_(v\d+)")
_ROLE = re.compile(r"^=== (system|user|assistant) ===[ \t]*$", re.MULTILINE)
_HEADER_KEYS = ("name", "version", "description", "variables")


class Prompt(BaseModel):
    """One loaded template. `text` is the body without its header; `sha` is the sha256 of the whole file."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    description: str = ""
    variables: tuple[str, ...] = ()
    text: str
    sha: str
    source: str = ""

    @property
    def ref(self) -> str:
        """What a trace records: `name/version@sha12` (e.g. `formalise/v1@3f2a...`)."""
        return f"{self.name}/{self.version}@{self.sha[:12]}"

    def render(self, **values: Any) -> str:
        """The body with every `$variable` filled; a missing variable is an InputError naming it.

        Extra values are ignored, so one dictionary of context can feed several templates.
        """
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise InputError(
                f"prompt {self.name}/{self.version} needs variable(s) {', '.join(map(repr, missing))} "
                f"(given: {', '.join(sorted(values)) or 'none'})"
            )
        return Template(self.text).substitute({k: _as_text(v) for k, v in values.items()})

    def messages(self, **values: Any) -> list[dict[str, str]]:
        """The rendered prompt as chat messages, split at `=== role ===` lines (no marker: one user message)."""
        rendered = self.render(**values)
        marks = list(_ROLE.finditer(rendered))
        if not marks:
            return [{"role": "user", "content": rendered.strip()}]
        out: list[dict[str, str]] = []
        for k, m in enumerate(marks):
            end = marks[k + 1].start() if k + 1 < len(marks) else len(rendered)
            content = rendered[m.end() : end].strip()
            if content:
                out.append({"role": m.group(1), "content": content})
        return out


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value)
    return str(value)


def _parse(raw: str, source: str) -> Prompt:
    """Split header and body; check the header's name/version agree with the file name."""
    lines = raw.split("\n")
    if not lines or lines[0].strip() != "---":
        raise InputError(f"prompt file {source}: must start with a '---' header line")
    try:
        close = next(k for k in range(1, len(lines)) if lines[k].strip() == "---")
    except StopIteration:
        raise InputError(f"prompt file {source}: header is not closed by a '---' line") from None
    header: dict[str, str] = {}
    for k, line in enumerate(lines[1:close], start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or key not in _HEADER_KEYS:
            raise InputError(
                f"prompt file {source} line {k}: expected 'key: value' with key in {', '.join(_HEADER_KEYS)}"
            )
        header[key] = value.strip()
    for key in ("name", "version"):
        if not header.get(key):
            raise InputError(f"prompt file {source}: header lacks {key!r}")
    body = "\n".join(lines[close + 1 :]).strip("\n") + "\n"
    variables = tuple(v.strip() for v in header.get("variables", "").split(",") if v.strip())
    template = Template(body)
    if not template.is_valid():
        raise InputError(f"prompt file {source}: a '$' that is not a $variable (write $$ for a literal dollar)")
    used = set(template.get_identifiers())
    if used != set(variables):
        raise InputError(
            f"prompt file {source}: header variables {sorted(variables)} differ from the template's {sorted(used)}"
        )
    return Prompt(
        name=header["name"],
        version=header["version"],
        description=header.get("description", ""),
        variables=variables,
        text=body,
        sha=hashlib.sha256(raw.encode("utf-8")).hexdigest(),
        source=source,
    )


def _files(directory: Path | None) -> dict[tuple[str, str], Traversable | Path]:
    root: Traversable | Path = directory if directory is not None else resources.files(__name__)
    if directory is not None and not directory.is_dir():
        raise NotFoundError(f"prompt directory {directory} does not exist")
    found: dict[tuple[str, str], Traversable | Path] = {}
    for entry in root.iterdir():
        m = _FILE.match(entry.name)
        if m and entry.is_file():
            found[(m.group("name"), m.group("version"))] = entry
    return found


def _version_number(version: str) -> int:
    return int(version[1:])


def list_prompts(directory: Path | None = None) -> dict[str, list[str]]:
    """Prompt name → its versions, oldest first (the packaged prompts, or those in `directory`)."""
    out: dict[str, list[str]] = {}
    for name, version in _files(directory):
        out.setdefault(name, []).append(version)
    return {n: sorted(v, key=_version_number) for n, v in sorted(out.items())}


def load_prompt(name: str, version: str | None = None, *, directory: Path | None = None) -> Prompt:
    """Load `name` at `version` (default: the newest). `name` may carry the version: `load_prompt("report_v1")`.

    `directory` points at a folder of user prompts with the same file layout (e.g. prompts tuned for one model).
    """
    if version is None and (m := _NAMED_VERSION.fullmatch(name)):
        name, version = m.group(1), m.group(2)
    files = _files(directory)
    versions = sorted((v for (n, v) in files if n == name), key=_version_number)
    where = f"in {directory}" if directory is not None else "among the packaged prompts"
    if not versions:
        have = ", ".join(sorted({n for n, _ in files})) or "none"
        raise NotFoundError(f"no prompt named {name!r} {where} (have: {have})")
    version = version or versions[-1]
    if (name, version) not in files:
        raise NotFoundError(f"prompt {name!r} has no version {version!r} {where} (have: {', '.join(versions)})")
    entry = files[(name, version)]
    source = f"{name}_{version}.md" if directory is None else str(entry)
    prompt = _parse(entry.read_text(encoding="utf-8"), source)
    if (prompt.name, prompt.version) != (name, version):
        raise InputError(
            f"prompt file {source}: header says {prompt.name}/{prompt.version}, file name says {name}/{version}"
        )
    return prompt


__all__ = ["Prompt", "list_prompts", "load_prompt"]
