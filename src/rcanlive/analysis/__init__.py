"""Analysis of restored volumes: image-quality metrics (PSNR, SSIM), and more."""

from __future__ import annotations

from .metrics import percentile_normalize, psnr, ssim

__all__ = ["percentile_normalize", "psnr", "ssim"]
