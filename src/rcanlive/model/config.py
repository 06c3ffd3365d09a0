"""The hyper-parameters that define a network: an RCAN3D or a CARE-style UNet3D."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

#: the fields that only one architecture uses
_ONLY_FOR = {
    "n_groups": "rcan",
    "n_blocks": "rcan",
    "channels": "rcan",
    "reduction": "rcan",
    "unet_depth": "unet",
    "unet_filters": "unet",
}


class ModelConfig(BaseModel):
    """Architecture of the network; stored in every checkpoint to rebuild it.

    RCAN defaults are the paper's (Methods, "3D RCAN"): G = 5 residual groups of B = 3
    residual channel-attention blocks, C = 32 feature channels, reduction r = 8
    (C/r = 4 filters in the channel-downscaling convolution). About 1.0 M parameters.
    U-Net defaults are CARE's for 3D (:class:`~rcanlive.model.unet.UNet3D`), also
    about 1.0 M parameters.

    Fields of the other architecture must keep their defaults, and are left out of
    :meth:`model_dump`: an RCAN dumps exactly the fields it had before the U-Net
    existed (no ``architecture`` key), so old checkpoints, model hashes and
    bioimage.io ``RCAN3D(**kwargs)`` stay valid; a dump without ``architecture``
    reads back as ``"rcan"``.

    Attributes
    ----------
    architecture
        ``"rcan"`` (3D RCAN) or ``"unet"`` (CARE's 3D U-Net).
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
    unet_depth
        U-Net levels below full resolution (CARE: 2); inputs are padded inside the
        network to a multiple of ``2 ** unet_depth``.
    unet_filters
        U-Net filters at full resolution, doubled per level (CARE: 32).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    architecture: Literal["rcan", "unet"] = "rcan"
    in_channels: int = Field(default=1, ge=1)
    out_channels: int = Field(default=1, ge=1)
    n_groups: int = Field(default=5, ge=1)
    n_blocks: int = Field(default=3, ge=1)
    channels: int = Field(default=32, ge=1)
    reduction: int = Field(default=8, ge=1)
    unet_depth: int = Field(default=2, ge=1, le=6)
    unet_filters: int = Field(default=32, ge=1)

    @model_validator(mode="after")
    def _fields_of_architecture(self) -> ModelConfig:
        stray = [
            name
            for name, owner in _ONLY_FOR.items()
            if owner != self.architecture
            and getattr(self, name) != type(self).model_fields[name].default
        ]
        if stray:
            raise ValueError(
                f"{', '.join(stray)} do not apply to architecture {self.architecture!r}: "
                "remove them or choose the architecture they belong to"
            )
        if self.architecture == "unet" and self.in_channels != self.out_channels:
            raise ValueError(
                "the U-Net adds its input to its output (CARE's residual prediction), so "
                f"in_channels ({self.in_channels}) must equal out_channels "
                f"({self.out_channels})"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        drop = {name for name, owner in _ONLY_FOR.items() if owner != self.architecture}
        if self.architecture == "rcan":
            drop.add("architecture")  # an RCAN dumps as before the U-Net existed
        return {key: value for key, value in data.items() if key not in drop}
