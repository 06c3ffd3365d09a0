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

Volumes are written plane by plane with tensorstore, whose C++ I/O threads run without
the GIL (4× zarr-python's throughput here, see ``benchmarks/RESULTS.md``); every array
is created, and read back, with zarr-python.

Crash safety: each chunk is written atomically (temp file + rename) and a volume's
line is appended to ``volumes.jsonl`` (flushed and fsynced) only after all of its
chunks are on disk; metadata documents are rewritten only at creation and at the
end. A run killed at any moment therefore leaves a dataset that opens, and every
volume listed in the log is complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import tensorstore as ts
import zarr

from .. import __version__
from .ngff import create_image

if TYPE_CHECKING:
    from .volume import Volume

Kind = Literal["live", "pairs", "tile"]
LOG_NAME = "volumes.jsonl"
# One I/O pool shared by every writer. Each chunk is fsynced before its volume is
# logged, so the log never lists a volume a power cut could take back.
_TS_CONTEXT = ts.Context({"file_io_concurrency": {"limit": 4}, "file_io_sync": True})


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


class DatasetWriter:
    """Writes volumes into a new dataset as they arrive (thread-safe)."""

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
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already exists; choose another storage.name or --out, or delete it"
            )
        self.kind = kind
        self.geometry = g = geometry
        self._lock = threading.Lock()
        self.written: list[tuple[int, int, int]] = []
        self.root = zarr.open_group(
            self.path,
            mode="w",
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
                }
            },
        )
        zyx_scale = [g.z_step_um, g.pixel_size_um, g.pixel_size_um]
        plane_chunks = [1, g.height, g.width]
        self._arrays: dict[str, zarr.Array] = {}
        if kind == "live":
            self._arrays["raw"] = create_image(
                self.root,
                "raw",
                axes="tczyx",
                shape=(g.n_t, g.n_c, g.planes, g.height, g.width),
                dtype="uint16",
                scale=[g.interval_s or 1.0, 1.0, *zyx_scale],
                chunks=[1, 1, *plane_chunks],
                compression=compression,
            )
        elif kind == "pairs":
            pairs = self.root.create_group("pairs")
            for name in ("low", "high"):
                self._arrays[name] = create_image(
                    pairs,
                    name,
                    axes="tczyx",
                    shape=(g.n_t * g.n_p, 1, g.planes, g.height, g.width),
                    dtype="uint16",
                    scale=[1.0, 1.0, *zyx_scale],
                    chunks=[1, 1, *plane_chunks],
                    compression=compression,
                )
        elif kind == "tile":
            if tiles is None:
                raise ValueError("a tiling dataset needs its tile manifest")
            group = self.root.create_group("tiles", attributes={"rcanlive": {"manifest": tiles}})
            for tile in tiles:
                name = f"{tile['index']:04d}"
                z0 = -(g.planes - 1) / 2 * g.z_step_um
                x0 = tile["x_um"] - g.width / 2 * g.pixel_size_um
                y0 = tile["y_um"] - g.height / 2 * g.pixel_size_um
                self._arrays[name] = create_image(
                    group,
                    name,
                    axes="czyx",
                    shape=(g.n_c, g.planes, g.height, g.width),
                    dtype="uint16",
                    scale=[1.0, *zyx_scale],
                    translation=[0.0, z0, y0, x0],
                    chunks=[1, *plane_chunks],
                    compression=compression,
                    attrs={"rcanlive": {"tile": tile}},
                )
        else:  # pragma: no cover - guarded by the Literal
            raise ValueError(f"unknown dataset kind {kind!r}")
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
            }
            store = self._stores[name] = ts.open(spec, open=True, context=_TS_CONTEXT).result()
        return store

    def _target(self, v: Volume) -> tuple[str, tuple[Any, ...]]:
        g = self.geometry
        if self.kind == "live":
            return "raw", (v.t, v.c)
        if self.kind == "pairs":
            return ("low" if v.c == 0 else "high"), (v.t * g.n_p + v.p, 0)
        return f"{v.p:04d}", (v.c,)

    def write(self, volume: Volume) -> None:
        """Write one volume, then log it as complete."""
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
        }
        with self._lock:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
            os.fsync(self._log.fileno())
            self.written.append(volume.key)

    def add_image(self, name: str, **kwargs: Any) -> zarr.Array:
        """Create another NGFF image in the dataset (e.g. ``restored``)."""
        arr = create_image(self.root, name, **kwargs)
        self._arrays[name] = arr
        return arr

    def finish(self, status: str, **summary: Any) -> None:
        """Record the final status and summary in the root attributes; close the log."""
        with self._lock:
            attrs = dict(self.root.attrs["rcanlive"])
            attrs.update(
                status=status,
                summary=summary,
                finished=dt.datetime.now().isoformat(timespec="seconds"),
                volumes_written=len(self.written),
            )
            self.root.attrs["rcanlive"] = attrs
            if not self._log.closed:
                self._log.close()


def annotate(path: str | Path, **entries: Any) -> None:
    """Merge ``entries`` into a finished dataset's root ``rcanlive`` attributes."""
    root = zarr.open_group(Path(path), mode="r+")
    attrs = dict(root.attrs["rcanlive"])
    attrs.update(entries)
    root.attrs["rcanlive"] = attrs


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Volumes recorded as complete; a torn last line (killed mid-write) is ignored."""
    log = Path(path) / LOG_NAME
    if not log.is_file():
        return []
    records = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


class Dataset:
    """Read access to an rcanlive dataset."""

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
        self.volumes = read_log(self.path)

    @property
    def status(self) -> str:
        return str(self.meta.get("status", "unknown"))

    def image(self, name: str) -> zarr.Array:
        """Level-0 array of the NGFF image at ``name`` (e.g. ``raw``, ``pairs/low``)."""
        return self.root[f"{name}/0"]  # type: ignore[return-value]

    def volume(self, t: int, c: int = 0, p: int = 0, image: str = "raw") -> np.ndarray:
        """One complete volume; raises ``KeyError`` if it was never completed."""
        if not any((r["t"], r["p"], r["c"]) == (t, p, c) for r in self.volumes):
            raise KeyError(f"volume t={t} p={p} c={c} was not completed in {self.path}")
        if self.kind == "live":
            return np.asarray(self.image(image)[t, c])
        if self.kind == "tile":
            return np.asarray(self.image(f"tiles/{p:04d}")[c])
        n_p = self.meta["geometry"]["n_p"]
        return np.asarray(self.image("pairs/low" if c == 0 else "pairs/high")[t * n_p + p, 0])

    def tile_manifest(self) -> list[dict[str, Any]]:
        """Tiles in acquisition order with grid indices and stage positions (µm)."""
        return list(self.root["tiles"].attrs["rcanlive"]["manifest"])


def open_dataset(path: str | Path) -> Dataset:
    """Open an rcanlive dataset for reading."""
    return Dataset(path)
