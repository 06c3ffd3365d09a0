"""Training's precision auto: measured where bf16 is native, never emulated bf16."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch

from rcanlive.config.training import TrainingConfig
from rcanlive.training import precision as training_precision
from rcanlive.training.precision import choose_precision

if TYPE_CHECKING:
    from pathlib import Path

CPU = torch.device("cpu")


def _config(tmp_path: Path, precision: str = "auto") -> TrainingConfig:
    return TrainingConfig.model_validate(
        {
            "data": {"raw_dir": "u", "gt_dir": "u"},
            "model": {"n_groups": 1, "n_blocks": 1, "channels": 8, "reduction": 4},
            "patch_shape": (8, 16, 16),
            "batch_size": 1,
            "precision": precision,
            "output_dir": tmp_path,
        }
    )


def test_auto_never_picks_emulated_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(training_precision, "has_native_bf16", lambda: False)
    dtype, timings = choose_precision(_config(tmp_path), CPU, cache_dir=tmp_path)
    assert dtype is None and timings == []  # fp32, nothing timed


@pytest.mark.parametrize(("name", "dtype"), [("fp32", None), ("bf16", torch.bfloat16)])
def test_a_fixed_precision_is_not_measured(tmp_path, name, dtype):
    assert choose_precision(_config(tmp_path, name), CPU, cache_dir=tmp_path) == (dtype, [])


def test_auto_with_native_bf16_times_both_and_keeps_the_faster_then_caches(tmp_path, monkeypatch):
    monkeypatch.setattr(training_precision, "has_native_bf16", lambda: True)
    config = _config(tmp_path)
    dtype, timings = choose_precision(config, CPU, cache_dir=tmp_path)
    assert [t.precision for t in timings] == ["fp32", "bf16"]
    assert all(t.seconds_per_step > 0 for t in timings)
    fastest = min(timings, key=lambda t: t.seconds_per_step).precision
    assert dtype == (torch.bfloat16 if fastest == "bf16" else None)
    assert len(list((tmp_path / "training-precision").glob("*.json"))) == 1

    def no_timing(*_args):
        raise AssertionError("measured again despite the cache")

    monkeypatch.setattr(training_precision, "_time_steps", no_timing)
    assert choose_precision(config, CPU, cache_dir=tmp_path) == (dtype, timings)
    # another shape is another measurement
    with pytest.raises(AssertionError, match="measured again"):
        choose_precision(config.replace(batch_size=2), CPU, cache_dir=tmp_path)
