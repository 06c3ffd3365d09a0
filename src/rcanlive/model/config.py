"""The hyper-parameters that define an :class:`~rcanlive.model.rcan.RCAN3D`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelConfig(BaseModel):
    """Architecture of a 3D RCAN; stored in every checkpoint to rebuild the network.

    Defaults are the paper's (Methods, "3D RCAN"): G = 5 residual groups of B = 3
    residual channel-attention blocks, C = 32 feature channels, reduction r = 8
    (C/r = 4 filters in the channel-downscaling convolution). About 1.0 M parameters.

    Attributes
    ----------
    in_channels, out_channels
        Image channels in and out (1 for single-colour iSIM volumes).
    n_groups
        Residual groups G in the residual-in-residual body.
    n_blocks
        Residual channel-attention blocks B per group.
    channels
        Feature channels C of every 3×3×3 convolution.
    reduction
        Channel-attention reduction ratio r; the squeeze layer has ``channels // r``
        filters (at least 1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    in_channels: int = Field(default=1, ge=1)
    out_channels: int = Field(default=1, ge=1)
    n_groups: int = Field(default=5, ge=1)
    n_blocks: int = Field(default=3, ge=1)
    channels: int = Field(default=32, ge=1)
    reduction: int = Field(default=8, ge=1)
