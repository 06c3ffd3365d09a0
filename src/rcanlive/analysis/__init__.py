"""Analysis of restored volumes: image-quality metrics (PSNR, SSIM), and more."""

from __future__ import annotations

from .deconvolution import load_psf, richardson_lucy
from .metrics import MetricConvention, nrmse, percentile_normalize, psnr, ssim
from .resolution import (
    ResolutionStats,
    axial_resolution,
    decorrelation_resolution,
    lateral_resolution,
    measure_resolution,
)

__all__ = [
    "MetricConvention",
    "ResolutionStats",
    "axial_resolution",
    "decorrelation_resolution",
    "lateral_resolution",
    "load_psf",
    "measure_resolution",
    "nrmse",
    "percentile_normalize",
    "psnr",
    "richardson_lucy",
    "ssim",
]
