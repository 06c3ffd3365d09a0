"""Where rcanlive keeps what it builds or measures once per machine."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$RCANLIVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/rcanlive``, else ``~/.cache/rcanlive``.

    Built artifacts (compiled models, engines) and timings (the measured ``auto``
    choices of restoration and training) live here.
    """
    env = os.environ.get("RCANLIVE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rcanlive"
