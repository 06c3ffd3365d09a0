"""Model cards: stored in a checkpoint, read tolerantly, checked against a run's input SNR."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from rcanlive.analysis.snr import Camera, volume_snr
from rcanlive.model import (
    CheckpointError,
    ModelCard,
    card_markdown,
    load_checkpoint,
    model_card,
    read_model_card,
    save_checkpoint,
    snr_reliability,
    with_model_card,
)

if TYPE_CHECKING:
    from pathlib import Path

CARD = ModelCard(
    summary="3D RCAN for iSIM volumes (test card)",
    training_data="simulated mitochondria pairs, input SNR 2–6",
    reliable_input_snr=(2.0, 20.0),
    metrics=[
        {"data": "sim test", "method": "raw", "psnr": 21.5, "ssim": 0.41, "convention": "a"},
        {"data": "sim test", "method": "RCAN", "psnr": 30.25, "ssim": 0.9, "convention": "a"},
    ],
    limitations=["simulated data only"],
    measured_by="python benchmarks/bench_quality.py",
)


@pytest.fixture
def checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint, with some metadata of its own."""
    loaded = load_checkpoint(tiny_checkpoint)
    path = tmp_path / "model.pt"
    save_checkpoint(path, loaded.model, loaded.normalizer, {"epoch": 3, "psnr": 28.5})
    return path


def test_card_round_trips_through_a_checkpoint(checkpoint: Path) -> None:
    before = load_checkpoint(checkpoint)
    assert read_model_card(checkpoint) is None  # no card yet: nothing to say
    with_model_card(checkpoint, CARD)
    assert read_model_card(checkpoint) == CARD
    after = load_checkpoint(checkpoint)
    assert model_card(after.metadata) == CARD
    assert after.metadata["epoch"] == 3 and after.metadata["psnr"] == 28.5
    assert after.model_config == before.model_config
    assert after.normalizer.to_dict() == before.normalizer.to_dict()
    for (name, a), (_, b) in zip(
        before.model.state_dict().items(), after.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert not list(checkpoint.parent.glob(".*tmp"))  # the atomic write left nothing behind


def test_with_model_card_refuses_what_is_not_a_checkpoint(tmp_path: Path) -> None:
    other = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not an rcanlive checkpoint"):
        with_model_card(other, CARD)
    with pytest.raises(FileNotFoundError):
        with_model_card(tmp_path / "missing.pt", CARD)


@pytest.mark.parametrize(
    "card",
    [
        {"summary": "x", "training_data": "y", "reliable_input_snr": [5.0, 2.0]},
        {"summary": "x", "training_data": "y", "reliable_input_snr": [1.0, math.inf]},
        {"summary": "x", "training_data": "y"},
        {"summary": "x", "training_data": "y", "reliable_input_snr": [1, 2], "extra": 1},
        {
            "summary": "x",
            "training_data": "y",
            "reliable_input_snr": [1, 2],
            "metrics": [{"psnr": 30}],
        },
        "not a card",
    ],
)
def test_malformed_card_is_ignored_with_a_warning(
    card: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rcanlive"):
        assert model_card({"model_card": card}) is None
    assert "ignoring the model card" in caplog.text


def test_no_card_is_silent(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with caplog.at_level(logging.WARNING, logger="rcanlive"):
        assert model_card({}) is None
        assert model_card(None) is None
        assert read_model_card(tmp_path / "model.onnx") is None
    assert caplog.text == ""


def test_unreadable_checkpoint_gives_no_card(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a zip")
    assert read_model_card(broken) is None


def test_snr_reliability() -> None:
    assert snr_reliability(CARD, 2.0) is None
    assert snr_reliability(CARD, 7.5) is None
    assert snr_reliability(CARD, math.nan) is None
    below = snr_reliability(CARD, 1.4)
    assert below is not None
    assert "input SNR 1.4 (median over the foreground) is below 2" in below
    assert "raise the excitation power" in below
    above = snr_reliability(CARD, 31.0)
    assert above is not None and "above 20" in above


def test_card_markdown() -> None:
    text = card_markdown(CARD)
    assert "| sim test | RCAN | 30.25 | 0.900 |\n" in text  # one convention: said once
    assert "Convention: a." in text
    assert "from 2 to 20" in text
    assert "- simulated data only" in text
    assert "`python benchmarks/bench_quality.py`" in text


def _dim_volume(t: int) -> SimpleNamespace:
    """A raw volume whose foreground sits 4 counts above the offset: SNR about 1."""
    data = np.full((4, 48, 48), 100, np.uint16)
    data[:, 12:36, 12:36] = 104
    return SimpleNamespace(data=data, t=t, p=0, c=0, channel="488", elapsed_s=float(t))


def test_live_run_summary_warns_outside_the_reliable_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rcanlive.cli.running import _after_run
    from rcanlive.dashboard.model import DashboardModel

    model = DashboardModel(Camera(), title="live")
    for t in range(3):
        model.add_raw(_dim_volume(t))
    expected = volume_snr(_dim_volume(0).data, Camera()).median
    assert expected < 2.0
    feed = SimpleNamespace(model=model, close=lambda: None)
    summary = {"backend": "eager", "precision": "fp32", "submitted": 3, "restored": 3}
    _after_run(summary, feed, tmp_path, CARD, tmp_path)
    err = " ".join(capsys.readouterr().err.split())
    assert "model reliable at median input SNR 2–20 (model card)" in err
    assert f"warning: input SNR {expected:.3g} (median over the foreground) is below 2" in err
    html = (tmp_path / "report.html").read_text()
    assert f"input SNR {expected:.3g} (median over the foreground) is below 2" in html


def test_live_run_summary_is_quiet_inside_the_range_or_without_a_card(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rcanlive.cli.running import _after_run
    from rcanlive.dashboard.model import DashboardModel

    model = DashboardModel(Camera(), title="live")
    model.add_raw(_dim_volume(0))
    feed = SimpleNamespace(model=model, close=lambda: None)
    summary = {"backend": "eager", "precision": "fp32", "submitted": 1, "restored": 1}
    low = CARD.model_copy(update={"reliable_input_snr": (0.5, 20.0)})
    _after_run(summary, feed, None, low)
    _after_run(summary, feed, None, None)
    err = capsys.readouterr().err
    assert "warning" not in err
    assert err.count("model reliable at") == 1


def test_restore_checks_a_dataset_against_the_card(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rcanlive restore DATASET`` measures the raw volumes with the dataset's camera."""
    from rcanlive.cli.restore import _check_model_card
    from rcanlive.storage import DatasetWriter, Geometry, Volume

    _check_model_card(checkpoint, tmp_path)  # no card: not even the dataset is read
    assert capsys.readouterr().err == ""
    rig = {"camera": {"offset_counts": 90.0, "electrons_per_count": 0.46, "read_noise_e": 1.3}}
    g = Geometry(planes=4, height=48, width=48, pixel_size_um=0.1, z_step_um=0.2, n_t=2)
    path = tmp_path / "live.ome.zarr"
    writer = DatasetWriter(path, "live", g, plan={}, rig=rig)
    for t in range(2):
        data = _dim_volume(t).data - np.uint16(10)  # this camera's offset is 90
        writer.write(Volume.from_array(data, t, 0, 0, "488", (0, 0.2, 0.4, 0.6), (0, 0), 0.0))
    writer.finish("completed")
    with_model_card(checkpoint, CARD)
    _check_model_card(checkpoint, path)
    err = " ".join(capsys.readouterr().err.split())
    expected = volume_snr(_dim_volume(0).data, Camera()).median
    assert "model reliable at median input SNR 2–20" in err
    assert f"input SNR {expected:.3g} (median over the foreground) is below 2" in err
