"""The 3D RCAN network, its percentile normalisation and its checkpoint format.

Inference imports only this package, so everything needed to restore a volume with a
trained model lives here.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import CheckpointError, LoadedModel, load_checkpoint, save_checkpoint
from .config import ModelConfig
from .normalization import PercentileNormalizer, check_volume
from .rcan import RCAN3D, count_parameters

__all__ = [
    "RCAN3D",
    "CheckpointError",
    "LoadedModel",
    "ModelConfig",
    "PercentileNormalizer",
    "bundled_model_path",
    "check_volume",
    "count_parameters",
    "load_checkpoint",
    "save_checkpoint",
]


def bundled_model_path() -> Path | None:
    """The small RCAN shipped with rcanlive (trained on simulated iSIM pairs), if any."""
    path = Path(__file__).parent / "bundled" / "rcan-isim-sim.pt"
    return path if path.is_file() else None
