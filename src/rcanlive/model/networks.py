"""Build the network a :class:`~rcanlive.model.config.ModelConfig` describes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .rcan import RCAN3D
from .unet import UNet3D

if TYPE_CHECKING:
    from torch import nn

    from .config import ModelConfig

#: the network classes rcanlive trains, checkpoints and runs
NETWORKS = (RCAN3D, UNet3D)


def build_network(config: ModelConfig) -> nn.Module:
    """A freshly initialised :class:`RCAN3D` or :class:`UNet3D`, as ``config`` says."""
    if config.architecture == "unet":
        return UNet3D.from_config(config)
    return RCAN3D.from_config(config)
