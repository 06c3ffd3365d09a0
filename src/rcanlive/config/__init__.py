"""Pydantic models for every config file, and the loader that names the bad field."""

from __future__ import annotations

from .loading import ConfigError, FrozenModel, load_config

__all__ = ["ConfigError", "FrozenModel", "load_config"]
