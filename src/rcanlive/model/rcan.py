"""3D residual channel attention network (RCAN), as in Chen et al., Methods "3D RCAN".

Structure (written from the paper's description, no upscaling module)::

    x ─ conv ─ F0 ─┬─ RG_1 ─ … ─ RG_G ─ conv ─(+)─ conv ─ y
                   └──────────── long skip ─────┘
    RG:   h ─┬─ RCAB_1 ─ … ─ RCAB_B ─ conv ─(+)─        (short skip)
             └──────────────────────────────┘
    RCAB: h ─┬─ conv ─ ReLU ─ conv ─ CA ─(+)─
             └──────────────────────────┘
    CA:   s = sigmoid(conv₁(ReLU(conv₁(mean_zyx(h))))) ; h · s

All feature convolutions are 3×3×3 with zero padding, so the output has the input's
shape for any Z, Y, X.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .config import ModelConfig

if TYPE_CHECKING:
    from torch import Tensor


def _conv3(c_in: int, c_out: int) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, kernel_size=3, padding=1)


class ChannelAttention(nn.Module):
    """Rescale each feature channel by a weight from its global average.

    Parameters
    ----------
    channels
        Feature channels C.
    reduction
        Reduction ratio r; the squeeze convolution has ``max(C // r, 1)`` filters.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.squeeze = nn.Conv3d(channels, hidden, kernel_size=1)
        self.excite = nn.Conv3d(hidden, channels, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` scaled channel-wise by attention weights in (0, 1)."""
        # The mean over a whole 16×256×256 patch loses digits in bf16/fp16, so it is
        # always accumulated in fp32 and only then cast back to the working dtype.
        pooled = x.float().mean(dim=(2, 3, 4), keepdim=True).to(x.dtype)
        weights = torch.sigmoid(self.excite(self.relu(self.squeeze(pooled))))
        return x * weights.to(x.dtype)


class RCAB(nn.Module):
    """Residual channel-attention block: conv, ReLU, conv, attention, plus input."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv3(channels, channels),
            nn.ReLU(inplace=True),
            _conv3(channels, channels),
            ChannelAttention(channels, reduction),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x + block(x)``."""
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """``n_blocks`` RCABs and a closing conv, bridged by a short skip connection."""

    def __init__(self, channels: int, n_blocks: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *(RCAB(channels, reduction) for _ in range(n_blocks)),
            _conv3(channels, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x + group(x)``."""
        return x + self.body(x)


class RCAN3D(nn.Module):
    """The paper's 3D RCAN for volume-to-volume restoration (denoising, deblurring).

    Parameters
    ----------
    in_channels, out_channels
        Image channels in and out.
    n_groups
        Residual groups G (paper: 5).
    n_blocks
        RCABs per residual group B (paper: 3).
    channels
        Feature channels C (paper: 32).
    reduction
        Channel-attention reduction r (paper: 8, i.e. 4 squeeze filters).

    Notes
    -----
    The defaults have 1,002,621 trainable parameters. ``forward`` takes a float
    tensor ``(N, C, Z, Y, X)`` of any spatial size and returns the same shape (with
    ``out_channels`` channels). Inputs are expected percentile-normalised
    (:class:`~rcanlive.model.normalization.PercentileNormalizer`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        n_groups: int = 5,
        n_blocks: int = 3,
        channels: int = 32,
        reduction: int = 8,
    ) -> None:
        super().__init__()
        self.config = ModelConfig(
            in_channels=in_channels,
            out_channels=out_channels,
            n_groups=n_groups,
            n_blocks=n_blocks,
            channels=channels,
            reduction=reduction,
        )
        self.head = _conv3(in_channels, channels)
        self.body = nn.Sequential(
            *(ResidualGroup(channels, n_blocks, reduction) for _ in range(n_groups)),
            _conv3(channels, channels),
        )
        self.tail = _conv3(channels, out_channels)

    @classmethod
    def from_config(cls, config: ModelConfig) -> RCAN3D:
        """Build a freshly initialised network from an ``"rcan"`` :class:`ModelConfig`."""
        if config.architecture != "rcan":
            raise ValueError(f"RCAN3D needs architecture 'rcan', got {config.architecture!r}")
        return cls(**config.model_dump())

    def forward(self, x: Tensor) -> Tensor:
        """Restore a batch of volumes ``(N, C, Z, Y, X)``; the output has its shape."""
        if x.ndim != 5:
            raise ValueError(
                f"RCAN3D expects a 5D tensor (N, C, Z, Y, X), got shape {tuple(x.shape)}"
            )
        features = self.head(x)
        return self.tail(features + self.body(features))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
