"""CARE's 3D U-Net (Weigert et al., Nature Methods 2018), written for rcanlive.

This is our own PyTorch implementation of the network CARE trains by default for 3D
volumes (CSBDeep's ``unet_n_depth=2``, ``unet_n_filter_base=32``, 3×3×3 kernels, two
convolutions per level, no batch norm, linear output, residual prediction), so that
CARE and RCAN train on the same data with the same recipe in rcanlive's own trainer,
checkpoints and inference. It is not CAREamics and loads no CSBDeep/CAREamics weights.

Structure for depth 2 (F = ``filters``)::

    x ─ pad ─ E0 ───────────────────────── cat ─ D0 ─ conv1 ─ crop ─(+ x)─ y
               └ pool ─ E1 ──────── cat ─ D1 ─ up ┘
                          └ pool ─ B ─ up ┘

    E0: conv F, conv F      E1: conv 2F, conv 2F      B: conv 4F, conv 2F
    D1: conv 2F, conv F     D0: conv F, conv F

Every ``conv`` is 3×3×3 with zero padding and a ReLU; ``pool`` is 2×2×2 max-pooling,
``up`` nearest-neighbour upsampling by 2 and ``conv1`` a 1×1×1 convolution to the
output channels. The input is padded (edge values repeated) up to a multiple of
``2 ** depth`` along Z, Y and X and the output cropped back, so any size works.

Receptive field (measured from gradients): 41 voxels along each axis for depth 2, up
to 23 on one side of a voxel depending on where it falls in the 2×2×2 pooling grid;
the default RCAN chains 38 3×3×3 convolutions (77 voxels) and its channel attention
sees the whole input. rcanlive tiles both with the same overlap and linear blending
(:mod:`rcanlive.inference.tiling`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig

if TYPE_CHECKING:
    from torch import Tensor


def _conv_block(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    """Two 3×3×3 convolutions, each followed by a ReLU."""
    return nn.Sequential(
        nn.Conv3d(c_in, c_mid, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv3d(c_mid, c_out, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )


class UNet3D(nn.Module):
    """CARE's 3D U-Net with residual output: ``y = x + unet(x)``.

    Parameters
    ----------
    in_channels, out_channels
        Image channels; they must be equal (residual prediction).
    depth
        Levels below full resolution (CARE: 2).
    filters
        Filters at full resolution, doubled per level (CARE: 32).

    Notes
    -----
    The defaults have 996,769 trainable parameters. ``forward`` takes a float tensor
    ``(N, C, Z, Y, X)`` of any spatial size and returns the same shape; inputs are
    expected percentile-normalised, like RCAN's.
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, depth: int = 2, filters: int = 32
    ) -> None:
        super().__init__()
        self.config = ModelConfig(
            architecture="unet",
            in_channels=in_channels,
            out_channels=out_channels,
            unet_depth=depth,
            unet_filters=filters,
        )
        width = [filters * 2**n for n in range(depth + 1)]
        self.down = nn.ModuleList(
            _conv_block(in_channels if n == 0 else width[n - 1], width[n], width[n])
            for n in range(depth)
        )
        self.bottom = _conv_block(width[depth - 1], width[depth], width[depth - 1])
        # level n's decoder: up-sampled deeper features + skip, back to level n - 1's width
        self.up = nn.ModuleList(
            _conv_block(2 * width[n], width[n], width[max(n - 1, 0)])
            for n in reversed(range(depth))
        )
        self.head = nn.Conv3d(filters, out_channels, kernel_size=1)

    @classmethod
    def from_config(cls, config: ModelConfig) -> UNet3D:
        """Build a freshly initialised network from a ``"unet"`` :class:`ModelConfig`."""
        if config.architecture != "unet":
            raise ValueError(f"UNet3D needs architecture 'unet', got {config.architecture!r}")
        return cls(config.in_channels, config.out_channels, config.unet_depth, config.unet_filters)

    def forward(self, x: Tensor) -> Tensor:
        """Restore a batch of volumes ``(N, C, Z, Y, X)``; the output has its shape."""
        if x.ndim != 5:
            raise ValueError(
                f"UNet3D expects a 5D tensor (N, C, Z, Y, X), got shape {tuple(x.shape)}"
            )
        z, y, w = x.shape[2:]
        multiple = 2 ** len(self.down)
        # F.pad lists the last axis first: (x before, x after, y ..., z ...)
        pad = (0, -w % multiple, 0, -y % multiple, 0, -z % multiple)
        h = F.pad(x, pad, mode="replicate")
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool3d(h, 2)
        h = self.bottom(h)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, skip], dim=1))
        return x + self.head(h)[:, :, :z, :y, :w]
