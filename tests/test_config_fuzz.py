"""Fuzz the config loaders with random mutations of every shipped config file.

Each case mutates a file from ``configs/`` (and the rig files in ``devices/``): values
of the wrong type, numbers out of range, nan/inf, keys deleted, added or renamed,
invalid bytes and encodings, truncation. It is then loaded by the real loaders and, for
experiment configs, prepared against the simulated rig. Every case must end in either a
valid plan or a clear error (:class:`ConfigError`, :class:`PlanError`, the CLI's
:class:`UserError`) that names the file; never in another exception.

The seed is fixed: a failure names its case, which reruns identically.
"""

from __future__ import annotations

import copy
import json
import math
import random
import tomllib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from rcanlive.acquisition.plans import PlanError, prepare
from rcanlive.cli.app import UserError
from rcanlive.config import ConfigError, load_config
from rcanlive.config.experiment import PLAN_TYPES, load_plan
from rcanlive.config.rig import load_rig
from rcanlive.config.training import TrainingConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from rcanlive.acquisition.plans import PreparedPlan
    from rcanlive.config.rig import RigConfig

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(
    p for p in (ROOT / "configs").rglob("*") if p.suffix in (".toml", ".yaml", ".yml", ".json")
)
RIGS = sorted((ROOT / "devices").glob("*.rig.toml"))
SEED = 1234
CASES_PER_FILE = 50
CLEAR_ERRORS = (ConfigError, PlanError, UserError)

Path_ = tuple[str | int, ...]
#: what a mutation did, and what must become of a valid config mutated only so:
#: "refused", "valid", or None (it depends)
Mutation = tuple[str, str | None]


# -- what each file is and how the application loads it ------------------------------


def target_of(path: Path) -> str:
    """``live``/``pairs``/``tile`` (experiment), ``rig`` or ``train``."""
    if path.name.endswith(".rig.toml"):
        return "rig"
    kind = tomllib.loads(path.read_text(encoding="utf-8")).get("kind")
    return kind if kind in PLAN_TYPES else "train"


def check_prepared(prepared: PreparedPlan, rig: RigConfig) -> None:
    """A valid plan is usable all the way: finite numbers, AOTF values in range."""
    assert prepared.n_frames >= 1 and math.isfinite(prepared.duration_s())
    assert prepared.describe()
    for preset in prepared.presets:
        table = rig.laser(preset.line_nm).calibration
        assert math.isfinite(preset.power_mw) and math.isfinite(preset.intensity_w_cm2), preset
        assert table[0][0] <= preset.aotf_value <= table[-1][0], preset


def load_and_prepare(path: Path, target: str, rig: RigConfig) -> str:
    """Load ``path`` as the application does; return what became of it."""
    if target in PLAN_TYPES:
        plan = load_plan(path, target)
        if plan.simulation is not None:  # as `rcanlive acquire --simulate` does
            rig = rig.replace(simulation=plan.simulation.model_dump())
        check_prepared(prepare(plan, rig), rig)
        json.loads(plan.model_dump_json())
        return f"valid {target} plan"
    if target == "rig":
        rig = load_rig(path)
        check_prepared(prepare(load_plan(ROOT / "configs" / "live-4d.toml", "live"), rig), rig)
        return "valid rig"
    config = load_config(path, TrainingConfig)
    json.loads(config.model_dump_json())
    return "valid training config"


# -- mutations of the parsed settings ------------------------------------------------

NUMBERS: list[Any] = [0, -1, 1, -0.0, 0.5, 3, 1e-300, 1e300, -1e300, 10**20, -(10**20), 2**64 + 1]
NON_FINITE = [math.nan, math.inf, -math.inf]
OTHERS: list[Any] = [
    "5",
    "5.0",
    "",
    "true",
    "nan",
    True,
    False,
    [],
    [1, 2],
    [[0.0, 0.0]],
    {},
    {"x": 1},
    "x" * 300,
    "üñí ✓",
    "../../etc",
]


def _pick(rng: random.Random, values: list[Any]) -> Any:
    """A copy of one of ``values`` (later mutations must not reach the shared lists)."""
    return copy.deepcopy(rng.choice(values))


def _paths(data: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key path in ``data`` (tables and list items included)."""
    out: list[Path_] = []
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        here = (*prefix, key)
        out.append(here)
        if isinstance(value, dict | list):
            out.extend(_paths(value, here))
    return out


def _parent(data: Any, path: Path_) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


def _leaves(data: Any) -> list[Path_]:
    return [p for p in _paths(data) if not isinstance(_parent(data, p)[p[-1]], dict | list)]


def _numbers(data: Any) -> list[Path_]:
    return [
        p
        for p in _leaves(data)
        if isinstance(_parent(data, p)[p[-1]], int | float)
        and not isinstance(_parent(data, p)[p[-1]], bool)
    ]


def _tables(data: dict[str, Any]) -> list[Path_]:
    return [()] + [p for p in _paths(data) if isinstance(_parent(data, p)[p[-1]], dict)]


def _get(data: Any, path: Path_) -> Any:
    return data if not path else _parent(data, path)[path[-1]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def change_type(rng: random.Random, data: dict[str, Any]) -> Mutation:
    """A value of another type; refused unless an int and a float trade places."""
    leaves = _leaves(data)
    if not leaves:
        return "no leaf", None
    path = rng.choice(leaves)
    old = _get(data, path)
    new = _pick(rng, [v for v in [*OTHERS, *NUMBERS] if type(v) is not type(old)])
    if _is_number(old) and rng.random() < 0.5:
        new = rng.choice([str(old), True, False, [old], {"value": old}])
    _parent(data, path)[path[-1]] = new
    return f"type {path} = {new!r:.40}", None if _is_number(old) and _is_number(new) else "refused"


def out_of_range(rng: random.Random, data: dict[str, Any]) -> Mutation:
    paths = _numbers(data)
    if not paths:
        return "no number", None
    path = rng.choice(paths)
    old = _get(data, path)
    scaled = [old * 10**k for k in (-6, 3, 6)] + [-old, old + 1, old - 1]
    new = rng.choice([*NUMBERS, *scaled])
    _parent(data, path)[path[-1]] = new
    return f"range {path} = {new!r:.40}", None


def non_finite(rng: random.Random, data: dict[str, Any]) -> Mutation:
    """nan or ±inf for a number: always refused."""
    paths = _numbers(data)
    if not paths:
        return "no number", None
    path = rng.choice(paths)
    _parent(data, path)[path[-1]] = new = rng.choice(NON_FINITE)
    return f"non-finite {path} = {new!r}", "refused"


def delete_key(rng: random.Random, data: dict[str, Any]) -> Mutation:
    paths = [p for p in _paths(data) if isinstance(p[-1], str)]
    path = rng.choice(paths)
    del _parent(data, path)[path[-1]]
    return f"delete {path}", None


def add_key(rng: random.Random, data: dict[str, Any]) -> Mutation:
    """A key no model has: always refused (typos are errors)."""
    table = _get(data, rng.choice(_tables(data)))
    key = rng.choice(["extra", "Exposure_ms", "interval", "comment", "kind2", ""])
    table[key] = _pick(rng, [*OTHERS, *NUMBERS])
    return f"add {key!r}", "refused"


def rename_key(rng: random.Random, data: dict[str, Any]) -> Mutation:
    paths = [p for p in _paths(data) if isinstance(p[-1], str)]
    path = rng.choice(paths)
    parent, key = _parent(data, path), str(path[-1])
    new = rng.choice([key + "s", key.upper(), key[:-1], key.replace("_", "-"), "_" + key])
    if new in parent:
        return f"rename {path} (taken)", None
    parent[new] = parent.pop(key)
    return f"rename {path} -> {new!r}", None


def change_list(rng: random.Random, data: dict[str, Any]) -> Mutation:
    lists = [p for p in _paths(data) if isinstance(_get(data, p), list)]
    if not lists:
        return "no list", None
    path = rng.choice(lists)
    items = _get(data, path)
    choice = rng.randrange(4)
    if choice == 0:
        items.clear()
    elif choice == 1 and items:
        items.pop(rng.randrange(len(items)))
    elif choice == 2 and items:
        items.append(json.loads(json.dumps(items[-1])))
    else:
        items.append(_pick(rng, OTHERS))
    return f"list {path} op {choice}", None


def change_kind(rng: random.Random, data: dict[str, Any]) -> Mutation:
    data["kind"] = new = rng.choice(["live", "pairs", "tile", "tiles", "", 1])
    return f"kind = {new!r}", None


def int_for_float(rng: random.Random, data: dict[str, Any]) -> Mutation:
    """``50.0`` written ``50``: an integer is a valid float setting."""
    paths = [
        p for p in _numbers(data) if isinstance(_get(data, p), float) and _get(data, p) % 1 == 0
    ]
    if not paths:
        return "no whole float", None
    path = rng.choice(paths)
    _parent(data, path)[path[-1]] = int(_get(data, path))
    return f"int for float {path}", "valid"


def unchanged(rng: random.Random, data: dict[str, Any]) -> Mutation:
    """The same settings (written as TOML, YAML or JSON): still valid."""
    return "unchanged", "valid"


STRUCTURAL: list[Callable[[random.Random, dict[str, Any]], Mutation]] = [
    change_type,
    out_of_range,
    out_of_range,
    non_finite,
    delete_key,
    add_key,
    rename_key,
    change_list,
    change_kind,
    int_for_float,
    unchanged,
]


# -- writers: the mutated settings back into a file ------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (ASCII, \\u escapes)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(value)


def dump(data: dict[str, Any], fmt: str) -> bytes:
    """``data`` as a TOML (inline tables), YAML or JSON file."""
    if fmt == "toml":
        return "\n".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items()).encode()
    if fmt == "yaml":
        return yaml.safe_dump(data, allow_unicode=True).encode()
    return json.dumps(data).encode()


# -- mutations of the bytes ----------------------------------------------------------------


def mutate_bytes(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    at = rng.randrange(len(raw) + 1)
    lines = raw.split(b"\n")
    line = rng.randrange(len(lines))
    choice = rng.randrange(9)
    if choice == 0:
        return raw[:at], f"truncate at {at}"
    if choice == 1:
        bad = rng.choice([b"\xff", b"\xc3\x28", b"\xe9", b"\x80\x80", b"\xed\xa0\x80"])
        return raw[:at] + bad + raw[at:], f"invalid utf-8 {bad!r} at {at}"
    if choice == 2 and raw:
        i = rng.randrange(len(raw))
        return raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1 :], f"flip {i}"
    if choice == 3:
        return raw[:at] + b"\x00" + raw[at:], f"NUL at {at}"
    if choice == 4:
        del lines[line]
        return b"\n".join(lines), f"delete line {line}"
    if choice == 5:
        lines.insert(line, lines[line])
        return b"\n".join(lines), f"duplicate line {line}"
    if choice == 6:
        junk = rng.choice([b"[", b"]]", b"=", b'"', b"key", b" = = ", b"{", b"\t- x:"])
        return raw[:at] + junk + raw[at:], f"junk {junk!r} at {at}"
    if choice == 7:
        return raw.decode("utf-8", "replace").encode("utf-16"), "utf-16"
    text = raw.decode("utf-8", "replace").replace("µ", "é")
    return text.encode("latin-1", "replace") + b"# caf\xe9\n", "latin-1"


# -- the fuzz ------------------------------------------------------------------------------


def make_case(rng: random.Random, source: Path) -> tuple[bytes, str, str, str | None]:
    """A mutated copy of ``source``: (contents, file suffix, what was done, what must
    become of it: "valid", "refused" or None).

    Settings are mutated (most cases), written back as TOML, YAML or JSON, and then the
    bytes may be damaged too (some cases).
    """
    raw = source.read_bytes()
    suffix, done, expected = source.suffix, [], None
    if rng.random() < 0.7:
        data = tomllib.loads(raw.decode())
        mutations = [rng.choice(STRUCTURAL)(rng, data) for _ in range(rng.choice((1, 1, 2, 3)))]
        done = [what for what, _ in mutations]
        # with several mutations a later one may undo an earlier one (a key deleted)
        expected = mutations[0][1] if len(mutations) == 1 else None
        fmt = rng.choices(["toml", "yaml", "json"], weights=(6, 2, 2))[0]
        raw, suffix = dump(data, fmt), "." + fmt
    if not done or rng.random() < 0.2:
        raw, what = mutate_bytes(rng, raw)
        done.append(what)
        expected = None
    return raw, suffix, "; ".join(done), expected


@pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy/scipy overflow: a bug
@pytest.mark.parametrize(
    "source",
    [*SHIPPED, *RIGS],
    ids=[str(p.relative_to(ROOT)) for p in [*SHIPPED, *RIGS]],
)
def test_mutated_config_is_valid_or_clearly_refused(
    source: Path, sim_rig_config: RigConfig, tmp_path: Path
) -> None:
    target = target_of(source)
    # the unmutated file is valid
    assert load_and_prepare(source, target, sim_rig_config).startswith("valid")
    rng = random.Random(SEED * 1000 + [*SHIPPED, *RIGS].index(source))
    outcomes: Counter[str] = Counter()
    failures = []
    for case in range(CASES_PER_FILE):
        contents, suffix, done, expected = make_case(rng, source)
        path = tmp_path / f"case{case:03d}{'.rig' if target == 'rig' else ''}{suffix}"
        path.write_bytes(contents)
        try:
            outcome = load_and_prepare(path, target, sim_rig_config)
            outcomes[outcome] += 1
            if expected == "refused":
                failures.append(f"case {case} ({done}): accepted as a {outcome}")
        except CLEAR_ERRORS as exc:
            message = str(exc)
            if isinstance(exc, ConfigError) and str(path) not in message:
                failures.append(f"case {case} ({done}): the error does not name the file: {exc}")
            if expected == "valid":
                failures.append(f"case {case} ({done}): refused: {exc}")
            outcomes[f"refused: {type(exc).__name__}"] += 1
        except Exception as exc:  # every other exception is a bug
            failures.append(
                f"case {case} ({done}): {type(exc).__name__}: {exc}\n"
                f"--- {path.name}\n{contents[:2000]!r}"
            )
    print(f"{source.relative_to(ROOT)}: {dict(sorted(outcomes.items()))}")
    assert not failures, "\n".join(failures)
    valid = sum(n for what, n in outcomes.items() if what.startswith("valid"))
    # the mutations reach past the parser: some cases stay valid, most are refused
    assert 0 < valid < CASES_PER_FILE, outcomes
