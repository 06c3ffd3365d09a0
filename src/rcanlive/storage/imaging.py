"""How a dataset's volumes were imaged (voxel size, channels, camera offset), and one
volume with its voxel size from a dataset or a TIFF.

A dataset records its voxel size in ``geometry`` (and, for older datasets, at the top
of its metadata), its channels' names, and the rig it was acquired on, whose camera
offset is what an empty voxel reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The camera offset of the paper's sCMOS, and of a rig config that sets none, counts.
DEFAULT_OFFSET_COUNTS = 100.0
TIFF_SUFFIXES = (".tif", ".tiff")


class MissingVoxelSize(ValueError):
    """A volume whose voxel size is neither recorded nor given.

    Attributes
    ----------
    missing
        What the caller must give: ``"pixel_size"``, ``"z_step"`` or both.
    """

    def __init__(self, message: str, missing: tuple[str, ...]) -> None:
        super().__init__(message)
        self.missing = missing


class MissingVolume(LookupError):
    """A dataset that holds no such volume; the message lists some it holds."""


@dataclass(frozen=True, slots=True)
class Imaging:
    """What a dataset records of how its volumes were imaged.

    Attributes
    ----------
    z_step_um, pixel_size_um
        The voxel size, µm (None where not recorded).
    channels
        The channels' names (``"488nm 33 mW"``), in channel order.
    offset_counts
        The camera offset of the dataset's rig (:data:`DEFAULT_OFFSET_COUNTS` where
        the rig records none).
    """

    z_step_um: float | None
    pixel_size_um: float | None
    channels: tuple[str, ...] = ()
    offset_counts: float = DEFAULT_OFFSET_COUNTS

    def voxel_um(self) -> tuple[float, float]:
        """``(z step, pixel size)`` in µm.

        Raises
        ------
        MissingVoxelSize
            If the dataset records no voxel size.
        """
        if self.z_step_um is None or self.pixel_size_um is None:
            raise MissingVoxelSize("the dataset records no voxel size", ("pixel_size", "z_step"))
        return self.z_step_um, self.pixel_size_um

    def channel(self, c: int) -> str:
        """The name of channel ``c`` (``""`` where none is recorded)."""
        return self.channels[c] if 0 <= c < len(self.channels) else ""


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def dataset_imaging(meta: Mapping[str, Any]) -> Imaging:
    """The :class:`Imaging` a dataset's metadata (``Dataset.meta``) records."""
    geometry = meta.get("geometry") or {}
    camera = (meta.get("rig") or {}).get("camera") or {}
    return Imaging(
        z_step_um=_number(geometry.get("z_step_um", meta.get("z_step_um"))),
        pixel_size_um=_number(geometry.get("pixel_size_um", meta.get("pixel_size_um"))),
        channels=tuple(str(c) for c in meta.get("channels") or geometry.get("channels") or ()),
        offset_counts=float(camera.get("offset_counts", DEFAULT_OFFSET_COUNTS)),
    )


@dataclass(frozen=True, slots=True)
class SampledVolume:
    """A ``(Z, Y, X)`` volume (or ``(Y, X)`` image) and its voxel size, nm."""

    data: np.ndarray
    pixel_size_nm: float
    z_step_nm: float


def read_sampled_volume(
    source: str | Path,
    key: tuple[int, int, int] = (0, 0, 0),
    *,
    image: str = "raw",
    pixel_size_nm: float | None = None,
    z_step_nm: float | None = None,
) -> SampledVolume:
    """One volume of a dataset, or a YX/ZYX TIFF, with its voxel size.

    Parameters
    ----------
    source
        An rcanlive dataset (a folder) or a TIFF.
    key
        ``(t, p, c)`` of the dataset's volume.
    image
        ``raw`` or ``restored`` (datasets).
    pixel_size_nm, z_step_nm
        The voxel size; a dataset's recorded one is used for what is not given. A
        single TIFF image needs no z step.

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist.
    MissingVoxelSize
        If the voxel size is needed and neither given nor recorded.
    MissingVolume
        If the dataset holds no such volume.
    ValueError
        If ``source`` is neither a dataset nor a readable YX/ZYX TIFF.
    DamagedVolume
        If the dataset's volume is damaged (its message says how).
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"not found: {path}")
    if path.is_dir():
        return _dataset_volume(path, key, image, pixel_size_nm, z_step_nm)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _tiff_volume(path, pixel_size_nm, z_step_nm)
    raise ValueError(f"{path} is neither an rcanlive dataset (.ome.zarr) nor a TIFF")


def _tiff_volume(path: Path, pixel_size_nm: float | None, z_step_nm: float | None) -> SampledVolume:
    """A YX or ZYX TIFF; TIFFs record no voxel size the caller could rely on."""
    import tifffile

    if pixel_size_nm is None:
        raise MissingVoxelSize(f"{path} is a TIFF: give its pixel size", ("pixel_size",))
    try:
        data = np.squeeze(tifffile.imread(path))
    except (tifffile.TiffFileError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable TIFF ({exc})") from None
    if data.ndim not in (2, 3):
        raise ValueError(f"{path} holds an image of shape {data.shape}; give a YX or ZYX TIFF")
    if data.ndim == 3 and z_step_nm is None:
        raise MissingVoxelSize(f"{path} is a z-stack: give its plane spacing", ("z_step",))
    return SampledVolume(data, pixel_size_nm, z_step_nm if z_step_nm is not None else pixel_size_nm)


def _dataset_volume(
    path: Path,
    key: tuple[int, int, int],
    image: str,
    pixel_size_nm: float | None,
    z_step_nm: float | None,
) -> SampledVolume:
    """One volume of an rcanlive dataset and its voxel size (nm) from the dataset."""
    from .dataset import open_dataset
    from .errors import DamagedVolume

    dataset = open_dataset(path)
    imaging = dataset_imaging(dataset.meta)
    pixel_size_nm = pixel_size_nm or _nm(imaging.pixel_size_um)
    z_step_nm = z_step_nm or _nm(imaging.z_step_um)
    if pixel_size_nm is None or z_step_nm is None:
        raise MissingVoxelSize(f"{path} records no voxel size; give it", ("pixel_size", "z_step"))
    t, p, c = key
    try:
        volume = dataset.volume(t, p=p, c=c, image=image)
    except DamagedVolume:
        raise  # its own message says what is damaged
    except (KeyError, IndexError) as exc:
        keys = ", ".join(f"t={k[0]} p={k[1]} c={k[2]}" for k in dataset.keys()[:8])
        raise MissingVolume(
            f"{path}: no {image} volume t={t} p={p} c={c} ({exc}); it holds: {keys or 'none'}"
        ) from None
    return SampledVolume(volume, pixel_size_nm, z_step_nm)


def _nm(um: float | None) -> float | None:
    return None if um is None else um * 1000.0
