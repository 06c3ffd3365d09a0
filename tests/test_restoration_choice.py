"""``--backend auto`` is measured, cached and checked; datasets restore on Dask workers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rcanlive.inference import BackendRecipe, autotune
from rcanlive.storage import DatasetWriter, Geometry, Volume, open_dataset, read_restored


def test_auto_times_the_candidates_and_takes_the_fastest_accurate(tiny_checkpoint, tmp_path):
    recipe = BackendRecipe(tiny_checkpoint, tile_shape=(4, 32, 32), cache_dir=tmp_path)
    only = [("eager", "fp32"), ("eager", "bf16"), ("onnx", "fp32")]
    lines: list[str] = []
    chosen, trials = autotune.choose(recipe, only=only, log=lines.append)
    assert [(t.backend, t.precision) for t in trials] == only
    assert all(t.seconds_per_tile and t.seconds_per_tile > 0 for t in trials)
    accepted = [t for t in trials if t.accepted]
    best = min(accepted, key=lambda t: t.seconds_per_tile)
    assert (chosen.backend, chosen.precision) == (best.backend, best.precision)
    assert chosen.device == "cpu" and len(lines) == 1 + len(only)  # it says what it does
    onnx = trials[2]
    assert onnx.agreement_db is not None and onnx.agreement_db > 100  # same arithmetic
    # the table is cached: a second call measures nothing
    cached = list((tmp_path / "autotune").glob("*.json"))
    assert len(cached) == 1
    again, trials_again = autotune.choose(recipe, only=only, log=lines.append)
    assert trials_again == trials and len(lines) == 1 + len(only)
    assert again == chosen


def test_auto_rejects_a_precision_that_changes_the_output(tiny_checkpoint, tmp_path, monkeypatch):
    # bf16 agrees with fp32 to about 50-80 dB; with a stricter gate it must be refused
    monkeypatch.setattr(autotune, "MIN_AGREEMENT_DB", 120.0)
    recipe = BackendRecipe(
        tiny_checkpoint, "eager", "auto", tile_shape=(4, 32, 32), cache_dir=tmp_path
    )
    chosen, trials = autotune.choose(
        recipe, only=[("eager", "bf16"), ("eager", "fp32")], log=lambda m: None
    )
    bf16 = next(t for t in trials if t.precision == "bf16")
    assert not bf16.accepted and "differs from eager fp32" in bf16.note
    assert chosen.precision == "fp32"


def test_auto_choice_travels_with_the_backend(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(autotune, "candidates", lambda device: [("eager", "fp32")])
    backend = BackendRecipe(tiny_checkpoint, tile_shape=(4, 32, 32), cache_dir=tmp_path)()
    assert backend.name == "eager"
    assert [t["backend"] for t in backend.auto_choice] == ["eager"]


def test_cache_key_names_the_cpu_flags():
    assert autotune.device_model("cpu")  # model name and the flags that decide bf16 speed


def _live_dataset(path, volumes=4):
    g = Geometry(planes=4, height=32, width=32, pixel_size_um=0.1, z_step_um=0.25, n_t=volumes)
    writer = DatasetWriter(path, "live", g, plan={}, rig={})
    rng = np.random.default_rng(0)
    for t in range(volumes):
        data = rng.integers(100, 400, (4, 32, 32)).astype(np.uint16)
        writer.write(Volume.from_array(data, t, 0, 0, "x", (0.0,) * 4, (0.0, 0.0), float(t)))
    writer.finish("completed")
    return path


@pytest.mark.slow
def test_restore_on_dask_workers_matches_one_process(tiny_checkpoint, tmp_path):
    from rcanlive.inference.offline import restore_dataset, volumes_to_restore

    recipe = BackendRecipe(tiny_checkpoint, "eager", "fp32", "cpu", (4, 32, 32))
    here = _live_dataset(tmp_path / "here.ome.zarr")
    there = _live_dataset(tmp_path / "there.ome.zarr")
    done = restore_dataset(here, recipe, volumes_to_restore(here, False))
    assert done.restored == 4 and done.scheduler == "this process"
    ticks: list[int] = []
    spread = restore_dataset(
        there,
        recipe,
        volumes_to_restore(there, False),
        scheduler="local",
        on_done=lambda: ticks.append(1),
    )
    assert spread.restored == 4 and "local cluster" in spread.scheduler and len(ticks) == 4
    records = [json.loads(line) for line in (there / "restored.jsonl").read_text().splitlines()]
    assert sorted(r["t"] for r in records) == [0, 1, 2, 3]  # each exactly once
    a, b = open_dataset(here), open_dataset(there)
    for t in range(4):
        np.testing.assert_array_equal(read_restored(a, t), read_restored(b, t))
