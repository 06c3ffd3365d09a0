"""Readers never serve a damaged volume as zeros; ``rcanlive check`` names the damage."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rcanlive.storage import (
    DamagedVolume,
    DatasetWriter,
    Geometry,
    IntegrityWarning,
    RestoredWriter,
    Volume,
    open_dataset,
    plane_checksums,
)

if TYPE_CHECKING:
    from pathlib import Path

PLANES, H, W = 3, 8, 6


def _volume(t: int, data: np.ndarray, p: int = 0, c: int = 0) -> Volume:
    z = tuple(0.2 * k for k in range(PLANES))
    return Volume.from_array(data, t, p, c, "488", z, (0.0, 0.0), float(t))


def _make_live(path: Path, n: int = 4, zero_plane: bool = False) -> dict[int, np.ndarray]:
    """A finished live dataset of ``n`` volumes of random (nonzero) counts."""
    g = Geometry(planes=PLANES, height=H, width=W, pixel_size_um=0.1, z_step_um=0.2, n_t=n)
    writer = DatasetWriter(path, "live", g, plan={}, rig={})
    rng = np.random.default_rng(0)
    truth = {}
    for t in range(n):
        data = rng.integers(100, 4000, (PLANES, H, W), dtype=np.uint16)
        if zero_plane and t == 0:
            data[1] = 0
        truth[t] = data.copy()
        writer.write(_volume(t, data))
    writer.finish("completed")
    return truth


def _chunk(t: int, z: int, c: int = 0) -> str:
    return f"raw/0/c/{t}/{c}/{z}/0/0"


def _flip_byte(path: Path, offset: int = 10) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def _check(path: Path, capsys, *args: str) -> tuple[int, str]:
    """``rcanlive check`` with its output as one line (independent of terminal width)."""
    from rcanlive.cli import main

    capsys.readouterr()
    code = main(["check", str(path), *args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


@pytest.fixture
def live(tmp_path, monkeypatch) -> tuple[Path, dict[int, np.ndarray]]:
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "live.ome.zarr"
    return path, _make_live(path)


def test_checksums_are_logged_and_a_clean_dataset_checks_clean(live, capsys):
    path, truth = live
    records = [json.loads(line) for line in (path / "volumes.jsonl").read_text().splitlines()]
    assert [r["crc32"] for r in records] == [plane_checksums(truth[t]) for t in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntegrityWarning)
        ds = open_dataset(path)
        for t in range(4):
            np.testing.assert_array_equal(ds.volume(t), truth[t])
    code, out = _check(path, capsys)
    assert code == 0 and "clean" in out


def test_deleted_chunk_is_reported_never_read_as_zeros(live, capsys):
    path, truth = live
    os.remove(path / _chunk(1, 2))
    with pytest.warns(IntegrityWarning, match=r"t=1 p=0 c=0 .*raw/0/c/1/0/2/0/0 is missing"):
        ds = open_dataset(path)
    assert [r["t"] for r in ds.volumes] == [0, 2, 3]
    assert set(ds.damaged) == {(1, 0, 0)}
    with pytest.raises(DamagedVolume, match="raw/0/c/1/0/2/0/0") as info:
        ds.volume(1)
    assert isinstance(info.value, KeyError) and info.value.reason == "missing"
    assert info.value.chunks == [_chunk(1, 2)]
    np.testing.assert_array_equal(ds.volume(2), truth[2])  # the others are served
    code, out = _check(path, capsys)
    assert code == 1
    assert "[missing-chunk] raw volume t=1 p=0 c=0: chunk raw/0/c/1/0/2/0/0 is missing" in out


def test_flipped_byte_fails_its_checksum(live, capsys):
    path, _ = live
    _flip_byte(path / _chunk(2, 0))
    ds = open_dataset(path)  # every chunk is there: only reading can tell
    with pytest.warns(IntegrityWarning, match="does not match its checksum"):
        with pytest.raises(DamagedVolume, match=r"raw/0/c/2/0/0/0/0") as info:
            ds.volume(2)
    assert info.value.reason == "checksum"
    assert [r["t"] for r in ds.volumes] == [0, 1, 3]  # left out from now on
    # a second read raises again, without a second read of the data
    with pytest.raises(DamagedVolume):
        ds.volume(2)
    code, out = _check(path, capsys)
    assert code == 1
    assert "[checksum] raw volume t=2 p=0 c=0: chunk raw/0/c/2/0/0/0/0 does not match" in out
    code, _ = _check(path, capsys, "--no-verify")  # only presence: the flip is invisible
    assert code == 0


def test_undecodable_compressed_chunk_is_reported(tmp_path):
    g = Geometry(planes=PLANES, height=H, width=W, pixel_size_um=0.1, z_step_um=0.2, n_t=1)
    path = tmp_path / "zstd.ome.zarr"
    writer = DatasetWriter(path, "live", g, plan={}, rig={}, compression="zstd")
    writer.write(_volume(0, np.full((PLANES, H, W), 7, np.uint16)))
    writer.finish("completed")
    chunk = path / _chunk(0, 1)
    chunk.write_bytes(chunk.read_bytes()[:5])
    ds = open_dataset(path)
    with pytest.warns(IntegrityWarning), pytest.raises(DamagedVolume, match="raw/0/c/0/0/1/0/0"):
        ds.volume(0)


def test_zero_plane_is_stored_and_its_fill_checksum_is_known(tmp_path):
    path = tmp_path / "zero.ome.zarr"
    truth = _make_live(path, n=1, zero_plane=True)
    assert (path / _chunk(0, 1)).is_file()  # the writer stores a plane of zeros too
    # a writer that leaves a fill-valued chunk out is not damage: the checksum says so
    os.remove(path / _chunk(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntegrityWarning)
        np.testing.assert_array_equal(open_dataset(path).volume(0), truth[0])


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_lost_log_is_reported_and_repaired(live, capsys, damage):
    path, truth = live
    log = path / "volumes.jsonl"
    if damage == "deleted":
        log.unlink()
        match = r"volumes.jsonl is missing, but the run wrote 4 volume\(s\)"
    else:  # cut in the middle of the second line
        text = log.read_text()
        first = text.index("\n") + 1
        log.write_text(text[: first + 20])
        match = r"lists 1 of the 4 volume\(s\) the run wrote"
    with pytest.warns(IntegrityWarning, match=match):
        ds = open_dataset(path)
    assert len(ds.volumes) == (0 if damage == "deleted" else 1)
    code, out = _check(path, capsys)
    assert code == 1
    assert ("[log-missing]" if damage == "deleted" else "[log-truncated]") in out
    assert "volume t=3 p=0 c=0 is complete on disk but not listed" in out
    code, out = _check(path, capsys, "--repair")
    assert code == 0
    verified = 0 if damage == "deleted" else 1
    assert f"4 volume(s), {verified} verified against their checksums" in out
    assert f"{4 - verified} complete but unverified" in out and "after the repair" in out
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntegrityWarning)
        ds = open_dataset(path)
    assert [r["t"] for r in ds.volumes] == [0, 1, 2, 3]
    recovered = [r for r in ds.volumes if r.get("recovered") == "complete"]
    assert len(recovered) == 4 - verified
    for t in range(4):
        np.testing.assert_array_equal(ds.volume(t), truth[t])


def test_repair_drops_what_is_damaged(live, capsys):
    path, _ = live
    os.remove(path / _chunk(3, 0))
    code, out = _check(path, capsys, "--repair")
    assert code == 0 and "1 volume(s) could not be recovered" in out
    assert "volume(s) were lost (volume t=3 p=0 c=0)" in out
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntegrityWarning)
        assert [r["t"] for r in open_dataset(path).volumes] == [0, 1, 2]


def test_log_is_read_incrementally_as_volumes_are_logged(tmp_path):
    """A reader in another process follows the log: only appended lines are read."""
    g = Geometry(planes=PLANES, height=H, width=W, pixel_size_um=0.1, z_step_um=0.2, n_t=3)
    path = tmp_path / "growing.ome.zarr"
    writer = DatasetWriter(path, "live", g, plan={}, rig={})
    data = np.arange(PLANES * H * W, dtype=np.uint16).reshape(PLANES, H, W) + 1
    writer.write(_volume(0, data.copy()))
    ds = open_dataset(path)
    log = path / "volumes.jsonl"
    assert ds.journal.offset == log.stat().st_size and ds.journal.lines == 1
    writer.write(_volume(1, data.copy()))
    np.testing.assert_array_equal(ds.volume(1), data)  # not known at open: log re-read
    assert ds.journal.lines == 2 and ds.journal.offset == log.stat().st_size
    # a line being written is left for later, then read once complete
    line = log.read_text().splitlines()[0].replace('"t": 0', '"t": 2') + "\n"
    with open(log, "a") as f:
        f.write(line[:15])
    with pytest.raises(KeyError, match="not completed"):
        ds.volume(2)
    assert ds.journal.torn and ds.journal.lines == 2
    writer._store("raw")[2].write(data).result()
    with open(log, "a") as f:
        f.write(line[15:])
    np.testing.assert_array_equal(ds.volume(2), data)
    assert ds.journal.lines == 3 and not ds.journal.bad_lines
    writer.finish("completed")


def test_damaged_log_line_is_skipped_not_the_rest(live, capsys):
    path, _ = live
    log = path / "volumes.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lines[1] = "{garbage\n"
    log.write_text("".join(lines))
    with pytest.warns(IntegrityWarning) as caught:
        ds = open_dataset(path)
    messages = [str(w.message) for w in caught]
    assert any("line(s) 2 of" in m and "volumes.jsonl are damaged" in m for m in messages)
    assert any("lists 3 of the 4 volume(s)" in m for m in messages)
    assert [r["t"] for r in ds.volumes] == [0, 2, 3]
    code, out = _check(path, capsys)
    assert code == 1 and "[log-damaged]" in out


def test_restored_volume_missing_is_reported(live, capsys):
    path, truth = live
    restored = RestoredWriter(path)
    for t in range(2):
        restored.write((t, 0, 0), truth[t].astype(np.float32) / 2)
    restored.close()
    ds = open_dataset(path)
    np.testing.assert_array_equal(ds.volume(0, image="restored"), truth[0] / 2)
    os.remove(path / "restored/0/c/1/0/0/0/0")
    assert open_dataset(path).restored_keys() == [(0, 0, 0)]
    with pytest.warns(IntegrityWarning), pytest.raises(DamagedVolume, match="restored/0/c/1"):
        ds.volume(1, image="restored")
    np.testing.assert_array_equal(ds.volume(1), truth[1])  # the raw volume is fine
    code, out = _check(path, capsys)
    assert code == 1
    assert "[restored-missing] restored volume t=1 p=0 c=0: chunk restored/0/c/1/0/0/0/0" in out


def test_replay_and_report_leave_damaged_volumes_out(live):
    from rcanlive.dashboard.model import replay
    from rcanlive.dashboard.report import report_for_dataset

    path, truth = live
    os.remove(path / _chunk(1, 0))
    _flip_byte(path / _chunk(3, 2))

    class Recorder:
        def __init__(self) -> None:
            self.raw: list = []

        def add_raw(self, vol) -> None:
            self.raw.append(vol)

        def set_throughput(self, *args) -> None: ...

        def set_queue_depth(self, *args) -> None: ...

    model = Recorder()
    with pytest.warns(IntegrityWarning) as caught:
        replay(model, path)  # type: ignore[arg-type]
    assert [v.t for v in model.raw] == [0, 2]
    for v in model.raw:
        np.testing.assert_array_equal(v.data, truth[v.t])
    messages = " ".join(str(w.message) for w in caught)
    assert _chunk(1, 0) in messages and _chunk(3, 2) in messages
    with pytest.warns(IntegrityWarning):
        report = report_for_dataset(path, path.parent / "report.html")
    page = report.read_text()
    assert _chunk(1, 0) in page and _chunk(3, 2) in page


def test_stitching_leaves_a_damaged_tile_out(tmp_path):
    from rcanlive.stitching import StitchWarning, TileReader, load_layout

    tiles = [{"index": i, "row": 0, "col": i, "x_um": i * 0.5, "y_um": 0.0} for i in range(3)]
    g = Geometry(planes=PLANES, height=H, width=W, pixel_size_um=0.1, z_step_um=0.2, n_t=1)
    path = tmp_path / "tiles.ome.zarr"
    writer = DatasetWriter(path, "tile", g, plan={}, rig={}, tiles=tiles)
    for i in range(3):
        writer.write(_volume(0, np.full((PLANES, H, W), 10 + i, np.uint16), p=i))
    writer.finish("completed")
    os.remove(path / "tiles/0001/0/c/0/2/0/0")
    with pytest.warns(StitchWarning) as caught:
        layout = load_layout(path)
    messages = " ".join(str(w.message) for w in caught)
    assert "tiles/0001/0/c/0/2/0/0 is missing" in messages and "left as gaps" in messages
    assert [t.present for t in layout.tiles] == [True, False, True]
    reader = TileReader(path)
    np.testing.assert_array_equal(reader.read(0, 0, slice(None), slice(None), slice(None)), 10)
    with pytest.raises(DamagedVolume, match="tiles/0001/0/c/0/2/0/0"):
        reader.read(1, 0, slice(0, 3), slice(0, 4), slice(0, 4))
    # a flipped byte is found by a verifying layout
    _flip_byte(path / "tiles/0002/0/c/0/0/0/0")
    with pytest.warns(StitchWarning) as caught:
        layout = load_layout(path, verify=True)
    assert "tiles/0002/0/c/0/0/0/0 does not match" in " ".join(str(w.message) for w in caught)
    assert [t.present for t in layout.tiles] == [True, False, False]
    reader = pickle.loads(pickle.dumps(reader))  # travels to Dask workers
    with pytest.raises(DamagedVolume):
        reader.read(1, 0, slice(2, 3), slice(None), slice(None))


def test_damaged_volume_pickles_and_check_has_help(capsys, monkeypatch):
    damage = DamagedVolume("d.ome.zarr", (1, 0, 0), "raw", ["raw/0/c/1/0/0/0/0"], "missing")
    again = pickle.loads(pickle.dumps(damage))
    assert str(again) == str(damage) and again.chunks == damage.chunks
    from rcanlive.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    assert main(["check", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Example: rcanlive check data/live-4d.ome.zarr" in out and "--repair" in out
