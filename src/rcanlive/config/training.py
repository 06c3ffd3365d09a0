"""Settings of ``rcanlive train``: data, network, schedule, precision, output.

Paths are used as written: relative paths are relative to the working directory the
command runs in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_serializer,
    model_validator,
)

from .loading import FrozenModel

#: one side of a training patch, voxels
_PatchSide = Annotated[StrictInt, Field(ge=1, le=65_536)]


class TrainingDataConfig(FrozenModel):
    """Where the matched low/high (raw/ground-truth) volumes come from.

    Give exactly one source: ``pairs`` (an OME-Zarr pairs dataset written by
    ``rcanlive acquire pairs``) or both ``raw_dir`` and ``gt_dir`` (folders of TIFF
    volumes matched by file name).

    Attributes
    ----------
    pairs
        OME-Zarr pairs dataset.
    raw_dir, gt_dir
        Folders of low-SNR (or blurred) input and ground-truth ZYX TIFFs.
    validation_fraction
        Fraction of the fields of view held out for validation (the paper trained on
        30 and tested on 5, i.e. 1/7 ≈ 0.15); all time points of a held-out field go
        with it. Ignored when ``validation_count`` is set.
    validation_count
        Exact number of held-out fields of view.
    validation_patches
        Fixed patches drawn once from each held-out volume; PSNR/SSIM are their mean.
    deconvolve_target
        Deconvolve every ground-truth volume by Richardson–Lucy before normalisation,
        as the paper made its ground truth (:mod:`rcanlive.analysis.deconvolution`).
    deconvolve_iterations
        Richardson–Lucy iterations (paper: 15).
    deconvolve_background
        Subtracted from the ground truth before deconvolving; default: the camera
        offset a pairs dataset records (100 counts), 0 for TIFF folders.
    psf
        Measured PSF (a centred bead TIFF) for the deconvolution; default for a pairs
        dataset: the rig's iSIM PSF at its voxel size (``rcanlive train`` computes
        it); TIFF folders need one.
    register
        Align each pair before training, for pairs misaligned by drift or between
        instruments: ``"none"``, ``"affine"`` (rigid + isotropic scale) or ``"local"``
        (affine plus a smooth local displacement field); estimated on the ground truth
        (:mod:`rcanlive.analysis.registration`), the borders left without data are
        cropped off.
    register_apply_to
        Which volume is resampled: ``"input"`` (onto the ground truth's grid) or
        ``"target"`` (onto the input's grid, e.g. to keep the input untouched).
    """

    pairs: Path | None = None
    raw_dir: Path | None = None
    gt_dir: Path | None = None
    validation_fraction: StrictFloat = Field(default=0.15, ge=0.0, lt=1.0)
    validation_count: StrictInt | None = Field(default=None, ge=0)
    validation_patches: StrictInt = Field(default=2, ge=1, le=10_000)
    deconvolve_target: StrictBool = False
    deconvolve_iterations: StrictInt = Field(default=15, ge=1, le=10_000)
    deconvolve_background: StrictFloat | None = Field(default=None, ge=0, le=65_535)
    psf: Path | None = None
    # the key is ``register``; the attribute is ``registration`` (``register`` would
    # shadow pydantic's BaseModel.register)
    registration: Literal["none", "affine", "local"] = Field(
        default="none", validation_alias=AliasChoices("register", "registration")
    )
    register_apply_to: Literal["input", "target"] = "input"

    @model_validator(mode="after")
    def _one_source(self) -> TrainingDataConfig:
        dirs = (self.raw_dir is not None, self.gt_dir is not None)
        if self.pairs is not None and any(dirs):
            raise ValueError("give either 'pairs' or 'raw_dir' + 'gt_dir', not both")
        if self.pairs is None and not all(dirs):
            raise ValueError(
                "no training data: set 'pairs' (OME-Zarr pairs dataset) or both "
                "'raw_dir' and 'gt_dir' (TIFF folders matched by file name)"
            )
        return self


class NetworkConfig(FrozenModel):
    """Network architecture (mirrors :class:`rcanlive.model.ModelConfig`).

    Fields of the architecture not chosen must keep their defaults; they are left out
    of :meth:`model_dump`, as ``ModelConfig`` leaves them out.

    Attributes
    ----------
    architecture
        ``"rcan"`` (3D RCAN, the default) or ``"unet"`` (CARE's 3D U-Net, trained
        with the same recipe for comparison).
    n_groups
        Residual groups G (paper: 5).
    n_blocks
        Residual channel-attention blocks per group B (paper: 3).
    channels
        Feature channels C (paper: 32).
    reduction
        Channel-attention reduction ratio r (paper: 8).
    in_channels, out_channels
        Image channels (1 for single-colour volumes; equal for the U-Net).
    unet_depth
        U-Net levels below full resolution (CARE: 2).
    unet_filters
        U-Net filters at full resolution, doubled per level (CARE: 32).
    """

    architecture: Literal["rcan", "unet"] = "rcan"
    in_channels: StrictInt = Field(default=1, ge=1, le=1024)
    out_channels: StrictInt = Field(default=1, ge=1, le=1024)
    n_groups: StrictInt = Field(default=5, ge=1, le=1000)
    n_blocks: StrictInt = Field(default=3, ge=1, le=1000)
    channels: StrictInt = Field(default=32, ge=1, le=4096)
    reduction: StrictInt = Field(default=8, ge=1, le=4096)
    unet_depth: StrictInt = Field(default=2, ge=1, le=6)
    unet_filters: StrictInt = Field(default=32, ge=1, le=4096)

    @model_validator(mode="after")
    def _fields_of_architecture(self) -> NetworkConfig:
        stray = [
            name
            for name, owner in _ONLY_FOR.items()
            if owner != self.architecture
            and getattr(self, name) != type(self).model_fields[name].default
        ]
        if stray:
            raise ValueError(
                f"{', '.join(stray)} do not apply to architecture {self.architecture!r}: "
                "remove them from [model] or set the architecture they belong to"
            )
        if self.architecture == "unet" and self.in_channels != self.out_channels:
            raise ValueError("the U-Net predicts a residual: in_channels must equal out_channels")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        drop = {name for name, owner in _ONLY_FOR.items() if owner != self.architecture}
        if self.architecture == "rcan":
            drop.add("architecture")
        return {key: value for key, value in data.items() if key not in drop}


#: [model] fields that only one architecture uses
_ONLY_FOR = {
    "n_groups": "rcan",
    "n_blocks": "rcan",
    "channels": "rcan",
    "reduction": "rcan",
    "unet_depth": "unet",
    "unet_filters": "unet",
}


class NormalizationConfig(FrozenModel):
    """Percentile normalisation applied to every volume before training.

    Attributes
    ----------
    p_low, p_high
        Percentiles (0–100) mapped to 0 and 1 (CARE/paper: 2 and 99.9).
    """

    p_low: StrictFloat = Field(default=2.0, ge=0.0, lt=100.0)
    p_high: StrictFloat = Field(default=99.9, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> NormalizationConfig:
        if not self.p_low < self.p_high:
            raise ValueError(f"p_low ({self.p_low}) must be below p_high ({self.p_high})")
        return self


class BackgroundConfig(FrozenModel):
    """Background-patch rejection, judged on the normalised ground truth.

    A patch is rejected when its ground-truth mean is below ``fraction`` × the mean
    of its whole ground-truth volume (the paper's supplementary rule, 20 %). After
    ``max_tries`` rejections the most foreground patch seen is used, or, if even that
    is background, a patch centred on a foreground voxel.

    Attributes
    ----------
    fraction
        Threshold relative to the volume mean; 0 turns rejection off.
    max_tries
        Random draws before falling back.
    """

    fraction: StrictFloat = Field(default=0.2, ge=0.0, le=1000.0)
    max_tries: StrictInt = Field(default=20, ge=1, le=1_000_000)


class TrainingConfig(FrozenModel):
    """Everything ``rcanlive train`` needs (paper defaults).

    Attributes
    ----------
    data
        Training pairs and held-out split.
    model
        Network architecture.
    patch_shape
        Training patch ``(z, y, x)`` in voxels (paper: 16×256×256); clipped to the
        volume when it is smaller.
    batch_size
        Patches per optimiser step and per process (per GPU under ``torchrun``).
    epochs
        Training epochs.
    steps_per_epoch
        Optimiser steps per epoch.
    learning_rate
        Initial Adam learning rate; halved every ``lr_step_epochs`` epochs.
    lr_step_epochs
        Epochs between halvings; default a quarter of ``epochs`` (of the shortened
        count when ``max_minutes`` shortens the run).
    max_minutes
        Wall-clock budget of the epochs, in minutes: after the first epoch the run is
        shortened to the epochs that fit, and it stops early when the next epoch
        would overrun. ``None``: no budget.
    loss
        ``"mae"`` (paper) or ``"mse"``.
    precision
        ``"auto"``: bf16 autocast on CUDA when supported (else fp16), bf16 on CPUs
        with native bf16 (AVX512-BF16/AMX), else fp32. Or force ``"fp32"``,
        ``"bf16"``, ``"fp16"`` (CUDA only).
    device
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    seed
        Seed for weights, patch sampling, augmentation and the split.
    normalization
        Percentile normalisation.
    background
        Background-patch rejection rule.
    num_workers
        DataLoader worker processes for patch sampling (0: in the main process).
    output_dir
        Where ``best.pt``, ``last.pt``, ``history.json`` and ``loss.png`` go.
    progress
        Show a progress bar.
    """

    data: TrainingDataConfig
    model: NetworkConfig = Field(default_factory=NetworkConfig)
    patch_shape: tuple[_PatchSide, _PatchSide, _PatchSide] = (16, 256, 256)
    batch_size: StrictInt = Field(default=1, ge=1, le=65_536)
    epochs: StrictInt = Field(default=300, ge=1, le=1_000_000)
    steps_per_epoch: StrictInt = Field(default=256, ge=1, le=100_000_000)
    learning_rate: StrictFloat = Field(default=1e-4, gt=0.0, le=10.0)
    lr_step_epochs: StrictInt | None = Field(default=None, ge=1)
    max_minutes: StrictFloat | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    loss: Literal["mae", "mse"] = "mae"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    seed: StrictInt = Field(default=0, ge=0, lt=2**32)
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    num_workers: StrictInt = Field(default=0, ge=0, le=1024)
    output_dir: Path = Path("runs/rcan-isim")
    progress: StrictBool = True

    @model_validator(mode="after")
    def _positive_patch(self) -> TrainingConfig:
        if min(self.patch_shape) < 1:
            raise ValueError(f"patch_shape must be positive, got {self.patch_shape}")
        return self

    @property
    def lr_step(self) -> int:
        """Epochs between learning-rate halvings (at least 1)."""
        return self.lr_step_epochs or max(1, self.epochs // 4)
