"""Every backend that works here against eager fp32 on fresh random volumes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from rcanlive.inference import (
    BackendError,
    BackendUnavailable,
    auto_backend,
    available_backends,
    create_backend,
    export_artifact,
    open_artifact,
    read_manifest,
)
from rcanlive.inference.backends.precision import resolve_precision
from rcanlive.model import RCAN3D, LoadedModel, PercentileNormalizer

if TYPE_CHECKING:
    from pathlib import Path

TILE = (8, 16, 16)
BATCH = 2
FP32_TOLERANCE = 1e-4
REDUCED_TOLERANCE = 2e-2

AVAILABLE = {info.name: info for info in available_backends()}
HAS_CUDA = torch.cuda.is_available()


def tiny_model(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    net = RCAN3D(n_groups=1, n_blocks=1, channels=8).eval()
    return LoadedModel(net, net.config, PercentileNormalizer())


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return tiny_model()


_seed = iter(range(1000, 10**6))


def fresh_batch() -> np.ndarray:
    """A new random batch of normalised-looking tiles (never the same twice)."""
    rng = np.random.default_rng(next(_seed))
    return (rng.gamma(0.5, 0.4, size=(BATCH, 1, *TILE))).astype(np.float32)


def reference(model: LoadedModel, batch: np.ndarray) -> np.ndarray:
    return create_backend("eager", model, "fp32", "cpu").predict(batch)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def needs(backend: str, device: str = "cpu") -> pytest.MarkDecorator:
    """Skip unless ``backend`` runs on ``device`` here; the reason says what is missing."""
    info = AVAILABLE[backend]
    missing = [] if info.available else [info.detail]
    if device == "cuda" and not HAS_CUDA:
        missing.append("no CUDA GPU on this machine")
    return pytest.mark.skipif(
        device not in info.devices,
        reason=f"{backend} on {device} unavailable: {'; '.join(missing) or info.detail}",
    )


CASES = [
    # (backend, precision, device, create_backend options)
    pytest.param("eager", "bf16", "cpu", {}, id="eager-bf16-cpu"),
    pytest.param("eager", "fp16", "cpu", {}, id="eager-fp16-cpu"),
    pytest.param("onnx", "fp32", "cpu", {}, marks=needs("onnx"), id="onnx-fp32-cpu-dynamic"),
    pytest.param(
        "onnx", "fp32", "cpu", {"tile_shape": TILE}, marks=needs("onnx"), id="onnx-fp32-static"
    ),
    pytest.param("onnx", "fp16", "cpu", {}, marks=needs("onnx"), id="onnx-fp16-cpu"),
    pytest.param(
        "compiled",
        "bf16",
        "cpu",
        {"tile_shape": TILE, "compile_mode": "jit"},
        marks=needs("compiled"),
        id="torch.compile-bf16-cpu",
    ),
    pytest.param("eager", "fp32", "cuda", {}, marks=needs("eager", "cuda"), id="eager-fp32-cuda"),
    pytest.param("eager", "fp16", "cuda", {}, marks=needs("eager", "cuda"), id="eager-fp16-cuda"),
    pytest.param("eager", "bf16", "cuda", {}, marks=needs("eager", "cuda"), id="eager-bf16-cuda"),
    pytest.param(
        "compiled",
        "fp16",
        "cuda",
        {"tile_shape": TILE},
        marks=needs("compiled", "cuda"),
        id="aoti-fp16-cuda",
    ),
    pytest.param("onnx", "fp32", "cuda", {}, marks=needs("onnx", "cuda"), id="onnx-fp32-cuda"),
    pytest.param("onnx", "fp16", "cuda", {}, marks=needs("onnx", "cuda"), id="onnx-fp16-cuda"),
    *(
        pytest.param(
            "tensorrt",
            precision,
            "cuda",
            {"tile_shape": TILE},
            marks=needs("tensorrt", "cuda"),
            id=f"tensorrt-{precision}",
        )
        for precision in ("fp32", "fp16", "bf16")
    ),
]


@pytest.mark.parametrize(("name", "precision", "device", "options"), CASES)
def test_backend_matches_eager_fp32(
    model: LoadedModel,
    tmp_path: Path,
    name: str,
    precision: str,
    device: str,
    options: dict[str, object],
) -> None:
    with create_backend(
        name, model, precision, device, batch_size=BATCH, cache_dir=tmp_path, **options
    ) as backend:
        assert (backend.name, backend.precision) == (name, precision)
        for _ in range(2):
            batch = fresh_batch()
            out = backend.predict(batch)
            assert out.shape == batch.shape and out.dtype == np.float32
            error = rel_l2(out, reference(model, batch))
            limit = FP32_TOLERANCE if precision == "fp32" else REDUCED_TOLERANCE
            assert error < limit, f"{name} {precision}: relative L2 {error:.2e}"


@needs("compiled")
def test_aoti_package_is_cached_and_reloaded_without_compiling(
    model: LoadedModel, tmp_path: Path
) -> None:
    built = create_backend(
        "compiled", model, "fp32", "cpu", TILE, batch_size=BATCH, cache_dir=tmp_path
    )
    assert built.compiled_here  # type: ignore[attr-defined]
    package = built.package  # type: ignore[attr-defined]
    stamp = package.stat().st_mtime_ns
    batch = fresh_batch()
    assert rel_l2(built.predict(batch), reference(model, batch)) < FP32_TOLERANCE
    again = create_backend(
        "compiled", model, "fp32", "cpu", TILE, batch_size=BATCH, cache_dir=tmp_path
    )
    assert not again.compiled_here  # type: ignore[attr-defined]
    assert again.package == package and package.stat().st_mtime_ns == stamp  # type: ignore[attr-defined]
    manifest = read_manifest(package)
    assert manifest.tile_shape == TILE and manifest.batch_size == BATCH
    assert manifest.precision == "fp32" and manifest.backend == "compiled"
    # The package alone (no checkpoint) restores like eager fp32.
    alone = open_artifact(package)
    batch = fresh_batch()
    assert rel_l2(alone.predict(batch), reference(model, batch)) < FP32_TOLERANCE
    assert alone.normalizer == model.normalizer


@needs("onnx")
def test_onnx_export_is_cached_per_model(model: LoadedModel, tmp_path: Path) -> None:
    first = create_backend("onnx", model, "fp32", "cpu", cache_dir=tmp_path)
    stamp = first.path.stat().st_mtime_ns  # type: ignore[attr-defined]
    second = create_backend("onnx", model, "fp32", "cpu", cache_dir=tmp_path)
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp  # type: ignore[attr-defined]
    other = create_backend("onnx", tiny_model(seed=5), "fp32", "cpu", cache_dir=tmp_path)
    assert other.path != first.path  # type: ignore[attr-defined]


@needs("onnx")
def test_exported_artifact_is_checked_against_the_request(
    model: LoadedModel, tmp_path: Path
) -> None:
    path = export_artifact("onnx", model, tmp_path / "tiny", precision="fp16", device="cpu")
    assert path.name == "tiny.onnx"
    assert create_backend("auto", path).precision == "fp16"
    with pytest.raises(BackendError, match="fp16, not fp32"):
        create_backend("onnx", path, "fp32")
    with pytest.raises(BackendError, match="is a onnx artifact"):
        create_backend("compiled", path)
    path.with_name("tiny.onnx.json").unlink()
    with pytest.raises(FileNotFoundError, match="no manifest"):
        create_backend("onnx", path)


def test_unsupported_requests_say_why(model: LoadedModel) -> None:
    with pytest.raises(BackendUnavailable, match="bf16"):
        create_backend("onnx", model, "bf16", "cpu")
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tensorflow", model)
    with pytest.raises(ValueError, match="unknown precision"):
        create_backend("eager", model, "int8", "cpu")
    with pytest.raises(BackendUnavailable, match="nothing to export"):
        export_artifact("eager", model, "unused.pt2", device="cpu")
    if not HAS_CUDA:
        with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
            create_backend("eager", model, "fp32", "cuda")


def test_availability_report_names_every_backend_with_a_reason() -> None:
    assert set(AVAILABLE) == {"eager", "compiled", "onnx", "tensorrt"}
    assert AVAILABLE["eager"].available and "cpu" in AVAILABLE["eager"].devices
    for info in AVAILABLE.values():
        assert info.detail  # what it runs on, or why it does not
        assert info.available == bool(info.devices)
    if not HAS_CUDA:
        assert not AVAILABLE["tensorrt"].available
        assert (
            "GPU" in AVAILABLE["tensorrt"].detail or "not installed" in AVAILABLE["tensorrt"].detail
        )


def test_auto_prefers_tensorrt_on_gpu_and_compiled_on_cpu() -> None:
    cpu_choice = auto_backend("cpu")
    if AVAILABLE["compiled"].available:
        assert cpu_choice == "compiled"
    else:
        assert cpu_choice in ("onnx", "eager")
    if HAS_CUDA and AVAILABLE["tensorrt"].available:
        assert auto_backend("cuda") == "tensorrt"


def test_auto_precision_is_supported_by_the_backend() -> None:
    assert resolve_precision("auto", "onnx", "cpu") == "fp32"  # no bf16 Conv in ORT
    for name in ("eager", "compiled"):
        assert resolve_precision("auto", name, "cpu") in ("fp32", "bf16")


def test_one_table_names_every_backend():
    """The CLI, the precision rules and artifact detection all follow the table."""
    from rcanlive.cli.options import BackendChoice
    from rcanlive.inference.backends import BACKEND_NAMES, BACKENDS
    from rcanlive.inference.backends.precision import resolve_precision
    from rcanlive.inference.backends.table import ARTIFACT_SUFFIXES, backend_of_suffix

    assert tuple(c.value for c in BackendChoice) == BACKEND_NAMES
    for name, entry in BACKENDS.items():
        assert entry.name == name
        if entry.suffix is not None:
            assert backend_of_suffix(entry.suffix) == name
            assert entry.build and entry.open_artifact and entry.cache_key
        else:
            assert entry.open_model is not None and name not in ARTIFACT_SUFFIXES
        for precision in entry.precisions["cpu"]:
            assert resolve_precision(precision, name, "cpu") == precision


def test_auto_precision_follows_the_cpu_flags_not_onednn(monkeypatch):
    """oneDNN says bf16 on any AVX-512 CPU; without AVX512-BF16/AMX it is emulated (slow)."""
    from rcanlive import cpu
    from rcanlive.inference.backends.precision import resolve_precision

    emulated = frozenset({"avx2", "avx512f", "avx512_vnni"})
    monkeypatch.setattr(cpu, "cpu_flags", lambda: emulated)
    assert resolve_precision("auto", "compiled", "cpu") == "fp32"
    monkeypatch.setattr(cpu, "cpu_flags", lambda: emulated | {"avx512_bf16"})
    assert resolve_precision("auto", "compiled", "cpu") == "bf16"
