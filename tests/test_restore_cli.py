"""``rcanlive restore`` / ``export`` / ``bench`` from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile
import torch

from rcanlive.cli import main
from rcanlive.inference import create_backend, predict_volume
from rcanlive.model import RCAN3D, PercentileNormalizer, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = RCAN3D(n_groups=1, n_blocks=1, channels=8)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    return save_checkpoint(path, net, PercentileNormalizer(), {"purpose": "cli test"})


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep built artifacts out of the user's cache."""
    monkeypatch.setenv("RCANLIVE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def raw_volume(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (100 + rng.poisson(rng.gamma(0.4, 60.0, size=shape))).astype(np.uint16)


def eager_restore(checkpoint: Path, volume: np.ndarray, tile: tuple[int, int, int]) -> np.ndarray:
    backend = create_backend("eager", load_checkpoint(checkpoint), "fp32", "cpu")
    return predict_volume(volume, backend, tile_shape=tile)


def errors(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed to stderr, with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_restore_tiff_to_tiff(tmp_path: Path, checkpoint: Path, cache: Path) -> None:
    volume = raw_volume((6, 40, 36), seed=1)
    source, target = tmp_path / "raw.tif", tmp_path / "out" / "restored.tif"
    tifffile.imwrite(source, volume, photometric="minisblack", metadata={"axes": "ZYX"})
    target.parent.mkdir()
    args = ["restore", str(source), str(target), "--model", str(checkpoint)]
    args += ["--backend", "eager", "--precision", "fp32", "--tile", "6,24,24"]
    assert main(args) == 0
    restored = tifffile.imread(target)
    assert restored.shape == volume.shape and restored.dtype == np.float32
    expected = eager_restore(checkpoint, volume, (6, 24, 24))
    np.testing.assert_allclose(restored, expected, rtol=1e-5, atol=1e-3)
    # Existing output is not overwritten by accident.
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0


def test_restore_folder_with_time_series(tmp_path: Path, checkpoint: Path, cache: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    series = raw_volume((3, 4, 20, 24), seed=2)  # T, Z, Y, X
    tifffile.imwrite(raw / "a.tif", series, photometric="minisblack", metadata={"axes": "TZYX"})
    tifffile.imwrite(
        raw / "b.tiff",
        raw_volume((5, 20, 24), seed=3),
        photometric="minisblack",
        metadata={"axes": "ZYX"},
    )
    (raw / "notes.txt").write_text("not an image")
    out = tmp_path / "restored"
    args = ["restore", str(raw), str(out), "--model", str(checkpoint), "--backend", "onnx"]
    assert main([*args, "--precision", "fp32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tiff"]
    with tifffile.TiffFile(out / "a.tif") as tif:
        assert tif.series[0].axes == "TZYX"
        restored = tif.series[0].asarray()
    assert restored.shape == series.shape
    for t in range(3):  # every time point restored on its own statistics
        expected = eager_restore(checkpoint, series[t], (4, 20, 24))
        assert rel_l2(restored[t], expected) < 1e-4


def test_export_then_restore_with_the_artifact(
    tmp_path: Path, checkpoint: Path, cache: Path
) -> None:
    artifact = tmp_path / "tiny.onnx"
    export = ["export", str(checkpoint), "--backend", "onnx", "--precision", "fp32"]
    assert main([*export, "--out", str(artifact)]) == 0
    assert artifact.is_file() and (tmp_path / "tiny.onnx.json").is_file()
    volume = raw_volume((4, 32, 32), seed=4)
    source, target = tmp_path / "raw.tif", tmp_path / "restored.tif"
    tifffile.imwrite(source, volume, photometric="minisblack")
    assert main(["restore", str(source), str(target), "--model", str(artifact)]) == 0
    expected = eager_restore(checkpoint, volume, (4, 32, 32))
    assert rel_l2(tifffile.imread(target), expected) < 1e-4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "bogus"], "bogus"),
        (["--precision", "int8"], "int8"),
        (["--tile", "16,256"], "--tile must be three positive integers"),
        (["--backend", "onnx", "--precision", "bf16"], "cannot run bf16"),
    ],
    ids=["backend", "precision", "tile", "unsupported"],
)
def test_bad_options_exit_2_with_a_message(
    tmp_path: Path,
    checkpoint: Path,
    cache: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    source = tmp_path / "raw.tif"
    tifffile.imwrite(source, raw_volume((4, 16, 16), seed=5), photometric="minisblack")
    args = ["restore", str(source), str(tmp_path / "out.tif"), "--model", str(checkpoint)]
    assert main([*args, *extra]) == 2
    err = errors(capsys)
    assert message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out.tif").exists()


def test_missing_inputs_exit_2(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "raw.tif"
    tifffile.imwrite(source, raw_volume((4, 16, 16), seed=6), photometric="minisblack")
    assert main(["restore", str(tmp_path / "nope.tif"), "x.tif", "--model", str(checkpoint)]) == 2
    assert "input not found" in errors(capsys)
    assert main(["restore", str(source), "x.tif", "--model", str(tmp_path / "nope.pt")]) == 2
    assert "model not found" in errors(capsys)
    assert main(["restore", str(source), "x.tif", "--model", "bundled:nope"]) == 2
    assert "no bundled model 'nope'; choose one of isim-sim, phantom-2x" in errors(capsys)
    not_a_checkpoint = tmp_path / "junk.pt"
    not_a_checkpoint.write_bytes(b"junk")
    assert main(["restore", str(source), "x.tif", "--model", str(not_a_checkpoint)]) == 2
    assert "not an rcanlive checkpoint" in errors(capsys)
    tifffile.imwrite(
        tmp_path / "flat.tif", np.full((4, 16, 16), 7, np.uint16), photometric="minisblack"
    )
    flat = ["restore", str(tmp_path / "flat.tif"), str(tmp_path / "o.tif")]
    assert main([*flat, "--model", str(checkpoint), "--backend", "eager"]) == 2
    assert "constant" in errors(capsys)


def test_bench_table_includes_eager_fp32_baseline(
    tmp_path: Path, checkpoint: Path, cache: Path
) -> None:
    report = tmp_path / "bench.md"
    args = ["bench", "--shapes", "4x16x16,2x8x12", "--backends", "onnx", "--precisions", "fp32"]
    args += ["--repeats", "1", "--warmup", "0", "--model", str(checkpoint)]
    assert main([*args, "--markdown", str(report)]) == 0
    rows = [line for line in report.read_text().splitlines() if line.startswith("| eager")]
    rows += [line for line in report.read_text().splitlines() if line.startswith("| onnx")]
    assert len(rows) == 4  # eager fp32 baseline + onnx fp32, for each shape
    eager_row = rows[0].split("|")
    assert eager_row[3].strip() == "4×16×16" and eager_row[8].strip() == "1.00"
    assert all(float(r.split("|")[6]) > 0 for r in rows)  # seconds per volume


@pytest.mark.parametrize(
    "make_out",
    [
        pytest.param(lambda src: src, id="same-file"),
        pytest.param(lambda src: src.parent, id="own-folder"),
        pytest.param(lambda src: _link(src.parent / "link.tif", src), id="symlink-to-input"),
        pytest.param(lambda src: _link(src.parent.parent / "dirlink", src.parent), id="link-dir"),
    ],
)
def test_restore_never_writes_over_its_input(tmp_path, tiny_checkpoint, make_out, capsys):
    import tifffile

    from rcanlive.cli import main

    folder = tmp_path / "raw"
    folder.mkdir()
    src = folder / "a.tif"
    data = np.random.default_rng(0).integers(100, 200, (5, 16, 16)).astype(np.uint16)
    tifffile.imwrite(src, data, photometric="minisblack")
    out = make_out(src)
    code = main(["restore", str(src), str(out), "-m", str(tiny_checkpoint), "--overwrite"])
    assert code == 2
    assert "replace the raw data" in " ".join(capsys.readouterr().err.split())
    np.testing.assert_array_equal(tifffile.imread(src), data)  # untouched, still uint16


def _link(link, target):
    link.symlink_to(target)
    return link


def test_restore_into_a_path_under_a_file_is_a_clear_error(tmp_path, tiny_checkpoint, capsys):
    import tifffile

    from rcanlive.cli import main

    src = tmp_path / "a.tif"
    tifffile.imwrite(src, np.ones((2, 8, 8), np.uint16))
    out = src / "sub" / "out.tif"
    assert main(["restore", str(src), str(out), "-m", str(tiny_checkpoint)]) == 2
    assert "is a file, not a folder" in " ".join(capsys.readouterr().err.split())


def test_a_2d_tiff_comes_back_2d(tmp_path, tiny_checkpoint):
    import tifffile

    from rcanlive.cli import main

    src = tmp_path / "plane.tif"
    tifffile.imwrite(src, np.random.default_rng(1).integers(100, 300, (24, 24)).astype(np.uint16))
    out = tmp_path / "out.tif"
    args = ["restore", str(src), str(out), "-m", str(tiny_checkpoint), "-b", "eager"]
    assert main([*args, "-p", "fp32"]) == 0
    restored = tifffile.imread(out)
    assert restored.shape == (24, 24) and restored.dtype == np.float32
