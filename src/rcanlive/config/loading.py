"""Read TOML/YAML/JSON config files into pydantic models with readable errors.

Numbers are strict: a float setting takes an integer or a float (``interval_s = 5`` is
5.0 s) but never a string (``"5.0"``) or a boolean (``true``), an integer setting takes
only an integer, and a boolean setting only ``true``/``false``. Use
:data:`pydantic.StrictFloat`, :data:`pydantic.StrictInt` and :data:`pydantic.StrictBool`
for them in every config model. Every float of a :class:`FrozenModel` must be finite:
``nan`` and ``inf`` are refused.
"""

from __future__ import annotations

import difflib
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)

#: what the config loader reads, by file suffix
CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")

#: longest rendering of a bad value in an error message
_MAX_SHOWN = 60


class FrozenModel(BaseModel):
    """Base for config models: immutable, unknown keys refused (typos are errors), and
    every float finite (``nan``/``inf`` refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def replace(self: M, **changes: Any) -> M:
        """Return a copy with ``changes`` applied and validated again."""
        return type(self).model_validate({**self.model_dump(), **changes})


class ConfigError(ValueError):
    """A config file that cannot be used; the message says what to fix."""


def _yaml_problem(exc: Exception) -> str:
    """One line for a PyYAML error: the problem and where it is."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    reason = getattr(exc, "reason", None)
    if reason and getattr(exc, "position", None) is not None:
        return f"{reason} (character {exc.character!r} at position {exc.position})"  # type: ignore[attr-defined]
    return " ".join(str(exc).split())


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON config file into a dict, without validating it.

    Raises
    ------
    ConfigError
        The file is missing, unreadable, not UTF-8 text, not valid in its format, or
        not a table of settings at the top level; the message names the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder; give the path of a config file ({suffix or '.toml'})"
        )
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(f"{path}: unknown config format {suffix!r}; use .toml, .yaml or .json")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}); "
            "save the file with UTF-8 encoding"
        ) from None
    fmt = {".toml": "TOML", ".json": "JSON"}.get(suffix, "YAML")
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
            data = {} if data is None else data
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {fmt}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid {fmt}: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a table of settings (key = value), "
            f"not a {type(data).__name__}"
        )
    return data


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``list[X]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _known_keys(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> list[str]:
    """The setting names allowed where ``loc`` points (for "did you mean")."""
    current = model
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _submodel(field.annotation)
    return list(current.model_fields) if current is not None else []


def _shown(value: Any) -> str:
    """A bad value as the config file spells it (true, not True), shortened."""
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _hint(err: Any, model: type[BaseModel] | None) -> str:
    """How to fix one pydantic error, in words."""
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(model, err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        return (
            f" (check the spelling; did you mean {close[0]}?)" if close else " (check the spelling)"
        )
    if kind == "finite_number":
        return " (nan and inf are not allowed; give a finite number)"
    if kind == "bool_type" and isinstance(given, str):
        return " (write true or false, without quotes)"
    if kind in ("float_type", "int_type") and isinstance(given, str):
        return " (write the number without quotes)"
    if kind in ("float_type", "int_type") and isinstance(given, bool):
        return " (true/false is not a number)"
    if kind == "int_type" and isinstance(given, float):
        return " (give a whole number, without a decimal point)"
    if kind == "missing":
        return " (add this setting)"
    return ""


def format_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel] | None = None
) -> str:
    """The problems of ``exc``: dotted field path, what is wrong, what was given.

    One problem makes one line (``source: field: problem; got value``); several make a
    header line and one indented line each. ``model`` (the validated model) lets an
    unknown setting suggest the closest known one.
    """
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        ctx = err.get("ctx") or {}
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif "expected" in ctx:
            msg = f"{msg} (allowed: {ctx['expected']})"
        msg += _hint(err, model)
        given = err.get("input")
        hidden = isinstance(given, dict) or err["type"] == "missing"
        shown = "" if hidden else f"; got {_shown(given)}"
        lines.append(f"{where}: {msg}{shown}")
    if len(lines) == 1:
        return f"{source}: {lines[0]}"
    return "\n".join([f"{source}: {len(lines)} invalid settings", *(f"  {ln}" for ln in lines)])


def validate_config(
    data: dict[str, Any], model: type[M], source: str | Path, **overrides: Any
) -> M:
    """Validate settings read from ``source`` into ``model``.

    ``overrides`` that are not None are merged over the top-level keys first.

    Raises
    ------
    ConfigError
        Naming each bad field of ``source``.
    """
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(source), model)) from None


def load_config(path: str | Path, model: type[M], **overrides: Any) -> M:
    """Load ``path`` into ``model``; raise :class:`ConfigError` naming each bad field.

    ``overrides`` are merged over the file's top-level keys before validation.
    """
    return validate_config(read_config(path), model, path, **overrides)


# kept for callers of the old private name
_read_mapping = read_config

__all__ = [
    "CONFIG_SUFFIXES",
    "ConfigError",
    "FrozenModel",
    "format_validation_error",
    "load_config",
    "read_config",
    "validate_config",
]
