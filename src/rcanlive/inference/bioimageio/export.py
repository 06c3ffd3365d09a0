"""Write an rcanlive model as a bioimage.io model package (spec 0.5).

The package holds::

    bioimageio.yaml     the description (rdf), with config.rcanlive: architecture,
                        normalisation and training metadata, for an exact way back
    weights.pt          torch state dict of RCAN3D
    rcan3d.py           RCAN3D's source (rcanlive.model), the pytorch_state_dict architecture
    model.onnx          the same network as an ONNX graph (any batch and volume size)
    test_input.npy      a small raw volume (1, 1, Z, Y, X), float32
    test_output.npy     what the network makes of it, in normalised units
    cover.png           raw and restored maximum projections
    README.md           what the model is, its units, how to tile, how to cite

Preprocessing is the checkpoint's percentile normalisation as bioimage.io's
``scale_range`` over z, y and x. The output stays in normalised units: bioimage.io
postprocessing cannot refer to the *input's* percentiles, which rcanlive's way back to
intensities needs (see the README written into the package).
"""

from __future__ import annotations

import copy
import json
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile
import torch

from rcanlive.model import check_volume, count_parameters

from . import MARKER
from .architecture import FILE_NAME, architecture_source
from .readme import CITATION, DOI, readme_text

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from numpy.typing import ArrayLike, NDArray

    from rcanlive.model import LoadedModel

#: ``scale_range``'s epsilon: ``(x - lo) / (hi - lo + eps)`` (bioimage.io's default)
EPS = 1e-6
#: format of the ``config.rcanlive`` block, read back by :func:`.package.load_bioimageio`
CONFIG_VERSION = 1
ONNX_OPSET = 18


def rcanlive_version() -> str:
    """The installed rcanlive's version (``0+unknown`` from a bare source tree)."""
    try:
        return importlib_metadata.version("rcanlive")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


def make_test_tensors(
    loaded: LoadedModel, sample: ArrayLike
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The package's test input and output, both ``(1, 1, Z, Y, X)`` float32.

    The output is the network's, on CPU in float32, on the input normalised exactly as
    bioimage.io's ``scale_range`` does (numpy's linear percentiles, plus ``EPS``), so
    that bioimage.io tools reproduce it.
    """
    volume = check_volume(sample).astype(np.float32)
    lo, hi = np.percentile(volume, [loaded.normalizer.p_low, loaded.normalizer.p_high])
    if not hi > lo:
        raise ValueError(
            "the sample volume has no contrast between its normalisation percentiles; "
            "give a volume with some structure in it"
        )
    normed = (volume - np.float32(lo)) / np.float32(hi - lo + EPS)
    net = copy.deepcopy(loaded.model).to("cpu").float().eval()  # never move the caller's
    with torch.inference_mode():
        out = net(torch.from_numpy(np.ascontiguousarray(normed))[None, None].float())
    return volume[None, None], np.ascontiguousarray(out.numpy(), dtype=np.float32)


def _voxel_size(loaded: LoadedModel) -> tuple[float, float, float] | None:
    """The training data's (z, y, x) voxel size in µm, if the checkpoint tells it.

    Read from ``metadata["voxel_size_um"]``, else from the geometry of the pairs dataset
    named in the training config, when that dataset is still there.
    """
    recorded = loaded.metadata.get("voxel_size_um")
    if isinstance(recorded, (list, tuple)) and len(recorded) == 3:
        return (float(recorded[0]), float(recorded[1]), float(recorded[2]))
    data = (loaded.metadata.get("training_config") or {}).get("data") or {}
    pairs = data.get("pairs") if isinstance(data, dict) else None
    if not pairs or not Path(pairs).is_dir():
        return None
    from rcanlive.storage import open_dataset
    from rcanlive.storage.errors import DatasetError

    try:
        geometry = open_dataset(Path(pairs)).meta.get("geometry", {})
        dz, dxy = float(geometry["z_step_um"]), float(geometry["pixel_size_um"])
    except (OSError, KeyError, TypeError, ValueError, DatasetError):
        return None  # moved or damaged since training: the voxel size stays unknown
    return (dz, dxy, dxy)


def _write_files(
    folder: Path,
    loaded: LoadedModel,
    test_in: NDArray[np.float32],
    test_out: NDArray[np.float32],
    *,
    readme: str,
    onnx: bool,
) -> dict[str, Path]:
    """Write every file of the package into ``folder``; return them by role."""
    from .cover import write_cover

    files = {
        "weights": folder / "weights.pt",
        "architecture": folder / FILE_NAME,
        "test_input": folder / "test_input.npy",
        "test_output": folder / "test_output.npy",
        "sample_input": folder / "sample_input.tif",
        "sample_output": folder / "sample_output.tif",
        "cover": folder / "cover.png",
        "readme": folder / "README.md",
    }
    state = {k: v.detach().cpu().contiguous() for k, v in loaded.model.state_dict().items()}
    torch.save(state, files["weights"])
    files["architecture"].write_text(architecture_source(rcanlive_version()), "utf-8")
    np.save(files["test_input"], test_in)
    np.save(files["test_output"], test_out)
    # the same volumes as images, for bioimage.io's previews (its "sample tensors")
    tifffile.imwrite(files["sample_input"], test_in)
    tifffile.imwrite(files["sample_output"], test_out)
    write_cover(test_in[0, 0], test_out[0, 0], files["cover"])
    files["readme"].write_text(readme, "utf-8")
    if onnx:
        from ..backends.onnx_runtime import export_onnx

        files["onnx"] = export_onnx(loaded, folder / "model.onnx", precision="fp32")
    return files


def _rcanlive_config(loaded: LoadedModel) -> dict[str, Any]:
    """The ``config.rcanlive`` block: enough to rebuild the exact checkpoint."""
    return {
        "format": "rcanlive-bioimageio",
        "version": CONFIG_VERSION,
        "rcanlive_version": rcanlive_version(),
        "model_config": loaded.model_config.model_dump(),
        "normalizer": loaded.normalizer.to_dict(),
        "weights": "weights.pt",
        # through JSON so that only plain YAML types reach the description
        "metadata": json.loads(json.dumps(loaded.metadata, default=str)),
    }


# (long only by its numpy-style docstring: the body is the steps in order)
# (long by its docstring: the steps are the functions it calls)
def export_bioimageio(
    model: LoadedModel | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    sample: ArrayLike,
    voxel_size_um: Sequence[float] | None = None,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] = (),
    license: str = "CC-BY-4.0",
    onnx: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write ``model`` as a bioimage.io model package (spec 0.5) and return its path.

    Parameters
    ----------
    model
        A :class:`~rcanlive.model.LoadedModel`, a checkpoint, or a package written by
        this function.
    out
        Destination: a ``.zip`` file, or else a folder (created; its files replaced).
    sample
        A small raw ``(Z, Y, X)`` volume for the test input and the cover (e.g.
        16 × 64 × 64 voxels); the test output is the network's restoration of it.
    voxel_size_um
        ``(z, y, x)`` voxel size in µm of the data the model was trained on; default:
        what the checkpoint records. Without one the axes carry no unit.
    name, description
        Shown by bioimage.io tools; defaults name the architecture and the training.
    authors
        People who trained the model (at least one name; default: the login name).
    license
        SPDX identifier of the weights' licence.
    onnx
        Also include ONNX weights (needs the ``onnx`` and ``onnxscript`` packages).
    progress
        Called with a short note before each step.

    Raises
    ------
    ValueError
        For a sample that is not a usable 3D volume, a voxel size that is not three
        positive numbers, or a description bioimage.io rejects (the message lists why).
    """
    from ..backends.network import as_loaded_model

    say = progress or (lambda _note: None)
    loaded = as_loaded_model(model)
    if loaded.model_config.architecture != "rcan":
        raise ValueError(
            "bioimage.io export supports rcanlive's RCAN only; this checkpoint holds a "
            f"{loaded.model_config.architecture!r} network (CARE U-Net): run it with the "
            "eager, compiled or onnx backend instead"
        )
    voxel = tuple(float(v) for v in voxel_size_um) if voxel_size_um else _voxel_size(loaded)
    if voxel is not None and (len(voxel) != 3 or min(voxel) <= 0):
        raise ValueError(f"voxel_size_um must be three positive sizes (z, y, x), got {voxel}")
    c = loaded.model_config
    name = name or f"rcanlive 3D RCAN G{c.n_groups} B{c.n_blocks} C{c.channels}"
    description = description or (
        "3D residual channel attention network (Chen et al. 2021) that denoises and "
        "sharpens single-channel fluorescence microscopy volumes (iSIM), trained with rcanlive."
    )
    say("restoring the test volume")
    test_in, test_out = make_test_tensors(loaded, sample)
    readme = readme_text(
        loaded,
        name=name,
        description=description,
        version=rcanlive_version(),
        n_parameters=count_parameters(loaded.model),
        voxel_size_um=voxel,  # type: ignore[arg-type]
        onnx=onnx,
    )
    from .description import describe, save_package
    from .package import spec_io

    with tempfile.TemporaryDirectory(prefix="rcanlive-bioimageio-") as tmp:
        say("writing weights" + (" and the ONNX graph" if onnx else ""))
        files = _write_files(Path(tmp), loaded, test_in, test_out, readme=readme, onnx=onnx)
        say("validating the description")
        with spec_io():
            descr = describe(
                files,
                loaded,
                name=name,
                description=description,
                authors=list(authors) or [_login_name()],
                license=license,
                voxel_size_um=voxel,  # type: ignore[arg-type]
                config={MARKER: _rcanlive_config(loaded)},
                citation=(CITATION, DOI),
                onnx_opset=ONNX_OPSET,
            )
            say("packing")
            return save_package(descr, Path(out))


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
