"""Bad configs: a message naming the field, exit code 2, no traceback, no hardware."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcanlive.cli import main

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
    from rcanlive.cli.acquire import load_and_prepare

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
