"""rcanlive datasets: one OME-Zarr (NGFF 0.5, zarr v3) group per acquisition.

Layout::

    NAME.ome.zarr/
      zarr.json          root attrs ``rcanlive``: kind, plan, rig, status, summary
      raw/               live: NGFF image (t, c, z, y, x) uint16
      restored/          live: NGFF image (t, c, z, y, x) float32 (when restoring)
      pairs/low, high    pairs: NGFF images (n, 1, z, y, x); n = t·M + p
      tiles/0000, ...    tiling: NGFF image (c, z, y, x) per tile, translated to
                         its stage position; manifest in ``tiles`` attrs
      volumes.jsonl      append-only log, one line per volume fully written
      .rcanlive.lock     flock held by the process writing the dataset (its PID)

Volumes are written plane by plane with tensorstore, whose C++ I/O threads run without
the GIL (4× zarr-python's throughput here, see ``benchmarks/RESULTS.md``); every array
is created, and read back, with zarr-python.

Crash safety: each chunk is written atomically (temp file + rename) and a volume's
line is appended to ``volumes.jsonl`` (flushed and fsynced) only after all of its
chunks are on disk; metadata documents are rewritten only at creation and at the
end. A run killed at any moment therefore leaves a dataset that opens, and every
volume listed in the log is complete.

Integrity: a volume's line carries a CRC-32 of each of its planes (``crc32``), and
readers never turn a missing chunk into zeros: :class:`Dataset` leaves out (with an
:class:`~.errors.IntegrityWarning`) every logged volume whose chunks are not all on
disk, and :meth:`Dataset.volume` verifies the checksums of what it reads, raising
:class:`~.errors.DamagedVolume` for a damaged volume. ``rcanlive check`` reports every
problem (:mod:`.audit`).

Exclusive writing: :class:`DatasetWriter` holds an OS lock on the dataset
(:mod:`.lock`) from before anything is deleted or created until :meth:`~DatasetWriter.finish`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import tensorstore as ts
import zarr

from .. import __version__
from .errors import DamagedVolume, DatasetExists, IntegrityWarning
from .integrity import (
    CHECKSUM_FIELD,
    Problem,
    fill_plane_checksum,
    plane_checksum,
    plane_checksums,
    volume_chunks,
)
from .journal import RESTORED_LOG, VOLUMES_LOG, Journal, key_of, read_journal
from .layout import RAW_TILES, VolumeKey, raw_images, tile_image, tile_name, volume_location
from .lock import LOCK_NAME, DatasetLock, locked_by
from .ngff import create_image

if TYPE_CHECKING:
    from .volume import Volume

Kind = Literal["live", "pairs", "tile"]
Key = tuple[int, int, int]
LOG_NAME = VOLUMES_LOG
# One I/O pool shared by every writer. Each chunk is fsynced before its volume is
# logged, so the log never lists a volume a power cut could take back.
_TS_CONTEXT = ts.Context({"file_io_concurrency": {"limit": 4}, "file_io_sync": True})
# Damaged volumes named one warning each when a dataset is opened, then one summary.
_WARN_EACH = 10


@dataclass(frozen=True, slots=True)
class Geometry:
    """Acquisition geometry shared by every volume of a dataset."""

    planes: int
    height: int
    width: int
    pixel_size_um: float
    z_step_um: float
    n_t: int = 1
    n_p: int = 1
    n_c: int = 1
    interval_s: float = 1.0
    channels: tuple[str, ...] = ()


def _has_content(path: Path) -> bool:
    """Whether ``path`` holds anything besides the lock file."""
    with os.scandir(path) as entries:
        return any(entry.name != LOCK_NAME for entry in entries)


def _clear(path: Path) -> None:
    """Delete everything in ``path`` except the lock file (which must stay: see
    :mod:`.lock`)."""
    with os.scandir(path) as entries:
        for entry in list(entries):
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


class DatasetWriter:
    """Writes volumes into a new dataset as they arrive (thread-safe).

    The dataset is locked (:class:`~.lock.DatasetLock`) for this writer's lifetime,
    before anything is deleted or created, and released by :meth:`finish`.

    Raises
    ------
    DatasetLocked
        Another process (or writer) is writing the dataset, with or without
        ``overwrite``.
    DatasetExists
        The dataset exists and ``overwrite`` is false (a ``FileExistsError``).
    """

    def __init__(
        self,
        path: str | Path,
        kind: Kind,
        geometry: Geometry,
        *,
        plan: dict[str, Any],
        rig: dict[str, Any],
        compression: str = "none",
        tiles: list[dict[str, Any]] | None = None,
        overwrite: bool = False,
        owner: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock: DatasetLock | None = DatasetLock(self.path, owner).acquire()
        try:
            if _has_content(self.path):
                if not overwrite:
                    raise DatasetExists(self.path)
                _clear(self.path)
            self._create(kind, geometry, plan, rig, compression, tiles)
        except BaseException:
            self.lock.release()
            raise

    def _create(
        self,
        kind: Kind,
        geometry: Geometry,
        plan: dict[str, Any],
        rig: dict[str, Any],
        compression: str,
        tiles: list[dict[str, Any]] | None,
    ) -> None:
        self.kind = kind
        self.geometry = g = geometry
        self._lock = threading.Lock()
        self.written: list[tuple[int, int, int]] = []
        self.root = zarr.create_group(
            self.path,
            zarr_format=3,
            attributes={
                "rcanlive": {
                    "version": __version__,
                    "kind": kind,
                    "status": "acquiring",
                    "created": dt.datetime.now().isoformat(timespec="seconds"),
                    "plan": plan,
                    "rig": rig,
                    "channels": list(g.channels),
                    "pixel_size_um": g.pixel_size_um,
                    "z_step_um": g.z_step_um,
                    "geometry": asdict(g),
                    "checksum": "crc32 per plane, little-endian C order, in volumes.jsonl",
                }
            },
        )
        self._arrays: dict[str, zarr.Array] = _create_images(self.root, kind, g, compression, tiles)
        self._log = open(self.path / LOG_NAME, "a", encoding="utf-8")
        self._stores: dict[str, ts.TensorStore] = {}

    def _store(self, name: str) -> ts.TensorStore:
        """Tensorstore handle on array ``name`` (opened on first use, then kept)."""
        store = self._stores.get(name)
        if store is None:
            arr = self._arrays[name]
            spec = {
                "driver": "zarr3",
                "kvstore": {"driver": "file", "path": str(self.path / arr.path)},
                # a plane of zeros is a chunk too: readers require every chunk
                "store_data_equal_to_fill_value": True,
            }
            store = self._stores[name] = ts.open(spec, open=True, context=_TS_CONTEXT).result()
        return store

    def _target(self, v: Volume) -> tuple[str, tuple[Any, ...]]:
        array, index = volume_location(self.kind, v.key, "raw", self.geometry.n_p)
        return array.removesuffix("/0"), index

    def write(self, volume: Volume) -> None:
        """Write one volume, then log it as complete with its planes' checksums."""
        name, where = self._target(volume)
        expected = self._arrays[name].shape[len(where) :]
        if volume.shape != expected:
            raise ValueError(
                f"volume {volume.key} has shape {volume.shape}, dataset expects {expected}"
            )
        store = self._store(name)
        # plane by plane (a plane is a chunk), never stacked; volumes are read-only,
        # so tensorstore may keep referencing the frames instead of copying them
        writes = [
            store[(*where, z)].write(plane, can_reference_source_data_indefinitely=True)
            for z, plane in enumerate(volume.planes)
        ]
        # checksums while tensorstore's threads write (zlib releases the GIL)
        checksums = plane_checksums(volume.planes)
        for w in writes:
            w.result()
        record = {
            "t": volume.t,
            "p": volume.p,
            "c": volume.c,
            "channel": volume.channel,
            "z_um": list(volume.z_um),
            "xy_um": list(volume.xy_um),
            "elapsed_s": round(volume.elapsed_s, 4),
            **{k: v for k, v in volume.meta.items() if isinstance(v, (int, float, str, list))},
            CHECKSUM_FIELD: checksums,
        }
        with self._lock:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
            os.fsync(self._log.fileno())
            self.written.append(volume.key)

    def detach_lock(self) -> DatasetLock | None:
        """Hand the dataset's lock over to the caller, who must release it.

        For a consumer that keeps writing into the dataset after :meth:`finish` (live
        restoration draining its queue): :meth:`finish` then leaves the lock held.
        """
        lock, self.lock = self.lock, None
        return lock

    def finish(self, status: str, **summary: Any) -> None:
        """Record the final status and summary in the root attributes; close the log;
        release the lock (unless :meth:`detach_lock` handed it over).

        The lock is released and the log closed even if the attributes cannot be
        written (a full disk); that error is raised afterwards.
        """
        with self._lock:
            try:
                attrs: dict[str, Any] = dict(self.root.attrs["rcanlive"])  # type: ignore[arg-type]
                attrs.update(
                    status=status,
                    summary=summary,
                    finished=dt.datetime.now().isoformat(timespec="seconds"),
                    volumes_written=len(self.written),
                )
                self.root.attrs["rcanlive"] = attrs
            finally:
                try:
                    if not self._log.closed:
                        self._log.close()
                finally:
                    if self.lock is not None:
                        self.lock.release()


def annotate(path: str | Path, **entries: Any) -> None:
    """Merge ``entries`` into a finished dataset's root ``rcanlive`` attributes."""
    root = zarr.open_group(Path(path), mode="r+")
    attrs: dict[str, Any] = dict(root.attrs["rcanlive"])  # type: ignore[arg-type]
    attrs.update(entries)
    root.attrs["rcanlive"] = attrs


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of ``volumes.jsonl`` as written (damaged lines and a torn last line are
    skipped). The chunks are not checked: :attr:`Dataset.volumes` lists the volumes
    that are actually on disk."""
    return read_journal(Path(path) / LOG_NAME)


class Dataset:
    """Read access to an rcanlive dataset that never serves a damaged volume.

    Opening reads ``volumes.jsonl`` and checks that the chunks of every volume it
    lists are on disk; a volume with a missing chunk is left out with an
    :class:`~.errors.IntegrityWarning` naming it and the chunk. A log that is
    missing or shorter than the ``volumes_written`` the run recorded is reported
    the same way (see :attr:`problems`). Volumes logged after opening (a run still
    writing) are picked up by :meth:`refresh`, which :meth:`volume` calls for a key
    it does not know, reading only the lines appended since.

    Parameters
    ----------
    path
        The dataset (``NAME.ome.zarr``).

    Attributes
    ----------
    problems
        What was wrong with the log when the dataset was opened.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(
                f"{self.path} is not an rcanlive OME-Zarr dataset (no zarr.json)"
            )
        self.root = zarr.open_group(self.path, mode="r")
        meta = self.root.attrs.get("rcanlive")
        if not isinstance(meta, dict):
            raise FileNotFoundError(f"{self.path} is an OME-Zarr group but not an rcanlive dataset")
        self.meta: dict[str, Any] = meta
        self.kind: Kind = meta["kind"]
        self.problems: list[Problem] = []
        self._journal = Journal(self.path / LOG_NAME)
        self._restored_journal = Journal(self.path / RESTORED_LOG)
        self._restored: dict[Key, dict[str, Any]] = {}
        self._records: dict[Key, dict[str, Any]] = {}
        self._damaged: dict[Key, DamagedVolume] = {}
        self._arrays: dict[str, zarr.Array] = {}
        self._chunks: dict[tuple[Key, str], list[tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._new: list[dict[str, Any]] = []
        damaged = self._refresh()
        self.problems.extend(self._log_problems())
        for problem in self.problems:
            warnings.warn(problem.message, IntegrityWarning, stacklevel=3)
        self._warn_damaged(damaged)

    # -- the log -----------------------------------------------------------------

    @property
    def status(self) -> str:
        return str(self.meta.get("status", "unknown"))

    @property
    def volumes(self) -> list[dict[str, Any]]:
        """Records of the complete volumes (all chunks on disk, none found damaged),
        in log order. A new list at every access."""
        with self._lock:
            return [r for k, r in self._records.items() if k not in self._damaged]

    @property
    def damaged(self) -> dict[Key, DamagedVolume]:
        """Logged volumes found damaged so far (missing chunks at open, checksum
        mismatches when read), by ``(t, p, c)``."""
        with self._lock:
            return dict(self._damaged)

    def keys(self) -> list[Key]:
        """``(t, p, c)`` of :attr:`volumes`."""
        return [key_of(r) for r in self.volumes]

    def logged(self) -> dict[Key, dict[str, Any]]:
        """Every record of the log (damaged volumes included), by ``(t, p, c)``."""
        with self._lock:
            return dict(self._records)

    @property
    def journal(self) -> Journal:
        """The incremental reader of ``volumes.jsonl`` (its damaged lines, torn tail)."""
        return self._journal

    def refresh(self) -> list[dict[str, Any]]:
        """Read the volumes logged since the last read; return the complete ones.

        Only the lines appended since are read (the file offset is kept). New
        volumes with a missing chunk are left out with a warning.
        """
        damaged = self._refresh()
        self._warn_damaged(damaged)
        with self._lock:
            return [r for r in self._new if key_of(r) not in self._damaged]

    def _refresh(self) -> list[DamagedVolume]:
        with self._lock:
            resets = self._journal.resets
            new = self._journal.read_new()
            if self._journal.resets != resets:  # the log was rebuilt: start over
                self._records.clear()
                self._damaged.clear()
                new = list(self._journal.records)
            damaged = []
            fresh = []
            for record in new:
                key = key_of(record)
                try:
                    missing = self._missing_chunks(key, "raw", record.get(CHECKSUM_FIELD))
                except (KeyError, IndexError, TypeError, ValueError) as exc:
                    self.problems.append(
                        Problem(
                            "record",
                            f"{LOG_NAME} lists {_name(key)}, which does not fit the dataset "
                            f"({exc})",
                            key,
                        )
                    )
                    continue
                self._records[key] = record
                fresh.append(record)
                if missing:
                    damage = DamagedVolume(self.path, key, "raw", missing, "missing")
                    self._damaged[key] = damage
                    damaged.append(damage)
            self._new = fresh
            return damaged

    def _warn_damaged(self, damaged: list[DamagedVolume]) -> None:
        for damage in damaged[:_WARN_EACH]:
            warnings.warn(str(damage), IntegrityWarning, stacklevel=3)
        if len(damaged) > _WARN_EACH:
            warnings.warn(
                f"{len(damaged) - _WARN_EACH} more damaged volume(s) in {self.path} are left "
                "out; run `rcanlive check` on the dataset for the list",
                IntegrityWarning,
                stacklevel=3,
            )

    def expected_volumes(self) -> int | None:
        """How many volumes the run recorded it wrote (or a repair recovered), if known."""
        repaired = self.meta.get("repaired")
        if isinstance(repaired, dict) and isinstance(repaired.get("volumes"), int):
            return int(repaired["volumes"])
        written = self.meta.get("volumes_written")
        return int(written) if isinstance(written, int) else None

    def _log_problems(self) -> list[Problem]:
        log = self.path / LOG_NAME
        journal = self._journal
        expected = self.expected_volumes()
        listed = len(self._records)
        repair = f"`rcanlive check --repair {self.path}` rebuilds it from the complete chunks"
        problems = []
        if expected is not None and listed < expected:
            if not journal.exists:
                problems.append(
                    Problem(
                        "log-missing",
                        f"{log} is missing, but the run wrote {expected} volume(s): none of "
                        f"them is shown; {repair}",
                    )
                )
            else:
                problems.append(
                    Problem(
                        "log-truncated",
                        f"{log} lists {listed} of the {expected} volume(s) the run wrote "
                        f"(truncated or damaged): the others are not shown; {repair}",
                    )
                )
        elif not journal.exists and expected is None and self._raw_chunks_exist():
            problems.append(
                Problem(
                    "log-missing",
                    f"{log} is missing, but raw chunks are on disk: no volume is shown; {repair}",
                )
            )
        elif journal.torn and self.status != "acquiring":
            problems.append(
                Problem(
                    "log-truncated",
                    f"the last line of {log} is cut short although the run finished; {repair}",
                )
            )
        if journal.bad_lines:
            shown = ", ".join(map(str, journal.bad_lines[:10]))
            problems.append(
                Problem(
                    "log-damaged",
                    f"line(s) {shown}{', ...' if len(journal.bad_lines) > 10 else ''} of {log} "
                    f"are damaged (not volume records) and skipped; {repair}",
                )
            )
        return problems

    def _raw_chunks_exist(self) -> bool:
        """Whether any raw chunk is on disk (cheap: looks for chunk folders)."""
        tiles = [t["index"] for t in self.tile_manifest()] if self.kind == "tile" else []
        names = raw_images(self.kind, tiles)
        return any((self.path / name / "0" / "c").is_dir() for name in names)

    # -- restoration records -----------------------------------------------------

    def restoration_records(self) -> dict[Key, dict[str, Any]]:
        """Latest record of ``restored.jsonl`` per ``(t, p, c)`` (read incrementally)."""
        with self._lock:
            resets = self._restored_journal.resets
            new = self._restored_journal.read_new()
            if self._restored_journal.resets != resets:
                self._restored.clear()
                new = list(self._restored_journal.records)
            for record in new:
                self._restored[key_of(record)] = record
            return dict(self._restored)

    def restored_keys(self) -> list[Key]:
        """Volumes recorded as restored whose restored chunks are all on disk (the
        checksums are verified when a volume is read, not here)."""
        out = []
        for key, record in self.restoration_records().items():
            if record.get("status") != "restored":
                continue
            try:
                if not self._missing_chunks(key, "restored", record.get(CHECKSUM_FIELD)):
                    out.append(key)
            except (KeyError, IndexError, TypeError, ValueError):
                continue
        return out

    # -- arrays and chunks -------------------------------------------------------

    def image(self, name: str) -> zarr.Array:
        """Level-0 array of the NGFF image at ``name`` (e.g. ``raw``, ``pairs/low``)."""
        return self.root[f"{name}/0"]  # type: ignore[return-value]

    def _array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            self._arrays[name] = self.root[name]  # type: ignore[assignment]
        return self._arrays[name]

    def locate(self, key: Key, image: str = "raw") -> tuple[zarr.Array, tuple[int, ...]]:
        """The array holding volume ``key`` of ``image`` and the volume's leading index.

        ``image`` is ``raw`` (``tiles`` or ``pairs`` for those kinds) or ``restored``.

        Raises
        ------
        KeyError
            No such image or volume in the dataset.
        """
        n_p = int(self.meta["geometry"]["n_p"]) if self.kind == "pairs" else 1
        name, index = volume_location(self.kind, key, image, n_p)
        array = self._array(name)
        for d, i in enumerate(index):
            if not 0 <= i < array.shape[d]:
                raise IndexError(f"index {index} is outside {name} of shape {array.shape}")
        return array, index

    def chunk_paths(self, key: Key, image: str = "raw") -> list[tuple[str, ...]]:
        """Per plane, the chunks (paths relative to the dataset) holding volume ``key``."""
        cached = self._chunks.get((key, image))
        if cached is None:
            array, index = self.locate(key, image)
            cached = self._chunks[(key, image)] = volume_chunks(array, index)
        return cached

    def _missing_chunks(
        self, key: Key, image: str, checksums: list[int] | None = None
    ) -> list[str]:
        """Chunks of volume ``key`` that are not on disk. With ``checksums``, a missing
        chunk whose planes' checksums are those of fill values is not counted (the
        writer may leave such a chunk out)."""
        per_plane = self.chunk_paths(key, image)
        root = str(self.path)
        missing: dict[str, None] = {}
        fill: int | None = None
        for z, chunks in enumerate(per_plane):
            gone = [ch for ch in chunks if not os.path.isfile(os.path.join(root, ch))]
            if not gone:
                continue
            if checksums is not None and z < len(checksums):
                if fill is None:
                    fill = fill_plane_checksum(*self.locate(key, image))
                if checksums[z] == fill:
                    continue
            missing.update(dict.fromkeys(gone))
        return list(missing)

    def missing_chunks(self, key: Key, image: str = "raw") -> list[str]:
        """Chunks of volume ``key`` (as logged) that should be on disk and are not."""
        if image == "raw":
            record = self._records.get(key)
        else:
            record = self.restoration_records().get(key)
        checksums = record.get(CHECKSUM_FIELD) if record else None
        return self._missing_chunks(key, image, checksums)

    # -- volumes -----------------------------------------------------------------

    def volume(
        self,
        t: int | VolumeKey,
        *,
        p: int = 0,
        c: int = 0,
        image: str = "raw",
        verify: bool = True,
    ) -> np.ndarray:
        """One complete volume, ``(Z, Y, X)``, its chunks and checksums checked.

        Parameters
        ----------
        t, p, c
            The volume: a :class:`~.layout.VolumeKey`, or its time point with the
            position and channel given by name (never by place: ``(t, p, c)`` is the
            order of a key, and a positional ``c``/``p`` was easy to swap).
        image
            ``raw`` or ``restored``.
        verify
            Compare each plane with the checksum logged when it was written (volumes
            written before checksums existed are only checked for missing chunks).

        Raises
        ------
        DamagedVolume
            A chunk of the volume is missing or does not match its checksum (a
            ``KeyError``; also reported as an :class:`~.errors.IntegrityWarning`).
        KeyError
            The volume was never completed (or, for ``restored``, never restored).
        """
        key = VolumeKey(*t) if isinstance(t, tuple) else VolumeKey(t, p, c)
        t, p, c = key
        if key not in self._records:
            self.refresh()
        with self._lock:
            record = self._records.get(key)
            known = self._damaged.get(key)
        if record is None:
            raise KeyError(f"volume t={t} p={p} c={c} was not completed in {self.path}")
        if known is not None:
            raise known
        checksums = record.get(CHECKSUM_FIELD) if image == "raw" else None
        if image == "restored":
            restored = self.restoration_records().get(key)
            if restored is None or restored.get("status") != "restored":
                raise KeyError(f"volume t={t} p={p} c={c} of {self.path} was not restored")
            checksums = restored.get(CHECKSUM_FIELD)
        try:
            return self._read(key, image, checksums, verify)
        except DamagedVolume as damage:
            if image == "raw":
                with self._lock:
                    self._damaged[key] = damage
            warnings.warn(str(damage), IntegrityWarning, stacklevel=2)
            raise

    def _read(self, key: Key, image: str, checksums: list[int] | None, verify: bool) -> np.ndarray:
        missing = self._missing_chunks(key, image, checksums)
        if missing:
            raise DamagedVolume(self.path, key, image, missing, "missing")
        array, index = self.locate(key, image)
        per_plane = self.chunk_paths(key, image)
        every = [ch for plane in per_plane for ch in plane]
        try:
            data = np.asarray(array[index])
        except Exception as exc:  # a chunk that does not decode (compressed, altered)
            unreadable: dict[str, None] = {}
            for z, plane_chunks in enumerate(per_plane):
                try:
                    array[(*index, z)]
                except Exception:
                    unreadable.update(dict.fromkeys(plane_chunks))
            raise DamagedVolume(
                self.path, key, image, list(unreadable) or every, "unreadable"
            ) from exc
        if not verify or checksums is None:
            return data
        if len(checksums) != data.shape[0]:
            raise DamagedVolume(self.path, key, image, every, "checksum")
        bad = [z for z in range(data.shape[0]) if plane_checksum(data[z]) != checksums[z]]
        if bad:
            altered = list(dict.fromkeys(ch for z in bad for ch in per_plane[z]))
            raise DamagedVolume(self.path, key, image, altered, "checksum")
        return data

    def tile_manifest(self) -> list[dict[str, Any]]:
        """Tiles in acquisition order with grid indices and stage positions (µm)."""
        attrs: Any = self.root[RAW_TILES].attrs["rcanlive"]
        return list(attrs["manifest"])

    def locked_by(self) -> tuple[int | None, str] | None:
        """``(pid, owner)`` of the process writing the dataset now, if any."""
        return locked_by(self.path)


def _name(key: Key) -> str:
    t, p, c = key
    return f"volume t={t} p={p} c={c}"


def open_dataset(path: str | Path) -> Dataset:
    """Open an rcanlive dataset for reading (damage is reported as
    :class:`~.errors.IntegrityWarning`; see :class:`Dataset`)."""
    return Dataset(path)


def _create_images(
    root: zarr.Group,
    kind: Kind,
    g: Geometry,
    compression: str,
    tiles: list[dict[str, Any]] | None,
) -> dict[str, zarr.Array]:
    """The raw NGFF images of a new dataset of ``kind``, by name."""
    zyx_scale = [g.z_step_um, g.pixel_size_um, g.pixel_size_um]
    if kind == "live":
        raw = create_image(
            root,
            "raw",
            axes="tczyx",
            shape=(g.n_t, g.n_c, g.planes, g.height, g.width),
            scale=[g.interval_s or 1.0, 1.0, *zyx_scale],
            chunks=[1, 1, 1, g.height, g.width],
            dtype="uint16",
            compression=compression,
        )
        return {"raw": raw}
    if kind == "pairs":
        pairs = root.create_group("pairs")
        return {
            f"pairs/{name}": create_image(
                pairs,
                name,
                axes="tczyx",
                shape=(g.n_t * g.n_p, 1, g.planes, g.height, g.width),
                scale=[1.0, 1.0, *zyx_scale],
                chunks=[1, 1, 1, g.height, g.width],
                dtype="uint16",
                compression=compression,
            )
            for name in ("low", "high")
        }
    if kind != "tile":  # pragma: no cover - guarded by the Literal
        raise ValueError(f"unknown dataset kind {kind!r}")
    if tiles is None:
        raise ValueError("a tiling dataset needs its tile manifest")
    group = root.create_group(RAW_TILES, attributes={"rcanlive": {"manifest": tiles}})
    arrays = {}
    for tile in tiles:
        # each tile sits at its stage position: its centre is the commanded x, y
        x0 = tile["x_um"] - g.width / 2 * g.pixel_size_um
        y0 = tile["y_um"] - g.height / 2 * g.pixel_size_um
        z0 = -(g.planes - 1) / 2 * g.z_step_um
        arrays[tile_image(tile["index"])] = create_image(
            group,
            tile_name(tile["index"]),
            axes="czyx",
            shape=(g.n_c, g.planes, g.height, g.width),
            scale=[1.0, *zyx_scale],
            translation=[0.0, z0, y0, x0],
            chunks=[1, 1, g.height, g.width],
            attrs={"rcanlive": {"tile": tile}},
            dtype="uint16",
            compression=compression,
        )
    return arrays
