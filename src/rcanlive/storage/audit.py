"""A full check of a dataset (``rcanlive check``) and the rebuilding of its log.

:func:`check_dataset` reads every volume the log lists and reports every problem:
missing chunks, checksum mismatches, a log missing or shorter than the run
recorded, damaged log lines, complete volumes the log does not list, restored
volumes listed but missing or altered. :func:`repair_log` rewrites ``volumes.jsonl``
from the volumes whose chunks are all on disk: a volume whose line survived is
verified against its checksums; one whose line was lost can only be found
*complete* (every chunk present), not *verified*, since its checksums were in the
lost line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dataset import LOG_NAME, Dataset, annotate
from .errors import DamagedVolume, IntegrityWarning
from .integrity import CHECKSUM_FIELD, Problem
from .lock import lock_dataset

if TYPE_CHECKING:
    from collections.abc import Callable

Key = tuple[int, int, int]
# problem kinds that --repair addresses (the log), as opposed to lost data
LOG_KINDS = frozenset({"log-missing", "log-truncated", "log-damaged", "unlogged-volume"})


def _name(key: Key) -> str:
    t, p, c = key
    return f"volume t={t} p={p} c={c}"


def _open(path: str | Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrityWarning)
        return Dataset(path)


def possible_keys(ds: Dataset) -> list[Key]:
    """Every ``(t, p, c)`` the dataset's geometry has room for, in acquisition order."""
    g = ds.meta.get("geometry", {})
    n_t, n_p, n_c = int(g.get("n_t", 1)), int(g.get("n_p", 1)), int(g.get("n_c", 1))
    if ds.kind == "live":
        return [(t, 0, c) for t in range(n_t) for c in range(n_c)]
    if ds.kind == "pairs":
        return [(t, p, c) for t in range(n_t) for p in range(n_p) for c in (0, 1)]
    return [(0, int(tile["index"]), c) for tile in ds.tile_manifest() for c in range(n_c)]


def _all_present(ds: Dataset, key: Key) -> bool:
    root = str(ds.path)
    return all(
        os.path.isfile(os.path.join(root, ch)) for plane in ds.chunk_paths(key) for ch in plane
    )


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes
    ----------
    problems
        Damage and inconsistencies; a dataset is clean when there are none.
    notes
        Facts worth knowing that are not damage (a run in progress or interrupted,
        volumes without checksums, an earlier repair).
    expected
        Volumes the run recorded it wrote (``volumes_written``), if known.
    logged, intact, verified, damaged
        Raw volumes listed in the log; of those, with every chunk on disk and no
        checksum mismatch; checked against their checksums; damaged.
    unlogged
        Complete raw volumes the log does not list.
    restored_listed, restored_intact, restored_damaged
        The same for restored volumes (``restored.jsonl``).
    """

    path: Path
    kind: str
    status: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    expected: int | None = None
    logged: int = 0
    intact: int = 0
    verified: int = 0
    damaged: int = 0
    unlogged: list[Key] = field(default_factory=list)
    restored_listed: int = 0
    restored_intact: int = 0
    restored_damaged: int = 0

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def repairable(self) -> bool:
        """Whether ``--repair`` (rebuilding the log) addresses some problem."""
        return any(p.kind in LOG_KINDS for p in self.problems)


def check_dataset(
    path: str | Path,
    *,
    verify: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Check every volume of the dataset at ``path`` and report every problem.

    Parameters
    ----------
    verify
        Read every volume and compare it with its checksums (otherwise only the
        presence of the chunks is checked).
    progress
        Called with ``(done, total)`` as volumes are checked.

    Raises
    ------
    FileNotFoundError
        ``path`` is not an rcanlive dataset.
    """
    ds = _open(path)
    report = CheckReport(ds.path, ds.kind, ds.status, expected=ds.expected_volumes())
    report.problems.extend(ds.problems)
    holder = ds.locked_by()
    _note_run_state(ds, report, holder)
    _note_repair(ds, report)
    logged = ds.logged()
    restored = {k: r for k, r in ds.restoration_records().items() if r.get("status") == "restored"}
    counter = _Counter(progress, len(logged) + len(restored))
    _check_logged(ds, logged, report, verify, counter)
    _check_unlogged(ds, logged, report, holder is not None)
    _check_restored(ds, restored, report, verify, counter)
    _check_restoration_summary(ds, report)
    return report


@dataclass
class _Counter:
    """Counts the volumes checked and reports ``(done, total)`` to ``progress``."""

    progress: Callable[[int, int], None] | None
    total: int
    done: int = 0

    def step(self) -> None:
        """One more volume checked."""
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _note_run_state(
    ds: Dataset, report: CheckReport, holder: tuple[int | None, str] | None
) -> None:
    """Note a run writing the dataset now, or one that stopped without finishing."""
    if holder is not None:
        pid, owner = holder
        report.notes.append(
            Problem(
                "in-use",
                f"{ds.path} is being written by process {pid} ({owner}): volumes still being "
                "written are not listed yet",
            )
        )
    elif ds.status == "acquiring":
        report.notes.append(
            Problem(
                "interrupted",
                "the run did not finish (killed or crashed); every volume it logged is kept, "
                "the one it was writing when it stopped is not listed",
            )
        )


def _check_logged(
    ds: Dataset,
    logged: dict[Key, dict[str, Any]],
    report: CheckReport,
    verify: bool,
    counter: _Counter,
) -> None:
    """Check every raw volume the log lists; note those without checksums."""
    unchecked = 0
    report.logged = len(logged)
    for key, record in logged.items():
        damage = _check_volume(ds, key, "raw", verify)
        if damage is None:
            report.intact += 1
            if verify and record.get(CHECKSUM_FIELD) is not None:
                report.verified += 1
            elif record.get(CHECKSUM_FIELD) is None:
                unchecked += 1
        else:
            report.damaged += 1
            report.problems.append(_damage_problem(damage, "raw"))
        counter.step()
    if unchecked:
        report.notes.append(
            Problem(
                "unverified",
                f"{unchecked} volume(s) have no checksums (written before rcanlive recorded "
                "them, or recovered by --repair): only the presence of their chunks is checked",
            )
        )


def _check_restored(
    ds: Dataset,
    restored: dict[Key, dict[str, Any]],
    report: CheckReport,
    verify: bool,
    counter: _Counter,
) -> None:
    """Check every restored volume ``restored.jsonl`` lists."""
    report.restored_listed = len(restored)
    for key in restored:
        damage = _check_volume(ds, key, "restored", verify)
        if damage is None:
            report.restored_intact += 1
        else:
            report.restored_damaged += 1
            report.problems.append(_damage_problem(damage, "restored"))
        counter.step()


def _check_volume(ds: Dataset, key: Key, image: str, verify: bool) -> DamagedVolume | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrityWarning)
        try:
            if verify:
                t, p, c = key
                ds.volume(t, p=p, c=c, image=image, verify=True)
            else:
                missing = ds.missing_chunks(key, image)
                if missing:
                    return DamagedVolume(ds.path, key, image, missing, "missing")
        except DamagedVolume as damage:
            return damage
        except (KeyError, IndexError) as exc:  # a record that does not fit the arrays
            return DamagedVolume(ds.path, key, image, [str(exc)], "missing")
    return None


def _damage_problem(damage: DamagedVolume, image: str) -> Problem:
    kinds = {
        ("raw", "missing"): "missing-chunk",
        ("raw", "checksum"): "checksum",
        ("restored", "missing"): "restored-missing",
        ("restored", "checksum"): "restored-checksum",
        ("raw", "unreadable"): "unreadable-chunk",
        ("restored", "unreadable"): "restored-unreadable",
    }
    many = len(damage.chunks) > 1
    what = {
        "missing": ("is missing", "are missing"),
        "checksum": ("does not match its checksum", "do not match their checksums"),
        "unreadable": ("cannot be decoded", "cannot be decoded"),
    }[damage.reason][1 if many else 0]
    hint = "; `rcanlive restore DATASET --only-missing` restores it again"
    message = (
        f"{image} {_name(damage.key)}: {'chunks' if many else 'chunk'} "
        f"{', '.join(damage.chunks)} {what}{hint if image == 'restored' else ''}"
    )
    return Problem(
        kinds[(image, damage.reason)],
        message,
        damage.key,
        damage.chunks[0] if damage.chunks else None,
    )


def _check_unlogged(
    ds: Dataset, logged: dict[Key, dict[str, Any]], report: CheckReport, in_use: bool
) -> None:
    """Complete volumes on disk that the log does not list."""
    for key in possible_keys(ds):
        if key in logged:
            continue
        try:
            if _all_present_fast(ds, key):
                report.unlogged.append(key)
        except (KeyError, IndexError):
            continue
    if not report.unlogged or in_use:
        return
    # a killed run may leave the volume it was logging complete but unlisted
    if ds.status == "acquiring" and len(report.unlogged) == 1:
        report.notes.append(
            Problem(
                "unlogged-volume",
                f"{_name(report.unlogged[0])} is complete on disk but not in {LOG_NAME} (the "
                "run stopped while logging it); --repair adds it, unverified",
                report.unlogged[0],
            )
        )
        return
    for key in report.unlogged:
        report.problems.append(
            Problem(
                "unlogged-volume",
                f"{_name(key)} is complete on disk but not listed in {LOG_NAME}; --repair adds "
                "it (complete, but unverified: its checksums were in the lost log lines)",
                key,
            )
        )


def _all_present_fast(ds: Dataset, key: Key) -> bool:
    per_plane = ds.chunk_paths(key)
    root = str(ds.path)
    if not per_plane or not all(os.path.isfile(os.path.join(root, ch)) for ch in per_plane[0]):
        return False
    return _all_present(ds, key)


def _check_restoration_summary(ds: Dataset, report: CheckReport) -> None:
    summary = ds.meta.get("restoration")
    if not isinstance(summary, dict) or not isinstance(summary.get("restored"), int):
        return
    if report.restored_listed < summary["restored"]:
        report.problems.append(
            Problem(
                "restored-log",
                f"the run restored {summary['restored']} volume(s) but restored.jsonl lists "
                f"{report.restored_listed}: the others are not shown; `rcanlive restore DATASET "
                "--only-missing` restores them again",
            )
        )


def _note_repair(ds: Dataset, report: CheckReport) -> None:
    repaired = ds.meta.get("repaired")
    if not isinstance(repaired, dict):
        return
    lost = repaired.get("lost") or []
    before = repaired.get("written_before")
    of = f" of the {before} the run wrote" if before else ""
    text = (
        f"the log was rebuilt on {repaired.get('date', '?')}: {repaired.get('volumes', '?')} "
        f"volume(s){of}, {repaired.get('verified', '?')} verified, "
        f"{repaired.get('unverified', '?')} complete but unverified"
    )
    if lost:
        shown = ", ".join(_name(tuple(k)) for k in lost[:5])  # type: ignore[arg-type]
        text += f"; {len(lost)} volume(s) were lost ({shown}{', ...' if len(lost) > 5 else ''})"
    report.notes.append(Problem("repaired", text))


@dataclass(frozen=True, slots=True)
class RepairResult:
    """What :func:`repair_log` did.

    Attributes
    ----------
    volumes
        Volumes in the rebuilt log.
    verified
        Of those, checked against checksums that survived in the old log.
    unverified
        Of those, complete (every chunk on disk) but without checksums to check.
    lost
        Volumes the old log listed (or the run recorded) that are not in the new one.
    backup
        The old log, kept as ``volumes.jsonl.bak`` (``None`` if there was none).
    """

    path: Path
    volumes: int
    verified: int
    unverified: int
    lost: list[Key]
    backup: Path | None

    def summary(self) -> str:
        """One sentence."""
        text = (
            f"rebuilt {LOG_NAME}: {self.volumes} volume(s), {self.verified} verified against "
            f"their checksums, {self.unverified} complete but unverified"
        )
        if self.unverified:
            text += " (their checksums were lost with the log lines: only complete, not verified)"
        if self.lost:
            text += f"; {len(self.lost)} volume(s) could not be recovered"
        return text


def _recovered_record(ds: Dataset, key: Key) -> dict[str, Any]:
    """A log record for a volume found complete on disk, from what the dataset knows."""
    t, p, c = key
    g = ds.meta.get("geometry", {})
    channels = list(ds.meta.get("channels") or g.get("channels") or [])
    xy = [0.0, 0.0]
    if ds.kind == "tile":
        tile = next((e for e in ds.tile_manifest() if int(e["index"]) == p), {})
        xy = [float(tile.get("x_um", 0.0)), float(tile.get("y_um", 0.0))]
    interval = float(g.get("interval_s", 0.0) or 0.0) if ds.kind == "live" else 0.0
    return {
        "t": t,
        "p": p,
        "c": c,
        "channel": channels[c] if c < len(channels) else str(c),
        "z_um": [],
        "xy_um": xy,
        "elapsed_s": round(t * interval, 4),
        "recovered": "complete",  # chunks all present; no checksum to verify them
    }


def repair_log(path: str | Path, *, owner: str = "rcanlive check --repair") -> RepairResult:
    """Rewrite ``volumes.jsonl`` from the volumes whose chunks are complete.

    Takes the dataset's lock (refused while a run writes it). A volume whose line
    survived and carries checksums is kept only if it verifies; a volume whose line
    was lost is added if every chunk is on disk, marked ``"recovered": "complete"``
    (no checksum survived to verify it; its z positions are unknown and its time is
    estimated from the plan's interval). The old log is kept as ``volumes.jsonl.bak``
    and the repair is recorded in the root attributes (``repaired``).

    Raises
    ------
    DatasetLocked
        A process is writing the dataset.
    """
    root = Path(path)
    with lock_dataset(root, owner):
        ds = _open(root)
        old = ds.logged()
        written = ds.expected_volumes() or 0
        keep, verified, unverified, lost = _sort_volumes(ds, old)
        backup = _write_log(root, keep)
        result = RepairResult(root, len(keep), verified, unverified, lost, backup)
        annotate(
            root,
            repaired={
                "date": dt.datetime.now().isoformat(timespec="seconds"),
                "volumes": len(keep),
                "verified": verified,
                "unverified": unverified,
                "lost": [list(k) for k in lost],
                "written_before": written,
            },
        )
        return result


def _sort_volumes(
    ds: Dataset, old: dict[Key, dict[str, Any]]
) -> tuple[list[dict[str, Any]], int, int, list[Key]]:
    """Records to keep, how many verified and unverified, and the volumes lost."""
    keep: list[dict[str, Any]] = []
    verified = unverified = 0
    lost: list[Key] = []
    for key in possible_keys(ds):
        record = old.get(key)
        try:
            if record is not None and record.get(CHECKSUM_FIELD) is not None:
                if _check_volume(ds, key, "raw", verify=True) is None:
                    keep.append(record)
                    verified += 1
                else:
                    lost.append(key)
                continue
            if _all_present_fast(ds, key):
                keep.append(record if record is not None else _recovered_record(ds, key))
                unverified += 1
            elif record is not None:
                lost.append(key)
        except (KeyError, IndexError):
            continue
    return keep, verified, unverified, lost


def _write_log(root: Path, keep: list[dict[str, Any]]) -> Path | None:
    """Back up the old log, then replace it atomically by ``keep``; return the backup."""
    log = root / LOG_NAME
    backup = None
    if log.exists():
        backup = root / f"{LOG_NAME}.bak"
        shutil.copy2(log, backup)
    tmp = root / f"{LOG_NAME}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, log)
    return backup
