"""The bioimage.io description (spec 0.5) of an exported rcanlive model, and its packing.

Only this module and :mod:`.package` import ``bioimageio.spec``; the names of the
spec's classes are kept here so the rest of rcanlive never depends on them.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import torch

from .architecture import CALLABLE

if TYPE_CHECKING:
    from pathlib import Path

    from bioimageio.spec.model.v0_5 import ModelDescr

    from rcanlive.model import LoadedModel

INPUT_ID = "raw"
OUTPUT_ID = "restored"


def require_spec() -> None:
    """Raise ``ImportError`` naming the extra when bioimageio.spec is missing."""
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"bioimage.io packages need the bioimageio.spec package ({exc}); "
            "pip install 'rcanlive[bioimageio]'"
        ) from None


def _axes(voxel_size_um: tuple[float, float, float] | None, output: bool) -> list[Any]:
    """Batch, channel, z, y, x; space axes in µm when the voxel size is known."""
    from bioimageio.spec.model.v0_5 import (
        AxisId,
        BatchAxis,
        ChannelAxis,
        Identifier,
        ParameterizedSize,
        SizeReference,
        SpaceInputAxis,
        SpaceOutputAxis,
        TensorId,
    )

    unit = "micrometer" if voxel_size_um is not None else None
    scales = voxel_size_um or (1.0, 1.0, 1.0)
    axes: list[Any] = [
        BatchAxis(),
        ChannelAxis(channel_names=[Identifier(OUTPUT_ID if output else INPUT_ID)]),
    ]
    for axis, scale in zip("zyx", scales, strict=True):
        if output:
            same = SizeReference(tensor_id=TensorId(INPUT_ID), axis_id=AxisId(axis))
            axes.append(SpaceOutputAxis(id=AxisId(axis), size=same, unit=unit, scale=scale))
        else:
            # 3×3×3 convolutions with zero padding: any size of one voxel or more
            size = ParameterizedSize(min=1, step=1)
            axes.append(SpaceInputAxis(id=AxisId(axis), size=size, unit=unit, scale=scale))
    return axes


def _tensors(
    files: dict[str, Path], loaded: LoadedModel, voxel: tuple[float, float, float] | None
) -> tuple[Any, Any]:
    """Input and output tensor descriptions, with their processing."""
    from bioimageio.spec.model.v0_5 import (
        AxisId,
        EnsureDtypeDescr,
        EnsureDtypeKwargs,
        FileDescr,
        InputTensorDescr,
        IntervalOrRatioDataDescr,
        OutputTensorDescr,
        ScaleRangeDescr,
        ScaleRangeKwargs,
        TensorId,
    )

    from .export import EPS

    n = loaded.normalizer
    scale_range = ScaleRangeDescr(
        kwargs=ScaleRangeKwargs(
            axes=[AxisId("z"), AxisId("y"), AxisId("x")],  # the whole volume, per sample
            min_percentile=n.p_low,
            max_percentile=n.p_high,
            eps=EPS,
        )
    )
    inputs = InputTensorDescr(
        id=TensorId(INPUT_ID),
        description="raw fluorescence volume, one channel",
        axes=_axes(voxel, output=False),
        test_tensor=FileDescr(source=files["test_input"]),
        sample_tensor=FileDescr(source=files["sample_input"]),
        data=IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            EnsureDtypeDescr(kwargs=EnsureDtypeKwargs(dtype="float32")),
            scale_range,
        ],
    )
    outputs = OutputTensorDescr(
        id=TensorId(OUTPUT_ID),
        description=f"restored volume in the input's normalised units (its percentile "
        f"{n.p_low:g} = 0, percentile {n.p_high:g} = 1)",
        axes=_axes(voxel, output=True),
        test_tensor=FileDescr(source=files["test_output"]),
        sample_tensor=FileDescr(source=files["sample_output"]),
        data=IntervalOrRatioDataDescr(type="float32"),
        postprocessing=[EnsureDtypeDescr(kwargs=EnsureDtypeKwargs(dtype="float32"))],
    )
    return inputs, outputs


def _weights(files: dict[str, Path], loaded: LoadedModel, onnx_opset: int) -> Any:
    """``pytorch_state_dict`` with the RCAN3D source, and ONNX converted from it."""
    from bioimageio.spec.model.v0_5 import (
        ArchitectureFromFileDescr,
        OnnxWeightsDescr,
        PytorchStateDictWeightsDescr,
        Version,
        WeightsDescr,
    )

    torch_version = Version(torch.__version__.split("+")[0])
    state_dict = PytorchStateDictWeightsDescr(
        source=files["weights"],
        architecture=ArchitectureFromFileDescr(
            source=files["architecture"],
            callable=CALLABLE,
            kwargs=loaded.model_config.model_dump(),
        ),
        pytorch_version=torch_version,
    )
    onnx = None
    if "onnx" in files:
        onnx = OnnxWeightsDescr(
            source=files["onnx"],
            opset_version=onnx_opset,
            parent="pytorch_state_dict",
            comment=f"torch.onnx.export(dynamo=True) with torch {torch_version}",
        )
    return WeightsDescr(pytorch_state_dict=state_dict, onnx=onnx)


def describe(
    files: dict[str, Path],
    loaded: LoadedModel,
    *,
    name: str,
    description: str,
    authors: list[str],
    license: str,
    voxel_size_um: tuple[float, float, float] | None,
    config: dict[str, Any],
    citation: tuple[str, str],
    onnx_opset: int,
) -> ModelDescr:
    """The validated :class:`~bioimageio.spec.model.v0_5.ModelDescr` of the files.

    Raises
    ------
    ValueError
        When bioimage.io rejects a field (the message lists every problem).
    """
    require_spec()
    from bioimageio.spec.model.v0_5 import (
        Author,
        CiteEntry,
        Doi,
        FileDescr,
        LicenseId,
        ModelDescr,
    )
    from pydantic import ValidationError

    from .export import rcanlive_version

    try:
        inputs, outputs = _tensors(files, loaded, voxel_size_um)
        return ModelDescr(
            name=name,
            description=description,
            authors=[Author(name=a) for a in authors],
            cite=[CiteEntry(text=citation[0], doi=Doi(citation[1]))],
            license=LicenseId(license),
            documentation=FileDescr(source=files["readme"]),
            covers=[FileDescr(source=files["cover"])],
            tags=["3d", "denoising", "fluorescence-light-microscopy", "rcan", "isim"],
            inputs=[inputs],
            outputs=[outputs],
            weights=_weights(files, loaded, onnx_opset),
            version=rcanlive_version().split("+")[0],
            config=config,
        )
    except ValidationError as exc:
        raise ValueError(f"bioimage.io rejects the model description: {exc}") from None


def save_package(descr: ModelDescr, out: Path) -> Path:
    """Write ``descr`` and its files as a ``.zip`` (by suffix) or a folder; return ``out``."""
    from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".zip":
        tmp = out.with_name(f".{out.name}.tmp.zip")
        save_bioimageio_package(descr, output_path=tmp)
        tmp.replace(out)  # never a half-written package under the real name
        return out
    if out.exists():
        from . import rdf_name

        if not out.is_dir() or (any(out.iterdir()) and rdf_name(out) is None):
            raise FileExistsError(
                f"{out} exists and is not a bioimage.io package folder; give a new folder "
                "or a .zip path"
            )
        shutil.rmtree(out)  # an earlier export of a package: replaced whole
    save_bioimageio_package_as_folder(descr, output_path=out)
    return out
