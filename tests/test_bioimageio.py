"""bioimage.io model packages: export, validation, round trip, foreign models (issue 15)."""

from __future__ import annotations

import struct
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile
import torch

pytest.importorskip(
    "bioimageio.spec", reason="the bioimageio extra is missing: pip install 'rcanlive[bioimageio]'"
)
pytest.importorskip(
    "bioimageio.core", reason="the bioimageio extra is missing: pip install 'rcanlive[bioimageio]'"
)

from bioimageio.spec.model import v0_5 as spec

from rcanlive.cli import main
from rcanlive.inference import BackendRecipe, BackendUnavailable, create_backend, predict_volume
from rcanlive.inference.bioimageio import (
    PackageBackend,
    PackageError,
    check_package,
    export_bioimageio,
    is_foreign_package,
    is_rcanlive_package,
    load_bioimageio,
)
from rcanlive.inference.bioimageio.package import opened_description, spec_io
from rcanlive.model import load_checkpoint
from rcanlive.simulation.phantoms import PhantomSpec, make_phantom_pair

if TYPE_CHECKING:
    from pathlib import Path

TINY = {"n_groups": 1, "n_blocks": 1, "channels": 4, "reduction": 2}
SPHERES = PhantomSpec(shape=(8, 32, 32), n_spheres=10, gaussian_sigma=800.0)
CAREAMICS_SKIP = (
    "careamics is not installed here: careamics 0.3.5 pins torchvision<=0.26 (torch 2.11) "
    "and PyYAML<=6.0.3, so installing it would replace this environment's torch 2.13; "
    "test_careamics_style_unet_runs_as_packaged covers the same kind of package (fixed "
    "input size, fixed_zero_mean_unit_variance and its inverse)"
)


def errors(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed to stderr, with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def write_tiff(path: Path, volume: np.ndarray) -> Path:
    tifffile.imwrite(path, volume, photometric="minisblack", metadata={"axes": "ZYX"})
    return path


# --- rcanlive's own packages --------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RCAN trained by rcanlive's trainer (one epoch of two steps)."""
    from rcanlive.config.training import TrainingConfig
    from rcanlive.training import pairs_from_arrays, train

    raw, gt = make_phantom_pair(SPHERES, seed=0)
    config = TrainingConfig.model_validate(
        {
            "data": {"raw_dir": "unused", "gt_dir": "unused", "validation_patches": 2},
            "model": TINY,
            "patch_shape": (8, 32, 32),
            "batch_size": 2,
            "epochs": 1,
            "steps_per_epoch": 2,
            "precision": "fp32",
            "output_dir": tmp_path_factory.mktemp("run"),
            "progress": False,
        }
    )
    return train(config, pairs=pairs_from_arrays([raw], [gt])).best_checkpoint


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained checkpoint exported by the CLI as a bioimage.io zip."""
    folder = tmp_path_factory.mktemp("bioimageio")
    sample = write_tiff(folder / "sample.tif", make_phantom_pair(SPHERES, seed=5)[0])
    out = folder / "rcan.zip"
    args = ["export", str(trained), "--format", "bioimageio", "-o", str(out)]
    args += ["--sample", str(sample), "--voxel-size", "0.2,0.0555,0.0555"]
    assert main([*args, "--author", "Ada Lovelace"]) == 0
    return out


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


def test_export_describes_the_model_for_bioimageio(exported: Path) -> None:
    with opened_description(exported) as descr:  # validated by bioimageio.spec
        assert isinstance(descr, spec.ModelDescr), descr
        architecture = descr.weights.pytorch_state_dict.architecture
        assert architecture.callable == "RCAN3D"
        assert architecture.kwargs == {"in_channels": 1, "out_channels": 1, **TINY}
        onnx = descr.weights.onnx
        assert onnx is not None and onnx.parent == "pytorch_state_dict"
        (inputs,) = descr.inputs
        assert [str(a.id) for a in inputs.axes] == ["batch", "channel", "z", "y", "x"]
        space = {str(a.id): a for a in inputs.axes if a.type == "space"}
        assert {a.unit for a in space.values()} == {"micrometer"}
        assert (space["z"].scale, space["y"].scale, space["x"].scale) == (0.2, 0.0555, 0.0555)
        scale_range = next(p for p in inputs.preprocessing if p.id == "scale_range")
        percentiles = (scale_range.kwargs.min_percentile, scale_range.kwargs.max_percentile)
        assert percentiles == (2.0, 99.9)
        assert [str(a) for a in scale_range.kwargs.axes] == ["z", "y", "x"]
        assert str(descr.cite[0].doi) == "10.1038/s41592-021-01155-x"
        assert [a.name for a in descr.authors] == ["Ada Lovelace"]
        assert descr.config.model_extra["rcanlive"]["normalizer"]["p_high"] == 99.9
    with zipfile.ZipFile(exported) as zf:
        readme = zf.read("README.md").decode()
        width, height = png_size(zf.read("cover.png"))
        test_in = np.load(zf.open("test_input.npy"))
    assert "normalised units" in readme and "10.1038/s41592-021-01155-x" in readme
    assert width == 2 * height  # bioimage.io shows covers at 2:1
    assert test_in.shape == (1, 1, 8, 32, 32)
    assert is_rcanlive_package(exported) and not is_foreign_package(exported)


def test_exported_package_passes_bioimageio_core_test_of_the_model(exported: Path) -> None:
    from bioimageio.core import test_model

    with spec_io():
        summary = test_model(exported)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    reproduced = [d.name for d in summary.details if d.name.startswith("Reproduce test outputs")]
    assert len(reproduced) == 2  # pytorch_state_dict and onnx each reproduce the test output


def test_trained_checkpoint_round_trips_bit_identically(
    trained: Path, exported: Path, tmp_path: Path
) -> None:
    checkpoint, package = load_checkpoint(trained), load_bioimageio(exported)
    assert package.model_config == checkpoint.model_config
    assert package.normalizer == checkpoint.normalizer
    assert package.metadata["epoch"] == checkpoint.metadata["epoch"]
    ours, theirs = checkpoint.model.state_dict(), package.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)

    volume = make_phantom_pair(PhantomSpec(shape=(12, 40, 36), n_spheres=12), seed=9)[0]
    source = write_tiff(tmp_path / "raw.tif", volume)
    restored = {}
    for name, model in (("checkpoint", trained), ("package", exported)):
        out = tmp_path / f"{name}.tif"
        args = ["restore", str(source), str(out), "--model", str(model)]
        assert main([*args, "--backend", "eager", "--precision", "fp32", "--tile", "8,24,24"]) == 0
        restored[name] = tifffile.imread(out)
    np.testing.assert_array_equal(restored["package"], restored["checkpoint"])
    assert np.ptp(restored["package"]) > 0


def test_a_package_exports_again_and_reads_back_from_a_folder(
    exported: Path, tmp_path: Path
) -> None:
    sample = make_phantom_pair(SPHERES, seed=3)[0]
    folder = export_bioimageio(exported, tmp_path / "again", sample=sample, onnx=False)
    assert (folder / "rdf.yaml").is_file() or (folder / "bioimageio.yaml").is_file()
    again, first = load_bioimageio(folder), load_bioimageio(exported)
    weights = first.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in again.model.state_dict().items())
    assert again.normalizer == first.normalizer


def test_voxel_size_comes_from_the_training_pairs_dataset(tmp_path: Path) -> None:
    from rcanlive.model import RCAN3D, LoadedModel, PercentileNormalizer
    from rcanlive.storage.dataset import DatasetWriter, Geometry

    geometry = Geometry(
        planes=8,
        height=32,
        width=32,
        pixel_size_um=0.0555,
        z_step_um=0.25,
        n_t=1,
        channels=("low", "high"),
    )
    pairs = tmp_path / "pairs.ome.zarr"
    DatasetWriter(pairs, "pairs", geometry, plan={"positions_um": [[0.0, 0.0]]}, rig={}).finish(
        "complete"
    )
    torch.manual_seed(0)
    net = RCAN3D(**TINY)
    # what rcanlive's trainer records when it trains on a pairs dataset
    metadata = {"training_config": {"data": {"pairs": str(pairs)}}}
    loaded = LoadedModel(net, net.config, PercentileNormalizer(), metadata)
    sample = make_phantom_pair(SPHERES, seed=3)[0]
    out = export_bioimageio(loaded, tmp_path / "m.zip", sample=sample, onnx=False)
    with opened_description(out) as descr:
        space = [a for a in descr.inputs[0].axes if a.type == "space"]
        assert [(a.unit, a.scale) for a in space] == [("micrometer", 0.25)] + [
            ("micrometer", 0.0555)
        ] * 2
        assert descr.weights.onnx is None


def test_export_cli_refuses_backend_options_with_bioimageio(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["export", str(trained), "--format", "bioimageio", "--backend", "onnx"]
    assert main([*args, "-o", str(tmp_path / "m.zip")]) == 2
    assert "leave out --backend" in errors(capsys)
    assert not (tmp_path / "m.zip").exists()


# --- foreign packages: hand-built with bioimageio.spec -------------------------------------

ARCHITECTURES = '''
import torch
from torch import nn


class TinyUNet3D(nn.Module):
    """One level of a 3D U-Net (pool, convolve, upsample, concatenate): even sizes only."""

    def __init__(self, features: int = 4) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv3d(1, features, 3, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv3d(features, features, 3, padding=1), nn.ReLU())
        self.dec = nn.Conv3d(2 * features, 1, 3, padding=1)

    def forward(self, x):
        e = self.enc(x)
        m = nn.functional.interpolate(self.mid(nn.functional.max_pool3d(e, 2)), scale_factor=2)
        return x + self.dec(torch.cat([e, m], dim=1))


class ConvStack(nn.Module):
    """Three 3x3x3 convolutions: each output voxel sees 3 voxels each way (halo 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(),
            nn.Conv3d(4, 4, 3, padding=1), nn.ReLU(),
            nn.Conv3d(4, 1, 3, padding=1),
        )

    def forward(self, x):
        return self.body(x)
'''


def architectures() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(ARCHITECTURES, "architectures.py", "exec"), namespace)
    return namespace


def conv_stack_onnx(net: torch.nn.Module, path: Path) -> Path:
    """The ConvStack as an ONNX graph built node by node (no exporter: fast and stable)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    convs = [m for m in net.body if isinstance(m, torch.nn.Conv3d)]
    inits, nodes, current = [], [], "input"
    for i, conv in enumerate(convs):
        w, b = f"w{i}", f"b{i}"
        inits += [
            numpy_helper.from_array(conv.weight.detach().numpy(), w),
            numpy_helper.from_array(conv.bias.detach().numpy(), b),
        ]
        out = "output" if i == len(convs) - 1 else f"c{i}"
        nodes.append(helper.make_node("Conv", [current, w, b], [out], pads=[1] * 6))
        current = out
        if i < len(convs) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            current = f"r{i}"
    dims = ["batch", 1, "z", "y", "x"]
    graph = helper.make_graph(
        nodes,
        "conv_stack",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def space_axes(sizes: Any, output: bool = False, halo: int = 0, scale: float = 1.0) -> list:
    """z, y, x axes: input sizes (int or ParameterizedSize), or outputs tied to the input."""
    axes: list[Any] = []
    for name, size in zip("zyx", sizes, strict=True):
        if not output:
            axes.append(spec.SpaceInputAxis(id=spec.AxisId(name), size=size))
            continue
        same = spec.SizeReference(tensor_id=spec.TensorId("input"), axis_id=spec.AxisId(name))
        if halo:
            axes.append(spec.SpaceOutputAxisWithHalo(id=spec.AxisId(name), size=same, halo=halo))
        elif isinstance(size, int):
            axes.append(spec.SpaceOutputAxis(id=spec.AxisId(name), size=size))
        else:
            axes.append(spec.SpaceOutputAxis(id=spec.AxisId(name), size=same, scale=scale))
    return axes


def build_package(
    folder: Path,
    net: torch.nn.Module,
    callable_name: str,
    test_in: np.ndarray,
    test_out: np.ndarray,
    **kwargs: Any,
) -> Path:
    """A bioimage.io zip of ``net`` (pytorch_state_dict, optionally onnx) made with the spec."""
    with spec_io():
        return _build_package(folder, net, callable_name, test_in, test_out, **kwargs)


def _build_package(
    folder: Path,
    net: torch.nn.Module,
    callable_name: str,
    test_in: np.ndarray,
    test_out: np.ndarray,
    *,
    axes_in: list,
    axes_out: list,
    pre: tuple = (),
    post: tuple = (),
    onnx: bool = False,
    torchscript_only: bool = False,
) -> Path:
    from bioimageio.spec import save_bioimageio_package

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "architectures.py").write_text(ARCHITECTURES)
    torch.save(net.state_dict(), folder / "weights.pt")
    np.save(folder / "test_input.npy", test_in.astype(np.float32))
    np.save(folder / "test_output.npy", test_out.astype(np.float32))
    version = spec.Version(torch.__version__.split("+")[0])
    if torchscript_only:
        weights = spec.WeightsDescr(
            torchscript=spec.TorchscriptWeightsDescr(
                source=folder / "weights.pt", pytorch_version=version
            )
        )
    else:
        weights = spec.WeightsDescr(
            pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=folder / "weights.pt",
                architecture=spec.ArchitectureFromFileDescr(
                    source=folder / "architectures.py", callable=callable_name
                ),
                pytorch_version=version,
            ),
            onnx=spec.OnnxWeightsDescr(
                source=conv_stack_onnx(net, folder / "model.onnx"),
                opset_version=18,
                parent="pytorch_state_dict",
            )
            if onnx
            else None,
        )
    descr = spec.ModelDescr(
        name=f"test {folder.name}",
        description="a model built for rcanlive's tests",
        authors=[spec.Author(name="Test")],
        cite=[spec.CiteEntry(text="test", doi=spec.Doi("10.1038/s41592-021-01155-x"))],
        license=spec.LicenseId("MIT"),
        inputs=[
            spec.InputTensorDescr(
                id=spec.TensorId("input"),
                axes=axes_in,
                test_tensor=spec.FileDescr(source=folder / "test_input.npy"),
                preprocessing=list(pre),
            )
        ],
        outputs=[
            spec.OutputTensorDescr(
                id=spec.TensorId("output"),
                axes=axes_out,
                test_tensor=spec.FileDescr(source=folder / "test_output.npy"),
                postprocessing=list(post),
            )
        ],
        weights=weights,
    )
    return save_bioimageio_package(descr, output_path=folder.with_suffix(".zip"))


BC = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("intensity")])]
MEAN, STD = 400.0, 900.0  # the "training data's" statistics, as CAREamics records them


@pytest.fixture(scope="module")
def care_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A 3D U-Net packaged the way CAREamics does: a fixed input size, the training
    data's mean and std as fixed_zero_mean_unit_variance, and its inverse afterwards."""
    torch.manual_seed(1)
    net = architectures()["TinyUNet3D"]().eval()
    test_in = make_phantom_pair(SPHERES, seed=2)[0][None, None]
    with torch.no_grad():
        normed = (test_in - MEAN) / (STD + 1e-6)
        test_out = net(torch.from_numpy(normed.astype(np.float32))).numpy() * (STD + 1e-6) + MEAN
    inverse = spec.FixedZeroMeanUnitVarianceKwargs(
        mean=-MEAN / (STD + 1e-6), std=1 / (STD + 1e-6) - 1e-6
    )
    path = build_package(
        tmp_path_factory.mktemp("care") / "unet",
        net,
        "TinyUNet3D",
        test_in,
        test_out,
        axes_in=[*BC, *space_axes((8, 32, 32))],
        axes_out=[*BC, *space_axes((8, 32, 32), output=True)],
        pre=(
            spec.FixedZeroMeanUnitVarianceDescr(
                kwargs=spec.FixedZeroMeanUnitVarianceAlongAxisKwargs(
                    mean=[MEAN], std=[STD], axis=spec.AxisId("channel")
                )
            ),
        ),
        post=(spec.FixedZeroMeanUnitVarianceDescr(kwargs=inverse),),
    )
    return path, net


def test_careamics_style_unet_runs_as_packaged(
    care_like: tuple[Path, torch.nn.Module], tmp_path: Path
) -> None:
    from bioimageio.core import predict

    path, _ = care_like
    assert is_foreign_package(path) and not is_rcanlive_package(path)
    plan = check_package(path)
    assert plan.formats == ("pytorch_state_dict",) and plan.inverse_postprocessing
    with create_backend("auto", path) as backend:
        assert isinstance(backend, PackageBackend) and backend.name == "eager"
        assert backend.tile_shape is None  # any tile: larger ones are cut into blocks
        assert backend.max_block == (8, 32, 32)  # of the model's fixed input size
        # exactly one tile: rcanlive's result is bioimageio.core's own prediction
        volume = make_phantom_pair(SPHERES, seed=4)[0]
        ours = predict_volume(volume, backend)
        with opened_description(path) as descr:
            reference = predict(model=descr, inputs=volume[None, None])
            theirs = reference.members["output"].data.to_numpy()[0, 0]
            del reference
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-2)
        assert np.ptp(ours) > 100  # in the raw intensity scale, like the input
        # any other volume size: blocks of the fixed size inside each tile
        other = make_phantom_pair(PhantomSpec(shape=(11, 40, 45), n_spheres=12), seed=6)[0]
        restored = predict_volume(other, backend)
    assert restored.shape == (11, 40, 45)
    assert np.corrcoef(restored.ravel(), other.ravel())[0, 1] > 0.5  # an image, not noise
    source = write_tiff(tmp_path / "raw.tif", other)
    args = ["restore", str(source), str(tmp_path / "out.tif"), "--model", str(path)]
    assert main(args) == 0  # the CLI takes the package wherever it takes a checkpoint
    np.testing.assert_allclose(
        tifffile.imread(tmp_path / "out.tif"), restored, rtol=1e-5, atol=1e-3
    )
    with pytest.raises(BackendUnavailable, match="eager"):
        create_backend("compiled", path)
    recipe = BackendRecipe(path)  # what a restoration worker opens
    assert not recipe.measured  # auto does not time backends for a package it runs as is
    with recipe() as backend:
        assert isinstance(backend, PackageBackend)


@pytest.fixture(scope="module")
def conv_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The ConvStack with a scale_range preprocessing, packaged with halo 3 and without."""
    torch.manual_seed(2)
    net = architectures()["ConvStack"]().eval()
    test_in = make_phantom_pair(SPHERES, seed=7)[0][None, None]
    lo, hi = np.percentile(test_in, [1, 99.8])
    with torch.no_grad():
        test_out = net(torch.from_numpy(((test_in - lo) / (hi - lo + 1e-6)).astype(np.float32)))
    sizes = [spec.ParameterizedSize(min=8, step=1)] * 3
    zyx = [spec.AxisId(a) for a in "zyx"]
    scale_range = spec.ScaleRangeDescr(
        kwargs=spec.ScaleRangeKwargs(axes=zyx, min_percentile=1, max_percentile=99.8)
    )
    folder = tmp_path_factory.mktemp("halo")
    return {
        halo: build_package(
            folder / f"halo{halo}",
            net,
            "ConvStack",
            test_in,
            test_out.numpy(),
            axes_in=[*BC, *space_axes(sizes)],
            axes_out=[*BC, *space_axes(sizes, output=True, halo=halo)],
            pre=(scale_range,),
            onnx=True,
        )
        for halo in (0, 3)
    }


def test_halo_is_cropped_when_tiling(conv_stack: dict[int, Path]) -> None:
    volume = make_phantom_pair(PhantomSpec(shape=(12, 40, 40), n_spheres=20), seed=8)[0]
    seams = {}
    for halo, path in conv_stack.items():
        with create_backend("eager", path) as backend:
            assert backend.halo == (halo,) * 3 and backend.tile_shape is None
            whole = predict_volume(volume, backend, tile_shape=volume.shape)
            tiled = predict_volume(volume, backend, tile_shape=(12, 20, 20))
        seams[halo] = float(np.abs(tiled - whole).max() / np.ptp(whole))
    # with its halo cropped, tiles agree with the whole volume; without, seams show
    assert seams[3] < 1e-5
    assert seams[0] > 1e-3


def test_onnx_weights_of_a_package_run_like_its_torch_weights(conv_stack: dict[int, Path]) -> None:
    path = conv_stack[3]
    assert check_package(path).formats == ("pytorch_state_dict", "onnx")
    volume = make_phantom_pair(SPHERES, seed=9)[0]
    results = {}
    for name in ("eager", "onnx"):
        with create_backend(name, path) as backend:
            assert backend.name == name
            results[name] = predict_volume(volume, backend, output="normalized")
    np.testing.assert_allclose(results["onnx"], results["eager"], rtol=1e-4, atol=1e-4)


def _unrunnable(folder: Path, case: str) -> Path:
    """A valid bioimage.io package rcanlive cannot run, for each reason it names."""
    torch.manual_seed(0)
    net = architectures()["ConvStack"]()
    shape = (1, 1, 8, 16, 16)
    sizes = (8, 16, 16)
    axes_in, axes_out = [*BC, *space_axes(sizes)], [*BC, *space_axes(sizes, output=True)]
    pre: tuple = ()
    post: tuple = ()
    out_shape = shape
    if case == "2D":
        shape = out_shape = (1, 1, 16, 16)
        yx = [spec.SpaceInputAxis(id=spec.AxisId(a), size=16) for a in "yx"]
        axes_in, axes_out = [*BC, *yx], [*BC, *(spec.SpaceOutputAxis(id=a.id, size=16) for a in yx)]
    elif case == "channels":
        shape = out_shape = (1, 2, 8, 16, 16)
        two = spec.ChannelAxis(channel_names=[spec.Identifier("a"), spec.Identifier("b")])
        axes_in = [spec.BatchAxis(), two, *space_axes(sizes)]
        axes_out = [spec.BatchAxis(), two, *space_axes(sizes, output=True)]
    elif case == "time":
        shape = out_shape = (1, 3, 1, 8, 16, 16)
        axes_in = [spec.BatchAxis(), spec.TimeInputAxis(size=3), *BC[1:], *space_axes(sizes)]
        axes_out = [
            spec.BatchAxis(),
            spec.TimeOutputAxis(size=3),
            *BC[1:],
            *space_axes(sizes, True),
        ]
    elif case == "upsampling":
        out_shape = (1, 1, 16, 32, 32)
        free = [spec.ParameterizedSize(min=8, step=8)] * 3
        axes_in = [*BC, *space_axes(free)]
        axes_out = [*BC, *space_axes(free, output=True, scale=0.5)]
    elif case == "halo":
        axes_out = [*BC, *space_axes(sizes, output=True, halo=3)]
    elif case == "sigmoid":
        post = (spec.SigmoidDescr(),)
    elif case == "per-plane":
        yx = [spec.AxisId("y"), spec.AxisId("x")]
        pre = (spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(axes=yx, max_percentile=99)),)
    elif case == "not-inverse":
        fixed = spec.FixedZeroMeanUnitVarianceKwargs(mean=100.0, std=10.0)
        pre = (spec.FixedZeroMeanUnitVarianceDescr(kwargs=fixed),)
        post = (spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=2.0, offset=0.0)),)
    return build_package(
        folder / case.replace("-", "_"),
        net,
        "ConvStack",
        np.ones(shape),
        np.ones(out_shape),
        axes_in=axes_in,
        axes_out=axes_out,
        pre=pre,
        post=post,
        torchscript_only=case == "torchscript",
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("2D", "a 2D model"),
        ("channels", "2 channels"),
        ("time", "time axis"),
        ("upsampling", "cannot run models that crop, upsample or resample"),
        ("torchscript", "weights are in torchscript"),
        ("halo", "fixed z size 8 leaves too little inside its halo of 3"),
        ("sigmoid", "'sigmoid' is not supported"),
        ("per-plane", "not the whole volume"),
        ("not-inverse", "is not the inverse of the preprocessing"),
    ],
)
def test_a_package_rcanlive_cannot_run_says_why(tmp_path: Path, case: str, reason: str) -> None:
    path = _unrunnable(tmp_path, case)
    with pytest.raises(PackageError, match=reason):
        check_package(path)
    if case == "2D":  # a restoration worker opening it hears the same
        with pytest.raises(PackageError, match=reason):
            create_backend("auto", path)


def test_restore_cli_refuses_an_unrunnable_package_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _unrunnable(tmp_path, "2D")
    source = write_tiff(tmp_path / "raw.tif", make_phantom_pair(SPHERES, seed=1)[0])
    args = ["restore", str(source), str(tmp_path / "out.tif"), "--model", str(path)]
    assert main(args) == 2
    message = errors(capsys)
    assert "--model" in message and "a 2D model" in message and "z, y and x" in message
    assert not (tmp_path / "out.tif").exists()


def test_careamics_exported_care_model_runs_as_packaged(tmp_path: Path) -> None:
    pytest.importorskip("careamics", reason=CAREAMICS_SKIP)
    from careamics import CAREamist
    from careamics.config import create_care_configuration

    raw, gt = make_phantom_pair(PhantomSpec(shape=(16, 64, 64), n_spheres=30), seed=0)
    config = create_care_configuration(
        experiment_name="tiny_care",
        data_type="array",
        axes="ZYX",
        patch_size=[8, 32, 32],
        batch_size=2,
        num_epochs=1,
    )
    careamist = CAREamist(source=config, work_dir=tmp_path)
    careamist.train(train_source=raw, train_target=gt)
    path = tmp_path / "care.zip"
    careamist.export_to_bmz(
        path_to_archive=path,
        friendly_model_name="tiny-care",
        input_array=raw[:8, :32, :32],
        authors=[{"name": "Test"}],
        general_description="a tiny CARE model trained for rcanlive's tests",
        data_description="simulated spheres",
    )
    plan = check_package(path)
    assert plan.inverse_postprocessing  # CAREamics maps the output back to intensities
    with create_backend("auto", path) as backend:
        restored = predict_volume(raw, backend)
    assert restored.shape == raw.shape and np.isfinite(restored).all()
