"""Training pairs for expansion-microscopy resolution enhancement (the paper's Fig. 4a).

The paper trains RCAN to turn iSIM volumes of unexpanded cells into expansion
ground truth. Each pair is made from one post-expansion volume alone:

* target: the post-expansion volume deconvolved by Richardson–Lucy with sPSF
  (15 iterations);
* input: a synthetic pre-expansion volume (:mod:`rcanlive.analysis.pre_expansion`:
  mOTF filter, pre-expansion grid, pre-expansion background and noise), deconvolved by
  Richardson–Lucy with sPSF on the pre-expansion grid (the paper's "modified ePSF" on
  the upsampled grid), then enlarged ``M`` times onto the target's grid: RCAN keeps its
  input's shape, so the network learns from ``M``-times upsampled, deconvolved iSIM
  volumes, and real volumes are prepared the same way before restoration
  (:func:`~rcanlive.analysis.pre_expansion.enlarge_to_post_grid`).

The noise is that of an experimental pre-expansion volume of the same region when one
is given (measured, then refined by maximising SSIM within ±15 %, as the paper did);
otherwise the camera's, measured on the post-expansion volume itself, with the signal
``M³`` times brighter (the fluorophores of an expanded voxel fill ``1/M³`` of it before
expansion; same light and exposure).

Written to ``OUT``::

    raw/NAME.tif          network input, float32 ZYX on the post-expansion grid
    gt/NAME.tif           target, float32 ZYX
    synthetic/NAME.tif    the synthetic pre-expansion acquisition (pre-expansion grid,
                          counts), before deconvolution, for inspection
    pre_expansion.json    settings, noise model and the volumes written

``raw`` and ``gt`` are the ``raw_dir``/``gt_dir`` of a training config.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ..analysis.pre_expansion import (
    NoiseModel,
    estimate_background,
    estimate_noise_model,
    fit_noise_model,
    noise_ssim,
    synthesize_pre_expansion,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

#: (z step, pixel size) in µm → sPSF at that voxel size (e.g. the rig's iSIM PSF,
#: :func:`rcanlive.simulation.optics.rig_psf`).
PsfFactory: TypeAlias = Callable[[float, float], np.ndarray]
TIFF_SUFFIXES = (".tif", ".tiff")
SUBFOLDERS = ("raw", "gt", "synthetic")
MANIFEST = "pre_expansion.json"
#: Lateral side of the blocks a stitched gel is cut into, pixels (one pair each).
DEFAULT_BLOCK_YX = 512


@dataclass(frozen=True, slots=True)
class PostVolume:
    """A post-expansion volume to make a pair from, read when needed.

    Attributes
    ----------
    name
        File stem of the pair.
    read
        Returns the ZYX volume (camera counts).
    voxel_um
        ``(dz, dy, dx)`` in µm, when known.
    """

    name: str
    read: Callable[[], np.ndarray]
    voxel_um: tuple[float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class PreExpansionSettings:
    """How :func:`write_pre_expansion_pairs` makes its pairs.

    Attributes
    ----------
    expansion
        The gel's linear expansion factor ``M`` (paper: 3.2 mitochondria, 4.0 tubulin).
    iterations
        Richardson–Lucy iterations for targets and inputs (paper: 15).
    deconvolve_input
        Deconvolve the synthetic inputs as the paper did (else offset-subtracted only).
    signal_scale
        Without a reference: pre-expansion counts per post-expansion count (``M³``).
    block_yx
        Lateral side of the blocks a stitched gel is cut into, pixels.
    seed
        Seed of the noise.
    device
        Where RL runs (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    """

    expansion: float
    iterations: int = 15
    deconvolve_input: bool = True
    signal_scale: float | None = None
    block_yx: int = DEFAULT_BLOCK_YX
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True, slots=True)
class PreExpansionPairs:
    """What :func:`write_pre_expansion_pairs` wrote.

    Attributes
    ----------
    raw_dir, gt_dir
        The folders of inputs and targets (a training config's ``raw_dir``/``gt_dir``).
    names
        The pairs written.
    skipped
        Volumes left out (empty blocks of a stitched gel).
    noise
        The noise model the synthetic volumes were made with.
    measured
        The model measured on the reference, before the SSIM fit (None without one).
    ssim
        SSIM against the reference with ``measured`` and with ``noise``.
    """

    raw_dir: Path
    gt_dir: Path
    names: list[str]
    skipped: list[str]
    noise: NoiseModel
    measured: NoiseModel | None = None
    ssim: tuple[float, float] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)


# -- reading post-expansion volumes ----------------------------------------------------


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    data = np.squeeze(tifffile.imread(path))
    if data.ndim != 3:
        raise ValueError(f"{path} holds an array of shape {data.shape}, not one ZYX volume")
    return data


def post_expansion_volumes(
    source: str | Path,
    *,
    voxel_um: tuple[float, float, float] | None = None,
    block_yx: int = DEFAULT_BLOCK_YX,
) -> list[PostVolume]:
    """The post-expansion volumes of a TIFF, a folder of TIFFs or an rcanlive dataset.

    A tiling dataset gives its stitched image cut into ``block_yx`` blocks when it has
    been stitched, else each tile; a live dataset gives each raw volume. ``voxel_um``
    (dz, dy, dx) is the TIFFs' voxel size; a dataset's own is used for it.

    Raises
    ------
    ValueError
        If the source is none of these, holds no volume, or is a pairs dataset.
    """
    path = Path(source)
    if (path / "zarr.json").is_file():
        return _dataset_volumes(path, block_yx)
    if path.is_file() and path.suffix.lower() in TIFF_SUFFIXES:
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
    else:
        raise ValueError(f"{path} is not a TIFF, a folder of TIFFs or an rcanlive dataset")
    if not files:
        raise ValueError(f"no .tif/.tiff files in {path}")
    return [PostVolume(f.stem, partial(_read_tiff, f), voxel_um) for f in files]


def _read_block(stitched: Any, y0: int, x0: int, step: int) -> np.ndarray:
    """Block ``(y0, x0)`` of channel 0 of a stitched ``(c, z, y, x)`` image."""
    return np.asarray(stitched[0, :, y0 : y0 + step, x0 : x0 + step])


def _dataset_volumes(path: Path, block_yx: int) -> list[PostVolume]:
    import zarr

    from ..storage import open_dataset
    from ..storage.imaging import dataset_imaging

    ds = open_dataset(path)
    dz, dxy = dataset_imaging(ds.meta).voxel_um()
    voxel = (dz, dxy, dxy)
    if ds.kind == "pairs":
        raise ValueError(f"{path} is a pairs dataset; give post-expansion volumes (tiles)")
    root = zarr.open_group(path, mode="r")
    if ds.kind == "tile" and "stitched" in root:
        group: Any = root["stitched"]
        stitched = group["0"]  # (c, z, y, x)
        _, _, ny, nx = stitched.shape
        step = max(int(block_yx), 16)
        return [
            PostVolume(
                f"stitched_y{y0:05d}_x{x0:05d}",
                partial(_read_block, stitched, y0, x0, step),
                voxel,
            )
            for y0 in range(0, ny, step)
            for x0 in range(0, nx, step)
        ]
    volumes = []
    for record in ds.volumes:
        t, p, c = int(record["t"]), int(record["p"]), int(record["c"])
        name = f"tile{p:04d}_c{c}" if ds.kind == "tile" else f"t{t:04d}_p{p:03d}_c{c}"
        volumes.append(PostVolume(name, partial(ds.volume, t, p=p, c=c), voxel))
    if not volumes:
        raise ValueError(f"{path} holds no complete volume")
    return volumes


# -- the noise model -----------------------------------------------------------------


def register_reference(
    clean: np.ndarray, reference: np.ndarray, *, min_correlation: float = 0.3
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The overlapping parts of a clean synthetic volume and an experimental one.

    The experimental pre-expansion volume must show the same region on the
    pre-expansion grid (registered, e.g. in 3D Slicer as the paper did); a remaining
    translation is found by phase correlation and both volumes are cropped to their
    overlap.

    Raises
    ------
    ValueError
        If the volumes overlap by too little or do not look alike once aligned.
    """
    from skimage.registration import phase_cross_correlation

    c, r = np.asarray(clean, np.float32), np.asarray(reference, np.float32)
    if c.ndim != 3 or r.ndim != 3:
        raise ValueError(f"need two ZYX volumes, got {c.shape} and {r.shape}")
    shape = tuple(max(a, b) for a, b in zip(c.shape, r.shape, strict=True))
    padded = [
        np.pad(v - np.median(v), [(0, n - s) for n, s in zip(shape, v.shape, strict=True)])
        for v in (c, r)
    ]
    shift = phase_cross_correlation(padded[1], padded[0], normalization=None)[0]
    crops_c, crops_r = [], []
    for s, nc, nr in zip(np.rint(shift).astype(int), c.shape, r.shape, strict=True):
        lo, hi = max(0, -s), min(nc, nr - s)
        crops_c.append(slice(lo, max(hi, lo)))
        crops_r.append(slice(lo + s, max(hi, lo) + s))
    c_part, r_part = c[tuple(crops_c)], r[tuple(crops_r)]
    if min(c_part.shape) < 3 or min(c_part.shape[1:]) < 8:
        raise ValueError(
            f"the reference overlaps the synthetic volume by only {c_part.shape} voxels once "
            f"aligned (shift {tuple(int(v) for v in np.rint(shift))}); give the pre-expansion "
            "volume of the same region as the first post-expansion volume"
        )
    correlation = float(np.corrcoef(c_part.ravel(), r_part.ravel())[0, 1])
    if not correlation >= min_correlation:
        raise ValueError(
            f"the reference correlates with the synthetic volume by only {correlation:.2f} "
            "once aligned; it must be the pre-expansion volume of the same region as the "
            "first post-expansion volume, registered to it"
        )
    return c_part, r_part


def choose_noise_model(
    post: np.ndarray,
    clean: np.ndarray,
    expansion: float,
    *,
    reference: np.ndarray | None = None,
    signal_scale: float | None = None,
    tolerance: float = 0.15,
    seed: int = 0,
) -> tuple[NoiseModel, NoiseModel | None, tuple[float, float] | None]:
    """The noise model for the synthetic volumes: ``(model, measured, ssim)``.

    With a ``reference`` (experimental pre-expansion volume of the region of ``post``):
    measured on it, then fitted by SSIM within ``±tolerance``; ``ssim`` holds the SSIM
    of the measured and the fitted model. Without one: the camera's offset, gain and
    noise measured on ``post`` and ``signal_scale`` (default ``M³``).
    """
    if reference is None:
        try:
            camera = estimate_noise_model(post)
        except ValueError as exc:
            raise ValueError(
                f"the camera's noise cannot be measured on the first post-expansion volume "
                f"({exc}); give an experimental pre-expansion reference to measure it on"
            ) from None
        scale = float(expansion) ** 3 if signal_scale is None else float(signal_scale)
        return NoiseModel(camera.offset, camera.gain, camera.read_noise, scale), None, None
    if signal_scale is not None:
        raise ValueError("the signal scale is measured on the reference; give one or the other")
    c, r = register_reference(clean, reference)
    measured = estimate_noise_model(r, clean=c)
    fitted = fit_noise_model(c, r, measured, tolerance=tolerance, rng=seed)
    scores = (noise_ssim(measured, c, r, rng=seed), noise_ssim(fitted, c, r, rng=seed))
    return fitted, measured, scores


# -- writing the pairs ---------------------------------------------------------------


def _resolve_psf(
    psf: str | Path | np.ndarray | PsfFactory, voxel_um: tuple[float, float, float] | None
) -> NDArray[np.float32]:
    """sPSF from a bead TIFF, an array, or a factory called with the data's voxel size."""
    from ..analysis.deconvolution import check_psf, load_psf

    if isinstance(psf, (str, Path)):
        return load_psf(psf)
    if callable(psf):
        if voxel_um is None:
            raise ValueError(
                "the PSF is computed for the data's voxel size, which TIFFs do not record: "
                "give the voxel size (z step and pixel size) or a measured PSF"
            )
        return check_psf(psf(voxel_um[0], voxel_um[2]))
    return check_psf(psf)


def _prepare_out(out: Path, overwrite: bool) -> dict[str, Path]:
    """The output folders, emptied of earlier pairs when ``overwrite``."""
    folders = {name: out / name for name in SUBFOLDERS}
    earlier = [f for d in folders.values() if d.is_dir() for f in d.iterdir()]
    if earlier and not overwrite:
        raise FileExistsError(
            f"{out} already holds pairs ({len(earlier)} files); replace them (overwrite) or "
            "write to another folder"
        )
    for folder in folders.values():
        if folder.is_dir():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    return folders


def make_pair(
    post: np.ndarray,
    psf: np.ndarray,
    noise: NoiseModel,
    expansion: float,
    *,
    iterations: int = 15,
    deconvolve_input: bool = True,
    rng: np.random.Generator | int | None = None,
    device: str = "auto",
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """``(input, target, synthetic)`` for one post-expansion volume (counts).

    ``synthetic`` is the noisy synthetic pre-expansion volume (pre-expansion grid);
    ``input`` is it deconvolved (RL, sPSF, ``iterations``; offset subtracted) and
    enlarged onto ``post``'s grid; ``target`` is ``post`` deconvolved (RL, sPSF).
    """
    from ..analysis.deconvolution import richardson_lucy
    from ..analysis.pre_expansion import enlarge_to_post_grid

    volume = np.asarray(post, np.float32)
    background = estimate_background(volume)
    clean = synthesize_pre_expansion(volume, expansion, psf, background=background)
    synthetic = noise.apply(clean, rng)
    if deconvolve_input:
        small = richardson_lucy(synthetic, psf, iterations, background=noise.offset, device=device)
    else:
        small = np.clip(synthetic - np.float32(noise.offset), 0, None)
    network_input = enlarge_to_post_grid(small, expansion, volume.shape)
    target = richardson_lucy(volume, psf, iterations, background=background, device=device)
    return network_input, np.asarray(target, np.float32), synthetic


def _write_tiff(path: Path, data: np.ndarray) -> None:
    import tifffile

    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "ZYX"})


def write_pre_expansion_pairs(
    source: str | Path,
    out: str | Path,
    settings: PreExpansionSettings,
    *,
    psf: str | Path | np.ndarray | PsfFactory,
    reference: str | Path | np.ndarray | None = None,
    noise: NoiseModel | None = None,
    voxel_um: tuple[float, float, float] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PreExpansionPairs:
    """Write a training set of (synthetic pre-expansion input, deconvolved target) pairs.

    Parameters
    ----------
    source
        Post-expansion volumes (:func:`post_expansion_volumes`): a TIFF, a folder of
        TIFFs, or a tiling (stitched or not) or live dataset; raw camera counts.
    out
        Output folder (see the module's docstring for its layout).
    settings
        Expansion factor, iterations, noise seed, device, ... (:class:`PreExpansionSettings`).
    psf
        sPSF: a centred bead TIFF, an array, or a function of the voxel size (z step,
        pixel size) in µm returning one (e.g. the rig's iSIM PSF).
    reference
        An experimental pre-expansion volume (TIFF or array, counts) of the region of
        the first post-expansion volume, registered to it on the pre-expansion grid;
        the noise is measured on it and fitted by SSIM within ±15 %.
    noise
        A noise model to use as it is (overrides ``reference`` and the signal scale).
    voxel_um
        Voxel size of TIFF sources, ``(dz, dy, dx)`` µm (datasets record theirs).
    overwrite, progress
        Replace earlier pairs in ``out``; ``progress(done, total)`` per volume.

    Raises
    ------
    ValueError
        For an unusable source, PSF or reference.
    FileExistsError
        If ``out`` holds pairs and ``overwrite`` is false.
    """
    volumes = post_expansion_volumes(source, voxel_um=voxel_um, block_yx=settings.block_yx)
    kernel = _resolve_psf(psf, volumes[0].voxel_um)
    folders = _prepare_out(Path(out), overwrite)
    first = np.asarray(volumes[0].read(), np.float32)
    measured, scores = None, None
    if noise is None:
        noise, measured, scores = _measure_noise(first, kernel, reference, settings)
    records, skipped = _write_pairs(volumes, first, kernel, noise, settings, folders, progress)
    names = [r["name"] for r in records]
    result = PreExpansionPairs(
        folders["raw"], folders["gt"], names, skipped, noise, measured, scores, records
    )
    _write_manifest(Path(out), result, settings, volumes[0].voxel_um)
    return result


def _measure_noise(
    first: np.ndarray,
    psf: np.ndarray,
    reference: str | Path | np.ndarray | None,
    settings: PreExpansionSettings,
) -> tuple[NoiseModel, NoiseModel | None, tuple[float, float] | None]:
    """:func:`choose_noise_model` for the first post-expansion volume."""
    ref = _read_tiff(Path(reference)) if isinstance(reference, (str, Path)) else reference
    clean = synthesize_pre_expansion(first, settings.expansion, psf)
    return choose_noise_model(
        first,
        clean,
        settings.expansion,
        reference=ref,
        signal_scale=settings.signal_scale,
        seed=settings.seed,
    )


def _write_pairs(
    volumes: list[PostVolume],
    first: np.ndarray,
    psf: np.ndarray,
    noise: NoiseModel,
    settings: PreExpansionSettings,
    folders: dict[str, Path],
    progress: Callable[[int, int], None] | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Write each volume's pair (``first`` is volume 0, already read); the manifest
    records of the pairs written, and the names of the volumes left out."""
    records, skipped = [], []
    for i, vol in enumerate(volumes):
        post = first if i == 0 else np.asarray(vol.read(), np.float32)
        if not np.ptp(post) > 0:  # a block of a stitched gel outside every tile
            skipped.append(vol.name)
        else:
            records.append(_write_pair(vol.name, post, psf, noise, settings, folders, i))
        if progress is not None:
            progress(i + 1, len(volumes))
    return records, skipped


def _write_pair(
    name: str,
    post: np.ndarray,
    psf: np.ndarray,
    noise: NoiseModel,
    settings: PreExpansionSettings,
    folders: dict[str, Path],
    index: int,
) -> dict[str, Any]:
    """Make volume ``index``'s pair, write its three TIFFs; its manifest record."""
    pair = make_pair(
        post,
        psf,
        noise,
        settings.expansion,
        iterations=settings.iterations,
        deconvolve_input=settings.deconvolve_input,
        rng=np.random.default_rng([settings.seed, index]),
        device=settings.device,
    )
    for folder, data in zip(SUBFOLDERS, pair, strict=True):
        _write_tiff(folders[folder] / f"{name}.tif", data)
    return {"name": name, "shape": list(post.shape), "pre_expansion_shape": list(pair[2].shape)}


def _write_manifest(
    out: Path,
    result: PreExpansionPairs,
    settings: PreExpansionSettings,
    voxel_um: tuple[float, float, float] | None,
) -> None:
    """``pre_expansion.json``: how the pairs were made, for the record."""
    manifest = {
        "expansion": settings.expansion,
        "iterations": settings.iterations,
        "deconvolve_input": settings.deconvolve_input,
        "voxel_um": list(voxel_um) if voxel_um is not None else None,
        "noise": asdict(result.noise),
        "measured_noise": asdict(result.measured) if result.measured is not None else None,
        "ssim_measured_fitted": list(result.ssim) if result.ssim is not None else None,
        "pairs": result.records,
        "skipped": result.skipped,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
