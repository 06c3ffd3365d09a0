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


#: the models shipped with rcanlive: name → file in ``model/bundled``
BUNDLED_MODELS = {
    "isim-sim": "rcan-isim-sim.pt",  # the live denoiser (default)
    "phantom-2x": "rcan-phantom-2x.pt",  # deblurs 2× the iSIM PSF (spherical phantoms)
}


def bundled_model_path(name: str = "isim-sim") -> Path | None:
    """A model shipped with rcanlive (:data:`BUNDLED_MODELS`), if this install has it.

    Raises
    ------
    ValueError
        If ``name`` is not a bundled model's name.
    """
    if name not in BUNDLED_MODELS:
        raise ValueError(f"no bundled model {name!r}; choose one of {', '.join(BUNDLED_MODELS)}")
    path = Path(__file__).parent / "bundled" / BUNDLED_MODELS[name]
    return path if path.is_file() else None
