"""One-file checkpoints: weights, architecture, normalisation and free metadata.

A checkpoint is a ``torch.save`` of a plain dict, read back with
``torch.load(weights_only=True)`` so that opening a file never runs pickled code::

    {
        "format": "rcanlive-checkpoint",
        "version": 1,
        "model_config": {...},        # ModelConfig fields
        "normalizer": {...},          # PercentileNormalizer fields
        "state_dict": {...},          # tensors
        "metadata": {...},            # JSON-like: training config, metrics, epoch
        "training_state": {...}|None, # optimiser/scheduler/RNG state, for resuming
    }
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from .config import ModelConfig
from .networks import NETWORKS, build_network
from .normalization import PercentileNormalizer

FORMAT = "rcanlive-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable rcanlive checkpoint."""


@dataclass
class LoadedModel:
    """Everything a checkpoint holds, ready to use.

    Attributes
    ----------
    model
        The network (:class:`RCAN3D` or :class:`UNet3D`), in eval mode, on the
        requested device.
    model_config
        Its architecture.
    normalizer
        The normalisation it was trained with; apply it to inputs.
    metadata
        Free JSON-like metadata (training config, metrics, epoch, ...).
    training_state
        Optimiser/scheduler/RNG state when the checkpoint was written for resuming.
    """

    model: torch.nn.Module
    model_config: ModelConfig
    normalizer: PercentileNormalizer
    metadata: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] | None = None


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    normalizer: PercentileNormalizer,
    metadata: dict[str, Any] | None = None,
    *,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its settings to ``path`` atomically; return the path.

    Parameters
    ----------
    path
        Destination file (conventionally ``*.pt``); parent folders are created.
    model
        An :class:`RCAN3D` or :class:`UNet3D`, possibly wrapped (DDP,
        ``torch.compile``); its unwrapped weights are stored, on CPU.
    normalizer
        The normalisation the model expects.
    metadata
        JSON-like dict; values JSON cannot hold (paths, numpy scalars) are stored
        as strings.
    training_state
        Optional resume state (tensors, numbers, lists, dicts only).
    """
    net = _unwrap(model)
    if not isinstance(net, NETWORKS):
        raise TypeError(f"expected an RCAN3D or a UNet3D, got {type(net).__name__}")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": net.config.model_dump(),
        "normalizer": normalizer.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "metadata": json.loads(json.dumps(metadata or {}, default=_jsonable)),
        "training_state": training_state,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint
    return path


def read_payload(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """The checkpoint's raw dict, read safely (``weights_only``), marker checked.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If the file is not an rcanlive checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not an rcanlive checkpoint (torch could not read it safely: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an rcanlive checkpoint (no '{FORMAT}' marker); "
            "train one with `rcanlive train` or pass a checkpoint it wrote"
        )
    return payload


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> LoadedModel:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path
        The checkpoint file.
    map_location
        Device for the weights and the returned model.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If the file is not an rcanlive checkpoint, or is from an unknown version.
    """
    path = Path(path)
    payload = read_payload(path, map_location)
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')!r} is not supported "
            f"by this rcanlive (reads version {VERSION})"
        )
    try:
        config = ModelConfig.model_validate(payload["model_config"])
        normalizer = PercentileNormalizer.from_dict(payload["normalizer"])
        model = build_network(config)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, ValidationError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: damaged rcanlive checkpoint: {exc}") from None
    model.to(map_location).eval()
    return LoadedModel(
        model=model,
        model_config=config,
        normalizer=normalizer,
        metadata=dict(payload.get("metadata") or {}),
        training_state=payload.get("training_state"),
    )


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    # DistributedDataParallel keeps the network in .module, torch.compile in ._orig_mod.
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return str(value)
