"""rcanlive: live 3D RCAN restoration for an instant SIM run through pymmcore-plus."""

from __future__ import annotations

__version__ = "0.1.0"
