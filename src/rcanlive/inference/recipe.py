"""How to open a backend, as a value that crosses a process boundary.

A :class:`BackendRecipe` names a model and the backend to run it with; a restoration
worker (or a Dask worker) calls it to open its own backend. It pickles as a few
strings, and importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from .backends import Backend


@dataclass(frozen=True, slots=True)
class BackendRecipe:
    """Everything needed to open one backend in another process.

    Attributes
    ----------
    model
        Checkpoint (``.pt``), exported artifact (``.pt2``/``.onnx``/``.engine``), or
        bioimage.io package (``.zip`` or folder).
    backend
        ``"auto"`` (measured: :mod:`rcanlive.inference.autotune`), ``"eager"``,
        ``"compiled"``, ``"onnx"``, ``"openvino"`` or ``"tensorrt"``.
    precision
        ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    tile_shape
        ``(Z, Y, X)`` tile the backend is built for (static backends need one).
    batch_size
        Tiles per backend call.
    cache_dir
        Where built artifacts and auto's timings are cached (default: user cache).
    """

    model: Path
    backend: str = "auto"
    precision: str = "auto"
    device: str = "auto"
    tile_shape: tuple[int, int, int] | None = None
    batch_size: int = 1
    cache_dir: Path | None = None

    def replace(self, **changes: Any) -> BackendRecipe:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @property
    def measured(self) -> bool:
        """Whether opening it first measures the candidates (``auto`` on a checkpoint).

        A bioimage.io package rcanlive did not export runs as packaged: nothing to measure.
        """
        from .backends import is_artifact
        from .bioimageio import is_foreign_package

        return (
            "auto" in (self.backend, self.precision)
            and not is_artifact(self.model)
            and not is_foreign_package(self.model)
        )

    def __call__(self) -> Backend:
        """Open the backend (building and caching its artifact the first time).

        ``auto`` on a checkpoint is measured (:func:`rcanlive.inference.autotune.choose`);
        the backend then carries the timing table as ``auto_choice``.
        """
        from dataclasses import asdict

        from .backends import create_backend

        if self.measured:
            from .autotune import choose

            chosen, trials = choose(self)
            backend = chosen()
            backend.auto_choice = [asdict(t) for t in trials]  # type: ignore[attr-defined]
            return backend
        return create_backend(
            self.backend,
            self.model,
            self.precision,
            self.device,
            self.tile_shape,
            batch_size=self.batch_size,
            cache_dir=self.cache_dir,
        )


#: volumes up to this many voxels are restored as one tile: no overlap recomputed,
#: one call (a 25×512×512 live volume is 6.6 M; RCAN's activations at 16 channels then
#: take about 0.4 GB per layer in fp32)
WHOLE_VOLUME_VOXELS = 8 * 2**20
#: the largest tile of a volume that is not restored whole (also ``tiling.DEFAULT_TILE``)
MAX_TILE: tuple[int, int, int] = (32, 256, 256)


def live_tile_shape(volume_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The tile for live restoration: the whole volume when it is small enough, else
    the volume capped at :data:`MAX_TILE` per axis."""
    z, y, x = volume_shape
    if z * y * x <= WHOLE_VOLUME_VOXELS:
        return (z, y, x)
    return (min(z, MAX_TILE[0]), min(y, MAX_TILE[1]), min(x, MAX_TILE[2]))
