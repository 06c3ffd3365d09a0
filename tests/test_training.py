"""Patch sampling, augmentation, datasets, the trainer, and the train command."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile
import torch

from rcanlive.cli import main
from rcanlive.config.training import TrainingConfig
from rcanlive.model import PercentileNormalizer, load_checkpoint
from rcanlive.simulation.phantoms import PhantomSpec, make_phantom_pair, write_phantom_pairs
from rcanlive.training import (
    BackgroundRule,
    DatasetError,
    PatchDataset,
    PatchSampler,
    augment_pair,
    pairs_from_arrays,
    prepare,
    read_tiff_pairs,
    split_pairs,
    train,
)

if TYPE_CHECKING:
    from pathlib import Path

TINY_MODEL = {"n_groups": 1, "n_blocks": 1, "channels": 8, "reduction": 4}
NOISY = PhantomSpec(shape=(16, 32, 32), n_spheres=12, gaussian_sigma=1000.0)


def _config(out: Path, **changes: object) -> TrainingConfig:
    base: dict[str, object] = {
        "data": {"raw_dir": "unused", "gt_dir": "unused", "validation_patches": 2},
        "model": TINY_MODEL,
        "patch_shape": (16, 32, 32),
        "batch_size": 2,
        "epochs": 2,
        "steps_per_epoch": 4,
        "learning_rate": 2e-3,
        "precision": "fp32",
        "output_dir": out,
        "progress": False,
    }
    return TrainingConfig.model_validate({**base, **changes})


def _noisy_pairs(n: int) -> list:
    raws, gts = zip(*(make_phantom_pair(NOISY, seed=s) for s in range(n)), strict=True)
    return pairs_from_arrays(raws, gts)


# --- patches -----------------------------------------------------------------


def _sparse_volume() -> np.ndarray:
    high = np.zeros((16, 64, 64), np.float32)
    high[12:14, 55:58, 3:5] = 1.0  # 12 bright voxels in 65536, in a corner
    return high


def test_sampler_never_returns_pure_background_when_foreground_exists() -> None:
    high = _sparse_volume()
    low = 3 * high + 0.5
    sampler = PatchSampler((4, 8, 8), BackgroundRule(fraction=0.2, max_tries=5))
    rng = np.random.default_rng(0)
    for _ in range(300):
        lo, hi = sampler.sample(low, high, rng)
        assert hi.shape == (4, 8, 8)
        assert hi.max() > 0
        np.testing.assert_array_equal(lo, 3 * hi + 0.5)  # the same box in both volumes


def test_without_rejection_background_patches_do_come_up() -> None:
    high = _sparse_volume()
    sampler = PatchSampler((4, 8, 8), BackgroundRule(fraction=0.0))
    rng = np.random.default_rng(0)
    assert any(sampler.sample(high, high, rng)[1].max() == 0 for _ in range(50))


def test_rejection_applies_the_paper_rule_when_foreground_is_common() -> None:
    rng = np.random.default_rng(1)
    high = np.zeros((8, 64, 64), np.float32)
    high[:, :32] = rng.random((8, 32, 64), dtype=np.float32)  # half the volume has signal
    sampler = PatchSampler((4, 16, 16))
    for _ in range(100):
        _, hi = sampler.sample(high, high, rng)
        assert hi.mean() >= 0.2 * high.mean()


def test_patch_is_clipped_to_the_volume() -> None:
    vol = np.ones((6, 40, 300), np.float32)
    _, hi = PatchSampler().sample(vol, vol, np.random.default_rng(0))
    assert hi.shape == (6, 40, 256)


def test_background_rule_validation() -> None:
    with pytest.raises(ValueError, match="max_tries >= 1"):
        BackgroundRule(max_tries=0)


# --- augmentation ------------------------------------------------------------


def test_augmentation_is_identical_for_input_and_target_and_covers_all_symmetries() -> None:
    rng = np.random.default_rng(0)
    high = rng.random((4, 6, 6), dtype=np.float32)
    seen = set()
    for _ in range(300):
        lo, hi = augment_pair(2 * high, high, rng)
        np.testing.assert_array_equal(lo, 2 * hi)
        assert hi.flags.c_contiguous
        seen.add(hi.tobytes())
        # XY symmetries and a Z flip never move voxels between planes' sets
        assert sorted(map(float, hi[0].ravel())) in (
            sorted(map(float, high[0].ravel())),
            sorted(map(float, high[-1].ravel())),
        )
    assert len(seen) == 16  # 8 square symmetries × Z flip


def test_non_square_patches_keep_their_shape() -> None:
    rng = np.random.default_rng(0)
    a = np.zeros((2, 4, 6), np.float32)
    assert {augment_pair(a, a, rng)[0].shape for _ in range(40)} == {(2, 4, 6)}


# --- datasets ----------------------------------------------------------------


def test_tiff_pairs_with_mismatched_names_and_shapes_list_them(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "gt").mkdir()
    vol = np.ones((4, 8, 8), np.float32)
    gray = {"photometric": "minisblack"}
    for name in ("a", "b", "only_raw"):
        tifffile.imwrite(tmp_path / "raw" / f"{name}.tif", vol, **gray)
    tifffile.imwrite(tmp_path / "gt" / "a.tiff", vol, **gray)
    tifffile.imwrite(tmp_path / "gt" / "b.tif", np.ones((4, 8, 9), np.float32), **gray)
    tifffile.imwrite(tmp_path / "gt" / "only_gt.tif", vol, **gray)
    with pytest.raises(DatasetError) as info:
        read_tiff_pairs(tmp_path / "raw", tmp_path / "gt")
    msg = str(info.value)
    assert "but not in" in msg and "only_raw.tif" in msg and "only_gt.tif" in msg
    assert "b: raw shape (4, 8, 8) but ground truth (4, 8, 9)" in msg
    assert "a:" not in msg  # a.tif and a.tiff pair up


def test_in_memory_pairs_report_bad_volumes() -> None:
    good = np.ones((4, 8, 8))
    with pytest.raises(DatasetError, match=r"pair001: .*NaN") as info:
        pairs_from_arrays([good, np.full((4, 8, 8), np.nan)], [good, good])
    assert "pair000" not in str(info.value)
    with pytest.raises(DatasetError, match=r"input shape \(4, 8, 8\) but ground truth"):
        pairs_from_arrays([good], [np.ones((4, 8, 7))])


def test_split_holds_out_like_the_paper() -> None:
    pairs = pairs_from_arrays([np.ones((2, 2, 2))] * 35, [np.ones((2, 2, 2))] * 35)
    train_set, val = split_pairs(pairs, validation_fraction=0.15, seed=0)
    assert (len(train_set), len(val)) == (30, 5)
    assert not {p.name for p in train_set} & {p.name for p in val}
    assert split_pairs(pairs, validation_count=7)[1].__len__() == 7
    assert split_pairs(pairs[:1])[1] == pairs[:1]  # one pair: validated on itself
    with pytest.raises(DatasetError, match="leaves none to train on"):
        split_pairs(pairs[:3], validation_count=3)


def _grouped_pairs(groups: list[str]) -> list:
    vol = np.random.default_rng(0).random((2, 4, 4))
    names = [f"{g}_{i}" for i, g in enumerate(groups)]
    return pairs_from_arrays([vol] * len(groups), [vol] * len(groups), names, groups)


def test_split_never_puts_one_field_in_training_and_validation() -> None:
    pairs = _grouped_pairs(["a"] * 3 + ["b"] * 4 + ["c"] * 2 + ["d"] * 3)
    held_out_groups = set()
    for seed in range(12):
        train_set, val = split_pairs(pairs, validation_count=1, seed=seed)
        assert not {p.group for p in train_set} & {p.group for p in val}
        assert len({p.group for p in val}) == 1  # the count is of fields, not pairs
        assert len(train_set) + len(val) == len(pairs)
        held_out_groups |= {p.group for p in val}
    assert len(held_out_groups) >= 3  # a random field, not always the same one
    train_set, val = split_pairs(pairs, validation_fraction=0.5, seed=0)
    assert len({p.group for p in val}) == 2 and len({p.group for p in train_set}) == 2
    with pytest.raises(DatasetError, match="4 of 4 fields of view"):
        split_pairs(pairs, validation_count=4)


def test_split_of_a_single_field_validates_on_it_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pairs = _grouped_pairs(["cell"] * 3)
    with caplog.at_level("WARNING", logger="rcanlive"):
        train_set, val = split_pairs(pairs, validation_count=1)
    assert train_set == pairs and val == pairs
    assert "measures fitting" in caplog.text


def test_tiff_time_points_of_one_field_are_one_group(tmp_path: Path) -> None:
    stems = ["cell01_t000", "cell01_t001", "cell02_t0000", "cell02_t0001", "x_t1", "_t001"]
    for folder in ("raw", "gt"):
        (tmp_path / folder).mkdir()
        for i, stem in enumerate(stems):
            vol = np.random.default_rng(i).random((2, 8, 8)).astype(np.float32)
            tifffile.imwrite(tmp_path / folder / f"{stem}.tif", vol)
    pairs = read_tiff_pairs(tmp_path / "raw", tmp_path / "gt")
    assert {p.name: p.group for p in pairs} == {
        "cell01_t000": "cell01",
        "cell01_t001": "cell01",
        "cell02_t0000": "cell02",
        "cell02_t0001": "cell02",
        "x_t1": "x_t1",  # not a time suffix
        "_t001": "_t001",  # nothing left to name a field
    }


def test_constant_ground_truth_is_named() -> None:
    pairs = pairs_from_arrays([np.random.default_rng(0).random((4, 8, 8))], [np.zeros((4, 8, 8))])
    with pytest.raises(DatasetError, match="pair000: volume is constant"):
        prepare(pairs, PercentileNormalizer())


def test_patch_dataset_is_reproducible_per_epoch_and_index() -> None:
    volumes = prepare(_noisy_pairs(2), PercentileNormalizer())
    ds = PatchDataset(volumes, PatchSampler((8, 16, 16)), length=4, seed=3)
    a = ds[1]
    assert a[0].shape == (1, 8, 16, 16) and a[0].dtype == torch.float32
    assert torch.equal(ds[1][0], a[0])
    ds.set_epoch(2)
    assert not torch.equal(ds[1][0], a[0])


# --- trainer -----------------------------------------------------------------


def test_tiny_model_overfits_tiny_pair_set(tmp_path: Path) -> None:
    cfg = _config(tmp_path, epochs=6, steps_per_epoch=10, lr_step_epochs=3)
    result = train(cfg, pairs=_noisy_pairs(1))
    hist = result.history
    assert len(hist) == 6
    # measured: loss 0.069 -> 0.015, PSNR 13.0 dB raw -> 32.9 dB, SSIM 0.13 -> 0.84
    assert hist[-1].train_loss < 0.4 * hist[0].train_loss
    assert result.raw_psnr < 15.0
    assert result.best_psnr > result.raw_psnr + 12.0
    assert hist[-1].val_ssim > result.raw_ssim + 0.4
    assert [h.lr for h in hist] == [2e-3] * 3 + [1e-3] * 3  # halved after a quarter
    assert result.best_epoch == max(hist, key=lambda h: h.val_psnr).epoch
    loaded = load_checkpoint(result.best_checkpoint)
    assert loaded.metadata["epoch"] == result.best_epoch
    assert loaded.metadata["metrics"]["val_psnr"] == pytest.approx(result.best_psnr)
    assert loaded.metadata["training_config"]["loss"] == "mae"
    assert loaded.training_state is None  # best.pt is a model, last.pt can resume
    assert load_checkpoint(result.last_checkpoint).training_state is not None
    assert result.loss_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_exactly_where_training_stopped(tmp_path: Path) -> None:
    pairs = _noisy_pairs(2)
    straight = train(
        _config(
            tmp_path / "a", epochs=3, data={"raw_dir": "u", "gt_dir": "u", "validation_count": 1}
        ),
        pairs=pairs,
    )
    cfg = _config(
        tmp_path / "b", epochs=2, data={"raw_dir": "u", "gt_dir": "u", "validation_count": 1}
    )
    train(cfg, pairs=pairs)
    resumed = train(cfg.replace(epochs=3), pairs=pairs, resume=True)
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    assert resumed.history[-1].train_loss == straight.history[-1].train_loss
    a = load_checkpoint(straight.last_checkpoint).model.state_dict()
    b = load_checkpoint(resumed.last_checkpoint).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


class _FakeClock:
    """The trainer's clock, advanced only by training steps: 1 s each in epoch 1, then 2 s."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from rcanlive.training import trainer

        self.now, self.steps = 0.0, 0
        real_step = trainer.train_step

        def step(*args: object) -> torch.Tensor:
            self.steps += 1
            self.now += 1.0 if self.steps <= 2 else 2.0
            return real_step(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(trainer, "_clock", lambda: self.now)
        monkeypatch.setattr(trainer, "train_step", step)


def _budget_config(out: Path, **changes: object) -> TrainingConfig:
    return _config(
        out, epochs=8, steps_per_epoch=2, batch_size=1, patch_shape=(8, 32, 32), **changes
    )


def test_max_minutes_shortens_the_run_and_its_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = _FakeClock(monkeypatch)
    cfg = _budget_config(tmp_path, max_minutes=0.25)  # 15 s
    with caplog.at_level("INFO", logger="rcanlive"):
        result = train(cfg, pairs=_noisy_pairs(1))
    # epoch 1 (warm-up) took 2 s and is not taken as the epoch time; epoch 2 took 4 s:
    # after it (6 s spent) two more fit in the 15 s
    assert "max_minutes 0.25: 8 epochs do not fit (4.0 s/epoch); training 4" in caplog.text
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]
    assert clock.now <= 15.0
    assert (result.planned_epochs, result.epochs) == (8, 4)
    # the schedule now halves every quarter of 4 epochs (each epoch) instead of every 2:
    # from epoch 3 on the learning rate is where the new schedule has it
    assert [h.lr for h in result.history] == [2e-3, 2e-3, 5e-4, 2.5e-4]
    meta = load_checkpoint(result.last_checkpoint).metadata
    assert (meta["planned_epochs"], meta["scheduled_epochs"], meta["max_minutes"]) == (8, 4, 0.25)
    history = json.loads((tmp_path / "history.json").read_text())
    assert (history["planned_epochs"], history["scheduled_epochs"]) == (8, 4)
    assert history["max_minutes"] == 0.25 and len(history["epochs"]) == 4


def test_without_max_minutes_every_epoch_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _FakeClock(monkeypatch)
    result = train(_budget_config(tmp_path), pairs=_noisy_pairs(1))
    assert [h.epoch for h in result.history] == list(range(1, 9))
    assert [h.lr for h in result.history] == [2e-3 / 2 ** (i // 2) for i in range(8)]
    assert load_checkpoint(result.last_checkpoint).metadata["scheduled_epochs"] == 8


def test_max_minutes_run_can_be_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _FakeClock(monkeypatch)
    cfg = _budget_config(tmp_path, max_minutes=0.25)
    train(cfg, pairs=_noisy_pairs(1))  # stops after epoch 4
    resumed = train(cfg.replace(max_minutes=0.1), pairs=_noisy_pairs(1), resume=True)
    # a fresh 6 s budget: epoch 5 took 4 s, so it is the only one that fits
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4, 5]
    assert resumed.epochs == 5


def test_max_minutes_must_be_positive(tmp_path: Path) -> None:
    assert _config(tmp_path).max_minutes is None
    for bad in (0, -1.5):
        with pytest.raises(ValueError, match="max_minutes"):
            _config(tmp_path, max_minutes=bad)


def test_resume_without_a_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no last\.pt"):
        train(_config(tmp_path), pairs=_noisy_pairs(1), resume=True)


def test_bf16_training_runs_on_cpu(tmp_path: Path) -> None:
    result = train(_config(tmp_path, precision="bf16", epochs=1), pairs=_noisy_pairs(1))
    assert load_checkpoint(result.last_checkpoint).metadata["precision"] == "bfloat16"
    assert np.isfinite(result.history[0].train_loss)


def test_fp16_on_cpu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        train(_config(tmp_path, precision="fp16"), pairs=_noisy_pairs(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_path_under_torchrun_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what `torchrun --nproc-per-node 1` sets: one process, gloo on CPU
    for key, value in {
        "WORLD_SIZE": "1",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }.items():
        monkeypatch.setenv(key, value)
    result = train(_config(tmp_path, epochs=1), pairs=_noisy_pairs(1))
    meta = load_checkpoint(result.last_checkpoint).metadata
    assert meta["distributed"] is True and meta["world_size"] == 1
    assert not torch.distributed.is_initialized()  # the group it opened was closed


# --- CLI ---------------------------------------------------------------------


def _write_config(path: Path, data_dir: Path, **extra: str) -> Path:
    lines = [
        "patch_shape = [16, 32, 32]",
        "batch_size = 2",
        "steps_per_epoch = 3",
        "epochs = 5",
        "learning_rate = 2e-3",
        'precision = "fp32"',
        "progress = true",
        *(f"{k} = {v}" for k, v in extra.items()),
        "[data]",
        f'raw_dir = "{data_dir / "raw"}"',
        f'gt_dir = "{data_dir / "gt"}"',
        "validation_count = 1",
        "[model]",
        "n_groups = 1",
        "n_blocks = 1",
        "channels = 8",
    ]
    path.write_text("\n".join(lines))
    return path


def test_train_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_phantom_pairs(tmp_path / "data", 2, NOISY, seed=0)
    cfg = _write_config(tmp_path / "train.toml", tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--epochs", "2"]) == 0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    err = capsys.readouterr().err
    assert "best model:" in err and "validation PSNR" in err
    assert main(["train", "-c", str(cfg), "-o", str(out), "--epochs", "3", "--resume"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"loss": '"huber"'}, "loss: Input should be 'mae' or 'mse'"),
        ({"epochs_": "3"}, "epochs_: unknown setting"),
        ({"batch_size": "0"}, "batch_size: Input should be greater than or equal to 1"),
        ({"precision": '"fp8"'}, "precision: Input should be"),
    ],
    ids=["loss", "typo", "batch", "precision"],
)
def test_bad_training_config_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: dict[str, str], expected: str
) -> None:
    text = _write_config(tmp_path / "t.toml", tmp_path).read_text()
    # later keys win in TOML only if unique: rewrite the line instead of appending
    for key, value in extra.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key} =")]
        text = "\n".join([f"{key} = {value}", *lines])
    (tmp_path / "t.toml").write_text(text)
    assert main(["train", "--config", str(tmp_path / "t.toml")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert expected in err
    assert "Traceback" not in err


def test_train_cli_reports_unmatched_tiffs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_phantom_pairs(tmp_path / "data", 2, NOISY, seed=0)
    (tmp_path / "data" / "gt" / "phantom_001.tif").rename(tmp_path / "data" / "gt" / "other.tif")
    cfg = _write_config(tmp_path / "t.toml", tmp_path / "data")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "phantom_001.tif" in err and "other.tif" in err


def test_config_without_data_source_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.toml").write_text("epochs = 3\n[data]\nvalidation_count = 1\n")
    assert main(["train", "--config", str(tmp_path / "t.toml")]) == 2
    assert "no training data" in capsys.readouterr().err


def test_shipped_config_has_the_paper_defaults() -> None:
    from pathlib import Path

    from rcanlive.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "configs" / "rcan-isim.toml", TrainingConfig)
    assert cfg.patch_shape == (16, 256, 256)
    assert (cfg.epochs, cfg.steps_per_epoch, cfg.learning_rate, cfg.loss) == (300, 256, 1e-4, "mae")
    assert cfg.lr_step == 75
    assert cfg.model.model_dump() == {
        "in_channels": 1,
        "out_channels": 1,
        "n_groups": 5,
        "n_blocks": 3,
        "channels": 32,
        "reduction": 8,
    }


# --- metrics -----------------------------------------------------------------


def test_psnr_and_ssim_on_normalised_volumes() -> None:
    from rcanlive.analysis import psnr, ssim

    rng = np.random.default_rng(0)
    ref = rng.random((12, 32, 32), dtype=np.float32)
    assert psnr(ref, ref + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01, peak 1
    assert ssim(ref, ref) == pytest.approx(1.0)
    noise = rng.normal(0, 1, ref.shape).astype(np.float32)
    noisy = ref + 0.3 * noise
    assert 1.0 > ssim(ref, ref + 0.1 * noise) > ssim(ref, noisy) > ssim(ref, ref + noise) > 0
    thin = ref[:8]  # thinner than the 11-voxel window: mean of per-plane SSIMs
    assert ssim(thin, noisy[:8]) == pytest.approx(ssim(thin, noisy[:8], ssim_mode="planes"))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(ref, ref[:4])


def _write_pairs_dataset(path: Path, n_t: int, n_p: int) -> Path:
    """A pairs dataset of ``n_t`` time points at ``n_p`` stage positions."""
    from rcanlive.storage.dataset import DatasetWriter, Geometry
    from rcanlive.storage.volume import Volume

    geometry = Geometry(
        planes=16,
        height=32,
        width=32,
        pixel_size_um=0.0555,
        z_step_um=0.1,
        n_t=n_t,
        n_p=n_p,
        channels=("low", "high"),
    )
    plan = {"positions_um": [[10.0 * p, 0.0] for p in range(n_p)]}
    writer = DatasetWriter(path, "pairs", geometry, plan=plan, rig={})
    for t in range(n_t):
        for p in range(n_p):
            raw, gt = make_phantom_pair(NOISY, seed=10 * p + t)
            for c, vol in enumerate((raw, gt)):
                data = np.clip(vol + 100, 0, 65535).astype(np.uint16)
                writer.write(
                    Volume.from_array(
                        data, t, p, c, ("low", "high")[c], (0.0,) * 16, (0.0, 0.0), 0.0
                    )
                )
    writer.finish("complete")
    return path


def test_zarr_pairs_are_grouped_by_stage_position(tmp_path: Path) -> None:
    from rcanlive.training import read_zarr_pairs

    pairs = read_zarr_pairs(_write_pairs_dataset(tmp_path / "pairs.ome.zarr", n_t=2, n_p=2))
    assert [(p.name, p.group) for p in pairs] == [
        ("t0000_p000", "p000"),
        ("t0000_p001", "p001"),
        ("t0001_p000", "p000"),
        ("t0001_p001", "p001"),
    ]
    for seed in range(4):
        train_set, val = split_pairs(pairs, validation_count=1, seed=seed)
        assert len({p.group for p in val}) == 1 and len(val) == 2  # both time points
        assert not {p.group for p in train_set} & {p.group for p in val}


def test_training_from_an_ome_zarr_pairs_dataset(tmp_path: Path) -> None:
    path = _write_pairs_dataset(tmp_path / "pairs.ome.zarr", n_t=2, n_p=2)
    cfg = _config(tmp_path / "run", epochs=3, data={"pairs": str(path), "validation_count": 1})
    result = train(cfg)
    meta = load_checkpoint(result.best_checkpoint).metadata
    # one field of view (both its time points) held out
    assert len(meta["train_pairs"]) == 2 and len(meta["validation_pairs"]) == 2
    assert {n[-4:] for n in meta["train_pairs"]} != {n[-4:] for n in meta["validation_pairs"]}
    assert result.raw_psnr < result.best_psnr
