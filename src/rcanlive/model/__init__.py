"""The 3D RCAN and CARE U-Net networks, their normalisation and checkpoint format.

Inference imports only this package, so everything needed to restore a volume with a
trained model lives here.
"""

from __future__ import annotations

from pathlib import Path

from .card import (
    ModelCard,
    card_markdown,
    model_card,
    read_model_card,
    snr_reliability,
    with_model_card,
)
from .checkpoint import CheckpointError, LoadedModel, load_checkpoint, save_checkpoint
from .config import ModelConfig
from .networks import build_network
from .normalization import PercentileNormalizer, check_volume
from .rcan import RCAN3D, count_parameters
from .unet import UNet3D

__all__ = [
    "RCAN3D",
    "CheckpointError",
    "LoadedModel",
    "ModelCard",
    "ModelConfig",
    "PercentileNormalizer",
    "UNet3D",
    "build_network",
    "bundled_model_path",
    "card_markdown",
    "check_volume",
    "count_parameters",
    "load_checkpoint",
    "model_card",
    "read_model_card",
    "save_checkpoint",
    "snr_reliability",
    "with_model_card",
]


def bundled_model_path() -> Path | None:
    """The small RCAN shipped with rcanlive (trained on simulated iSIM pairs), if any."""
    path = Path(__file__).parent / "bundled" / "rcan-isim-sim.pt"
    return path if path.is_file() else None
