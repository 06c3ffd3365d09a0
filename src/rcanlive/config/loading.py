"""Read TOML/YAML/JSON config files into pydantic models with readable errors."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class FrozenModel(BaseModel):
    """Base for config models: immutable, unknown keys refused (typos are errors)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def replace(self: M, **changes: Any) -> M:
        """Return a copy with ``changes`` applied and validated again."""
        return type(self).model_validate({**self.model_dump(), **changes})


class ConfigError(ValueError):
    """A config file that cannot be used; the message says what to fix."""


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(
                f"{path}: unknown config format {suffix!r}; use .toml, .yaml or .json"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of settings")
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: dotted field path, what was given, what is allowed."""
    lines = [f"{source}: {exc.error_count()} invalid setting(s)"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        ctx = err.get("ctx") or {}
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling)"
        elif "expected" in ctx:
            msg = f"{msg} (allowed: {ctx['expected']})"
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f"; got {given!r}"
        lines.append(f"  {where}: {msg}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path, model: type[M], **overrides: Any) -> M:
    """Load ``path`` into ``model``; raise :class:`ConfigError` naming each bad field.

    ``overrides`` are merged over the file's top-level keys before validation.
    """
    path = Path(path)
    data = _read_mapping(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
