"""The :class:`Backend` protocol every inference engine implements, and its errors.

A backend turns a batch of normalised tiles ``(N, 1, Z, Y, X)`` (float32, numpy) into
restored tiles of the same shape. Tiling, normalisation and blending live in
:mod:`rcanlive.inference.tiling`, so a backend only has to run the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from rcanlive.model import PercentileNormalizer

BackendName = Literal["auto", "eager", "compiled", "onnx", "tensorrt"]
"""Names accepted by :func:`~rcanlive.inference.backends.create_backend`."""


Precision = Literal["fp32", "bf16", "fp16"]
"""Arithmetic a backend runs the network in; inputs and outputs stay float32."""

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")

TileShape = tuple[int, int, int]
"""A ``(Z, Y, X)`` tile size in voxels."""


class BackendError(RuntimeError):
    """A backend that cannot be built or run; the message says why and what to do."""


class BackendUnavailable(BackendError):
    """The backend (or the precision/device asked of it) does not work on this machine."""


class BackendOutOfMemory(BackendError):
    """The device ran out of memory for this tile and batch size.

    Tiled prediction catches it and retries with smaller tiles when the backend
    accepts any tile shape.
    """


@runtime_checkable
class Backend(Protocol):
    """One way of running a restoration network.

    Attributes
    ----------
    name
        Registry name: ``"eager"``, ``"compiled"``, ``"onnx"`` or ``"tensorrt"``.
    precision
        ``"fp32"``, ``"bf16"`` or ``"fp16"``: the arithmetic inside the network.
    device
        ``"cpu"`` or ``"cuda"``/``"cuda:N"``.
    tile_shape
        The only ``(Z, Y, X)`` the backend accepts (compiled graphs, engines), or
        ``None`` when any shape works.
    batch_size
        The only batch size the backend accepts, or ``None`` for any.
    normalizer
        The percentile normalisation the model was trained with.
    """

    name: str
    precision: Precision
    device: str
    tile_shape: TileShape | None
    batch_size: int | None
    normalizer: PercentileNormalizer

    def predict(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Restore a batch ``(N, 1, Z, Y, X)`` of normalised tiles; same shape out."""
        ...

    def close(self) -> None:
        """Release the device memory, sessions and files the backend holds."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class BackendBase:
    """Shared plumbing for the concrete backends: input checks and ``with`` support."""

    name: str
    precision: Precision
    device: str
    tile_shape: TileShape | None = None
    batch_size: int | None = None
    normalizer: PercentileNormalizer

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release resources (nothing by default)."""

    def __repr__(self) -> str:
        tile = "any" if self.tile_shape is None else "x".join(map(str, self.tile_shape))
        return f"<{type(self).__name__} {self.name} {self.precision} on {self.device}, tile {tile}>"

    def check_batch(self, batch: Any) -> NDArray[np.float32]:
        """Return ``batch`` as a C-contiguous float32 array after checking its shape."""
        arr = np.ascontiguousarray(batch, dtype=np.float32)
        if arr.ndim != 5 or arr.shape[1] != 1:
            raise ValueError(
                f"{self.name} backend expects a batch of shape (N, 1, Z, Y, X), got {arr.shape}"
            )
        if self.tile_shape is not None and tuple(arr.shape[2:]) != self.tile_shape:
            raise ValueError(
                f"{self.name} backend was built for tiles of {self.tile_shape} "
                f"(Z, Y, X), got {tuple(arr.shape[2:])}; tile the volume with "
                "rcanlive.inference.predict_volume or rebuild it for another tile"
            )
        if self.batch_size is not None and arr.shape[0] != self.batch_size:
            raise ValueError(
                f"{self.name} backend was built for batches of {self.batch_size}, got "
                f"{arr.shape[0]}"
            )
        return arr
