"""Plain PyTorch: the reference every other backend is checked against."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .base import BackendBase, BackendOutOfMemory
from .devices import device_type, strict_fp32
from .network import prepare_network
from .precision import torch_dtype

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from rcanlive.model import LoadedModel

    from .base import Precision


class EagerBackend(BackendBase):
    """Run the model with torch eagerly on CPU or CUDA.

    fp32 runs the weights as they are; bf16 and fp16 use ``torch.autocast`` (weights
    stay fp32, convolutions run in the low precision; the model keeps the
    channel-attention mean in fp32). Activations are ``channels_last_3d``.

    Parameters
    ----------
    loaded
        The model and its normalisation.
    precision
        ``"fp32"``, ``"bf16"`` or ``"fp16"`` (resolved, not ``"auto"``).
    device
        Resolved device, e.g. ``"cpu"`` or ``"cuda:0"``.
    """

    name = "eager"

    def __init__(self, loaded: LoadedModel, precision: Precision = "fp32", device: str = "cpu"):
        self.precision = precision
        self.device = device
        self.normalizer = loaded.normalizer
        self._net: torch.nn.Module | None = prepare_network(
            loaded.model, precision, device, cast_weights=False
        )
        self._autocast = precision != "fp32"
        if device_type(device) == "cuda":
            torch.backends.cudnn.benchmark = True

    def predict(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Restore a batch ``(N, 1, Z, Y, X)``; see :class:`~.base.Backend`."""
        if self._net is None:
            raise RuntimeError("eager backend is closed")
        x = torch.from_numpy(self.check_batch(batch)).to(self.device, non_blocking=True)
        try:
            with (
                strict_fp32(self.device, self.precision),
                torch.inference_mode(),
                torch.autocast(
                    device_type(self.device),
                    dtype=torch_dtype(self.precision),
                    enabled=self._autocast,
                ),
            ):
                y = self._net(x)
            return np.ascontiguousarray(y.float().cpu().numpy())
        except torch.OutOfMemoryError as exc:
            del x
            torch.cuda.empty_cache()
            raise BackendOutOfMemory(
                f"GPU out of memory running tiles of {tuple(batch.shape[2:])} in "
                f"batches of {batch.shape[0]}: {str(exc).splitlines()[0]}"
            ) from exc

    def close(self) -> None:
        """Drop the network (and its GPU memory)."""
        self._net = None
        if device_type(self.device) == "cuda":
            torch.cuda.empty_cache()
