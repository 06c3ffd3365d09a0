"""Bad configs: a message naming the field, exit code 2, no traceback, no hardware."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rcanlive.cli import main

if TYPE_CHECKING:
    from collections.abc import Callable

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TILE = (CONFIGS / "gel-tiling.toml").read_text()
LIVE = (CONFIGS / "live-4d.toml").read_text()

CASES = {
    "negative exposure": (
        "live",
        LIVE.replace("exposure_ms = 50.0", "exposure_ms = -5"),
        "exposure_ms",
    ),
    "typo": ("live", LIVE.replace("interval_s", "intervall_s"), "intervall_s: unknown setting"),
    "bad compression": ("live", LIVE.replace('"none"', '"gzip"'), "'none', 'zstd' or 'blosc-lz4'"),
    "unknown laser": (
        "live",
        LIVE.replace("line_nm = 488", "line_nm = 405"),
        "channels[0].line_nm: rig 'simulated-isim' has no 405 nm line",
    ),
    "too much power": (
        "live",
        LIVE.replace("intensity_w_cm2 = 4.2", "intensity_w_cm2 = 5000"),
        "exceeds the calibrated maximum",
    ),
    "both power and intensity": (
        "live",
        LIVE.replace("intensity_w_cm2 = 4.2", "intensity_w_cm2 = 4.2\npower_mw = 1"),
        "exactly one of power_mw or intensity_w_cm2",
    ),
    "small overlap": (
        "tile",
        TILE.replace("step_um = 22.0", "step_um = 25.0"),
        "below min_overlap 20%",
    ),
    "step too big": (
        "tile",
        TILE.replace("step_um = 22.0", "step_um = 200"),
        "step_um: Input should be less than or equal to 150",
    ),
    "too many rows": ("tile", TILE.replace("rows = 3", "rows = 101"), "rows"),
    "outside stage": (
        "tile",
        TILE.replace("center_um = [0.0, 0.0]", "center_um = [24990.0, 0.0]"),
        "outside the stage travel",
    ),
    "z out of range": (
        "live",
        LIVE.replace("planes = 25", "planes = 900"),
        "leaves the focus range",
    ),
    "wrong kind": ("pairs", LIVE, "kind"),
    "not toml": ("live", "kind = [", "not valid TOML"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_config(name, tmp_path, capsys, monkeypatch):
    kind, text, expected = CASES[name]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)

    def no_hardware(*a, **k):
        raise AssertionError("hardware opened before the config validated")

    monkeypatch.setattr("rcanlive.microscope.rig.open_rig", no_hardware)
    code = main(["acquire", kind, "--config", str(cfg), "--simulate", "--out", str(tmp_path)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


def test_force_overlap_accepts(tmp_path, monkeypatch):
    from rcanlive.cli.running import load_and_prepare

    cfg = tmp_path / "tile.toml"
    cfg.write_text(
        TILE.replace("step_um = 22.0", "step_um = 25.0").replace(
            "force_overlap = false", "force_overlap = true"
        )
    )
    _, _, prepared = load_and_prepare("tile", cfg, True, tmp_path)
    assert prepared.n_p == 9
    assert "frames" in prepared.describe() and "GB" in prepared.describe()


def test_missing_config_file(tmp_path, capsys):
    code = main(["acquire", "live", "--config", str(tmp_path / "nope.toml"), "--simulate"])
    assert code == 2 and "config file not found" in capsys.readouterr().err


def test_every_subcommand_has_an_example(capsys):
    for args in (
        ["--help"],
        ["acquire", "--help"],
        ["acquire", "live", "--help"],
        ["acquire", "pairs", "--help"],
        ["acquire", "tile", "--help"],
    ):
        assert main(args) == 0
        assert "Example" in capsys.readouterr().out


# -- bad inputs of every kind: one line, exit 2, no traceback -----------------------------


def _config(name: str, text: str | bytes) -> Callable[[Path], list[str]]:
    """A case: write ``text`` to ``name`` and run ``acquire live`` (or pairs) with it."""

    def argv(tmp: Path) -> list[str]:
        cfg = tmp / name
        cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
        kind = "live"
        return ["acquire", kind, "--config", str(cfg), "--simulate", "--out", str(tmp / "out")]

    return argv


def _restore_under_a_file(tmp: Path) -> list[str]:
    """``restore in.tif some/file.tif/sub/out.tif``: a file where a folder must be."""
    import numpy as np
    import tifffile
    import torch

    from rcanlive.model import RCAN3D, PercentileNormalizer, save_checkpoint

    torch.manual_seed(0)
    model = save_checkpoint(
        tmp / "tiny.pt", RCAN3D(n_groups=1, n_blocks=1, channels=4), PercentileNormalizer()
    )
    volume = np.random.default_rng(0).integers(90, 400, (4, 16, 16)).astype(np.uint16)
    tifffile.imwrite(tmp / "in.tif", volume, photometric="minisblack", metadata={"axes": "ZYX"})
    (tmp / "file.tif").write_bytes(b"")
    out = tmp / "file.tif" / "sub" / "out.tif"
    backend = ["--backend", "eager", "--precision", "fp32"]
    return ["restore", str(tmp / "in.tif"), str(out), "--model", str(model), *backend]


def _live_dataset(tmp: Path) -> Path:
    from rcanlive.storage import DatasetWriter, Geometry

    path = tmp / "live.ome.zarr"
    g = Geometry(planes=1, height=4, width=4, pixel_size_um=0.1, z_step_um=0.5)
    DatasetWriter(path, "live", g, plan={}, rig={}).finish("completed")
    return path


def _stitch_live(tmp: Path) -> list[str]:
    return ["stitch", str(_live_dataset(tmp))]


def _stitch_plain_folder(tmp: Path) -> list[str]:
    (tmp / "folder").mkdir()
    return ["stitch", str(tmp / "folder")]


def _stitch_foreign_zarr(tmp: Path) -> list[str]:
    group = tmp / "other.zarr"
    group.mkdir()
    (group / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    return ["stitch", str(group)]


def _report_into_folder(tmp: Path) -> list[str]:
    (tmp / "report.html").mkdir()
    return ["report", str(_live_dataset(tmp)), "-o", str(tmp / "report.html")]


def _config_is_a_folder(tmp: Path) -> list[str]:
    (tmp / "cfg.toml").mkdir()
    return ["acquire", "live", "--config", str(tmp / "cfg.toml"), "--simulate"]


BAD_INPUTS = [
    pytest.param(
        _config("bad.yaml", "kind: live\nvolumes: [1, 2\n"), "not valid YAML", id="yaml-malformed"
    ),
    pytest.param(
        _config("bad.yml", "- just\n- a list\n"), "top level must be a table", id="yaml-list"
    ),
    pytest.param(
        _config("latin1.toml", LIVE.encode() + b"# caf\xe9\n"), "not UTF-8", id="toml-not-utf8"
    ),
    pytest.param(_config("bin.toml", bytes(range(256))), "not UTF-8", id="toml-binary"),
    pytest.param(_config("bad.json", '{"kind": "live",'), "not valid JSON", id="json-truncated"),
    pytest.param(_config("bad.ini", LIVE), "unknown config format", id="unknown-suffix"),
    pytest.param(
        _config("inf.toml", LIVE.replace("interval_s = 5.6", "interval_s = inf")),
        "interval_s: Input should be a finite number",
        id="interval-inf",
    ),
    pytest.param(
        _config("nan.toml", LIVE.replace("exposure_ms = 50.0", "exposure_ms = nan")),
        "exposure_ms: Input should be a finite number",
        id="exposure-nan",
    ),
    pytest.param(
        _config(
            "json-inf.json",
            '{"kind": "live", "interval_s": Infinity, "channels": [{"power_mw": 1}]}',
        ),
        "interval_s: Input should be a finite number",
        id="json-infinity",
    ),
    pytest.param(
        _config("huge.toml", LIVE.replace("interval_s = 5.6", "interval_s = 1e300")),
        "interval_s: Input should be less than or equal to 86400",
        id="interval-huge",
    ),
    pytest.param(
        _config("str.toml", LIVE.replace("exposure_ms = 50.0", 'exposure_ms = "5.0"')),
        "exposure_ms: Input should be a valid number (write the number without quotes)",
        id="exposure-string",
    ),
    pytest.param(
        _config("bool.toml", LIVE.replace("exposure_ms = 50.0", "exposure_ms = true")),
        "exposure_ms: Input should be a valid number (true/false is not a number)",
        id="exposure-bool",
    ),
    pytest.param(
        _config("float-planes.toml", LIVE.replace("planes = 25", "planes = 25.0")),
        "zstack.planes: Input should be a valid integer",
        id="planes-float",
    ),
    pytest.param(
        _config("roi.toml", LIVE.replace("[512, 512]", '["512", 512]')),
        "camera_roi_px.0: Input should be a valid integer",
        id="roi-string",
    ),
    pytest.param(_config_is_a_folder, "is a folder", id="config-is-a-folder"),
    pytest.param(_restore_under_a_file, "is a file, not a folder", id="restore-not-a-directory"),
    pytest.param(_stitch_live, "is a live dataset", id="stitch-live-dataset"),
    pytest.param(_stitch_plain_folder, "not an rcanlive dataset", id="stitch-plain-folder"),
    pytest.param(_stitch_foreign_zarr, "not an rcanlive dataset", id="stitch-foreign-zarr"),
    pytest.param(_report_into_folder, "is a folder", id="report-into-a-folder"),
]


@pytest.mark.parametrize(("make_argv", "expected"), BAD_INPUTS)
def test_bad_input_is_one_line(
    make_argv: Callable[[Path], list[str]],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every bad input ends in exit 2 and one ``error:`` line, the last one printed."""
    monkeypatch.setenv("RCANLIVE_CACHE_DIR", str(tmp_path / "cache"))
    argv = make_argv(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, captured
    assert "Traceback" not in captured.out + captured.err
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], captured.err
    assert expected in errors[0], errors[0]


class _FullDisk:
    """Stands in for the ``os`` module of the report writer: the disk fills up when the
    report is flushed to it."""

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    @staticmethod
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_report_on_a_full_disk_leaves_no_truncated_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rcanlive.dashboard.report as report

    dataset = _live_dataset(tmp_path)
    out = tmp_path / "reports" / "report.html"
    out.parent.mkdir()
    assert main(["report", str(dataset), "-o", str(out)]) == 0
    complete = out.read_bytes()
    assert complete.rstrip().endswith(b"</html>")
    capsys.readouterr()

    monkeypatch.setattr(report, "os", _FullDisk())
    assert main(["report", str(dataset), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: {out}: no space left on the device; free some space or choose another --out"
    )
    assert out.read_bytes() == complete  # the previous report, untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no temp left
    # the default place, DATASET/report.html: nothing at all is left there
    assert main(["report", str(dataset)]) == 2
    assert not [p for p in dataset.iterdir() if "report" in p.name]


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
def test_report_cut_short_by_the_file_system_is_not_left_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the writer does: a write that fails half way (here a file size limit,
    like a full disk, for this process only) leaves the previous report or nothing."""
    import resource

    dataset = _live_dataset(tmp_path)
    out = dataset / "report.html"
    out.write_text("previous report")
    assert main(["report", str(dataset)]) == 0  # the figure code warmed up outside the limit
    complete = out.read_bytes()
    out.write_text("previous report")
    capsys.readouterr()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(complete) // 2, hard))
    try:
        code = main(["report", str(dataset)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, ignored)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip() == f"error: {out}: " + (
        "file too large for this file system (or a file size limit); choose another --out"
    )
    assert out.read_text() == "previous report"
    assert not [p for p in dataset.iterdir() if p.name.startswith(".report.html")]
