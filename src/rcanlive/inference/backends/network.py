"""The network as backends run it: a model, a precision and a memory layout.

:class:`PrecisionNetwork` takes and returns float32 ``(N, 1, Z, Y, X)`` tensors and does
the casts inside, so every compiled artifact (AOTInductor package, ONNX graph, TensorRT
engine) has the same float32 interface whatever precision it computes in. The
channel-attention mean is accumulated in fp32 by the model itself.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from rcanlive.model import LoadedModel, load_checkpoint

from .precision import torch_dtype

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator

    from .base import Precision


class PrecisionNetwork(nn.Module):
    """Wrap a restoration network so it computes in ``precision`` with float32 I/O.

    Parameters
    ----------
    net
        The network, already cast to ``precision`` and on its device.
    precision
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    channels_last
        Feed the network ``channels_last_3d`` tensors (NDHWC): oneDNN's and cuDNN's
        fast conv3d layout; on CPU with bf16 it halves the time (measured).
    """

    def __init__(self, net: nn.Module, precision: Precision, channels_last: bool = True):
        super().__init__()
        self.net = net
        self.dtype = torch_dtype(precision)
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Cast ``x`` to the working precision and layout, run, return float32 NCDHW."""
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self.net(x).float().contiguous()


def prepare_network(
    model: nn.Module,
    precision: Precision,
    device: str,
    *,
    cast_weights: bool = True,
    channels_last: bool = True,
) -> PrecisionNetwork:
    """Copy ``model`` onto ``device`` in eval mode and wrap it in a PrecisionNetwork.

    Parameters
    ----------
    model
        The restoration network; it is copied, never modified.
    precision
        Working precision.
    device
        Resolved device string.
    cast_weights
        Cast the weights to ``precision`` (compiled graphs); leave them float32 when
        the caller uses autocast instead (eager).
    channels_last
        Store weights and feed activations as ``channels_last_3d``.
    """
    net = copy.deepcopy(model).eval().to(device)
    if cast_weights:
        net = net.to(torch_dtype(precision))
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    for p in net.parameters():
        p.requires_grad_(False)
    return PrecisionNetwork(net, precision, channels_last).eval()


def as_loaded_model(model: LoadedModel | str | os.PathLike[str]) -> LoadedModel:
    """Return ``model`` itself, or the checkpoint (or bioimage.io package exported by
    rcanlive) at that path loaded on CPU."""
    if isinstance(model, LoadedModel):
        return model
    from ..bioimageio import is_bioimageio_package

    if is_bioimageio_package(model):
        from ..bioimageio import load_bioimageio

        return load_bioimageio(model, map_location="cpu")
    return load_checkpoint(Path(model), map_location="cpu")


def model_hash(loaded: LoadedModel) -> str:
    """SHA-256 of the architecture, the normalisation and every weight's bytes.

    Two checkpoints with the same hash restore identically, so compiled artifacts are
    cached under it.
    """
    digest = hashlib.sha256()
    header = {
        "config": loaded.model_config.model_dump(),
        "normalizer": loaded.normalizer.to_dict(),
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for name, tensor in sorted(loaded.model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@contextlib.contextmanager
def quiet_toolchain() -> Iterator[None]:
    """Silence known, harmless noise from torch's export and compile machinery.

    Each filter names one message torch 2.13 emits from its own internals while
    exporting or compiling (nothing the caller can act on); with pytest's
    ``filterwarnings = error`` they would otherwise abort the build. The ONNX
    exporter's logger also reports each optional torchvision op it skips.
    """
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch.utils._pytree deprecation raised while (un)pickling tree specs.
            warnings.filterwarnings(
                "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
            )
            # AOTInductor packaging still goes through torch.jit.script_method.
            warnings.filterwarnings(
                "ignore", message=r".*torch\.jit\.script_method.*", category=DeprecationWarning
            )
            yield
    finally:
        onnx_logger.setLevel(level)
