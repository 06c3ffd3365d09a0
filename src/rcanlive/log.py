"""The one package logger; its format records the thread, since acquisition,
restoration and the GUI each run on their own."""

from __future__ import annotations

import logging

logger = logging.getLogger("rcanlive")

_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"


def configure_logging(level: int | str = logging.INFO) -> None:
    """Send rcanlive's log records to stderr with thread names (idempotent)."""
    if not any(getattr(h, "_rcanlive", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._rcanlive = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
