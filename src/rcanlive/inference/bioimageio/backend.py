"""Run a bioimage.io package rcanlive did not write, as packaged, behind the Backend protocol.

Tiled prediction (:func:`~rcanlive.inference.tiling.predict_volume`) normalises the
whole volume with the backend's ``normalizer``, cuts tiles, calls :meth:`predict` and
maps the result back with ``normalizer.denormalize``. Here the normaliser is the
package's own preprocessing, folded into one linear map ``x -> (x - lo) / (hi - lo)``
of the whole volume (:class:`PackageNormalizer`), so that

* with no postprocessing, ``output="normalized"`` is the package's own output and
  ``"intensity"`` maps it back to the raw scale, like rcanlive's models;
* when the postprocessing is the inverse of the preprocessing (CAREamics), the
  intensity output is the package's own output.

:meth:`PackageBackend.predict` pads each tile by the model's halo and up to a size the
model takes, runs it in the model's axis order, and crops back; ``halo`` tells the
tiling to blend tiles only where the output is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rcanlive.model import PercentileNormalizer, check_volume

from ..backends.base import BackendBase, BackendUnavailable
from .package import AxisSize, PackageError, opened_description

if TYPE_CHECKING:
    import os

    from numpy.typing import ArrayLike, NDArray

    from ..backends.base import Precision
    from .package import AffineStep, PackagePlan


@dataclass(frozen=True, slots=True)
class PackageNormalizer(PercentileNormalizer):
    """A package's preprocessing as one linear whole-volume normalisation.

    :meth:`stats` returns ``(lo, hi)`` such that ``(x - lo) / (hi - lo)`` is what the
    package's preprocessing steps make of ``x``; the inherited :meth:`normalize` and
    :meth:`denormalize` then apply it and its inverse. ``p_low``/``p_high`` are unused.

    Attributes
    ----------
    steps
        The preprocessing, in order.
    """

    steps: tuple[AffineStep, ...] = ()

    def stats(self, volume: ArrayLike) -> tuple[float, float]:
        """``(lo, hi)`` of the package's preprocessing applied to ``volume``."""
        vol = check_volume(volume)
        flat = vol.reshape(-1)
        if self.max_samples is not None and flat.size > self.max_samples:
            flat = flat[:: -(-flat.size // self.max_samples)]
        gain, offset = 1.0, 0.0
        for step in self.steps:
            g, o = self._step(step, flat, gain, offset)
            gain, offset = g * gain, g * offset + o
        if not (np.isfinite(gain) and gain > 0 and np.isfinite(offset)):
            raise ValueError(
                f"the model's preprocessing maps this volume with gain {gain:g} (it must be "
                "positive and finite); a constant volume, or a package that inverts "
                "intensities"
            )
        lo = -offset / gain
        return lo, lo + 1.0 / gain

    @staticmethod
    def _step(
        step: AffineStep, flat: NDArray[Any], gain: float, offset: float
    ) -> tuple[float, float]:
        """Gain and offset of ``step`` on the volume mapped so far (``gain * x + offset``)."""
        if step.kind == "linear":
            return step.gain, step.offset
        if step.kind == "percentile":
            lo, hi = np.percentile(flat, [step.p_low, step.p_high]) * gain + offset
            g = 1.0 / (float(hi) - float(lo) + step.eps)
            return g, -float(lo) * g
        mean = float(np.mean(flat, dtype=np.float64)) * gain + offset
        std = float(np.std(flat, dtype=np.float64)) * abs(gain)
        g = 1.0 / (std + step.eps)
        return g, -mean * g


def _reflect(x: NDArray[np.float32], widths: list[tuple[int, int]]) -> NDArray[np.float32]:
    """Pad by reflection (edge for axes of one voxel), one axis at a time."""
    for axis, (a, b) in enumerate(widths):
        if a or b:
            w = [(0, 0)] * x.ndim
            w[axis] = (a, b)
            x = np.pad(x, w, mode="reflect" if x.shape[axis] > 1 else "edge")
    return x


class PackageBackend(BackendBase):
    """A foreign bioimage.io model, run with torch (``eager``) or ONNX Runtime (``onnx``).

    It takes tiles of any shape (``tile_shape`` is ``None``). Each tile is padded by
    the model's halo and up to a size the model takes; a tile larger than a fixed
    input size is cut into blocks of that size, blended where their outputs are
    valid.

    Parameters
    ----------
    plan
        What :func:`~.package.check_package` found.
    run
        Runs one array in the model's axis order and returns its output.
    name
        ``"eager"`` (pytorch_state_dict weights) or ``"onnx"``.
    device
        Resolved device.
    """

    precision: Precision = "fp32"

    def __init__(self, plan: PackagePlan, run: Any, name: str, device: str) -> None:
        self.plan = plan
        self.name = name
        self.device = device
        self._run = run
        self.halo = plan.halo
        self.normalizer = PackageNormalizer(steps=plan.preprocessing)
        # without a batch axis the model takes one volume per call
        self.batch_size = plan.batch if "batch" in plan.input_axes else 1
        self.tile_shape = None
        #: the largest block along each axis: a fixed input size less the halo
        self.max_block = tuple(_max_block(s, h) for s, h in zip(plan.sizes, plan.halo, strict=True))

    def __repr__(self) -> str:
        return f"<PackageBackend {self.plan.name!r} {self.name} on {self.device}>"

    def predict(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Restore ``(N, 1, Z, Y, X)`` normalised tiles; same shape out."""
        if self._run is None:
            raise RuntimeError("package backend is closed")
        arr = self.check_batch(batch)
        tile = tuple(arr.shape[2:])
        block = tuple(min(t, m) if m else t for t, m in zip(tile, self.max_block, strict=True))
        if block == tile:
            return self._block(arr)
        from ..tiling import TileGrid

        grid = TileGrid.plan(tile, block, None, self.halo)  # block <= tile: no padding
        out = np.zeros_like(arr)
        for part in grid:
            where = (slice(None), slice(None), *part.slices)
            out[where] += self._block(np.ascontiguousarray(arr[where])) * grid.weight(part)
        return out

    def _block(self, arr: NDArray[np.float32]) -> NDArray[np.float32]:
        """Pad by the halo and up to a size the model takes, run, crop back."""
        tile = arr.shape[2:]
        padded = [
            (h, size.fit(t + 2 * h) - t - h)
            for t, size, h in zip(tile, self.plan.sizes, self.halo, strict=True)
        ]
        x = _reflect(arr, [(0, 0), (0, 0), *padded])
        if self.batch_size == 1:
            y = np.concatenate([self._one(x[i : i + 1]) for i in range(x.shape[0])], axis=0)
        else:
            y = self._one(x)
        crop = tuple(slice(a, a + t) for (a, _), t in zip(padded, tile, strict=True))
        return np.ascontiguousarray(y[(slice(None), slice(None), *crop)], dtype=np.float32)

    def _one(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run ``(N, 1, Z, Y, X)`` in the model's axis order; back to ``(N, 1, Z, Y, X)``."""
        ours = ("batch", "channel", "z", "y", "x")
        kept = [a for a in ours if a in self.plan.input_axes]
        dropped = tuple(i for i, a in enumerate(ours) if a not in kept)
        squeezed = np.squeeze(x, axis=dropped) if dropped else x
        model_in = np.ascontiguousarray(
            squeezed.transpose([kept.index(a) for a in self.plan.input_axes])
        )
        out = np.asarray(self._run(model_in), dtype=np.float32)
        have = list(self.plan.output_axes)
        for a in ours:  # add the batch/channel axes the output lacks, then our order
            if a not in have:
                out = out[np.newaxis]
                have.insert(0, a)
        return out.transpose([have.index(a) for a in ours])

    def close(self) -> None:
        """Drop the model or session."""
        self._run = None


def _max_block(size: AxisSize, halo: int) -> int:
    """The largest block along one axis: a fixed size less the halo; 0 for any size."""
    return size.min - 2 * halo if size.step == 0 else 0


def _torch_runner(descr: Any, device: str, where: str) -> Any:
    """Load the pytorch_state_dict weights with bioimageio.core; return a numpy call."""
    import torch

    try:
        from bioimageio.core.backends.pytorch_backend import load_torch_model
    except ImportError as exc:
        raise ImportError(
            f"running pytorch_state_dict packages needs bioimageio.core ({exc}); "
            "pip install 'rcanlive[bioimageio]'"
        ) from None
    weights = descr.weights.pytorch_state_dict
    try:
        net = load_torch_model(weights, load_state=True, devices=[device]).eval()
    except ImportError as exc:
        source = getattr(weights.architecture, "import_from", None) or "its architecture file"
        raise PackageError(
            f"{where}: the network's code ({source}) cannot be imported here ({exc}); "
            "install the Python package it comes from, or use a package with onnx weights"
        ) from None

    def run(x: NDArray[np.float32]) -> NDArray[np.float32]:
        with torch.inference_mode():
            y = net(torch.from_numpy(x).to(device))
        y = y[0] if isinstance(y, (tuple, list)) else y
        return y.float().cpu().numpy()  # type: ignore[no-any-return]

    return run


def _onnx_runner(descr: Any, device: str, where: str) -> Any:
    """Open the onnx weights with ONNX Runtime; return a numpy call."""
    import onnxruntime as ort

    from ..backends.onnx_runtime import _providers

    weights = descr.weights.onnx
    if getattr(weights, "external_data", None) is not None:
        raise PackageError(
            f"{where}: its ONNX weights keep their data in a separate file, which rcanlive "
            "does not read yet; use its pytorch_state_dict weights (eager backend)"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        weights.get_reader().read(), options, providers=_providers(device)
    )
    first = session.get_inputs()[0]
    dtype = np.float16 if first.type == "tensor(float16)" else np.float32

    def run(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return session.run(None, {first.name: x.astype(dtype)})[0]  # type: ignore[no-any-return]

    return run


def open_package_backend(
    path: str | os.PathLike[str],
    name: str = "auto",
    precision: str = "auto",
    device: str = "auto",
    tile_shape: tuple[int, int, int] | None = None,
) -> PackageBackend:
    """Open a bioimage.io package rcanlive did not write, to restore with it as packaged.

    Parameters
    ----------
    path
        The package (``.zip``, folder or its YAML file).
    name
        ``"auto"`` (its pytorch_state_dict weights if it has them, else onnx),
        ``"eager"`` (pytorch_state_dict) or ``"onnx"``.
    precision
        ``"auto"`` or ``"fp32"``: packages run as they were made.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    tile_shape
        Ignored: the backend takes tiles of any shape (see :class:`PackageBackend`).

    Raises
    ------
    PackageError
        If rcanlive cannot run the model (the message says why).
    BackendUnavailable
        For a backend, precision or device the package cannot run with.
    """
    from ..backends.devices import resolve_device
    from .analysis import plan_of

    where = str(path)
    with opened_description(path) as descr:
        plan = plan_of(descr, where)
        wanted = {"auto": plan.formats[0], "eager": "pytorch_state_dict", "onnx": "onnx"}.get(name)
        if wanted is None or wanted not in plan.formats:
            runs = " or ".join(
                {"pytorch_state_dict": "eager", "onnx": "onnx"}[f] for f in plan.formats
            )
            raise BackendUnavailable(
                f"{where} is a bioimage.io model with {' and '.join(plan.formats)} weights; "
                f"run it with the {runs} backend (or auto): other backends need an rcanlive "
                "model"
            )
        if precision not in ("auto", "fp32"):
            raise BackendUnavailable(
                f"{where}: bioimage.io models run in fp32 here, not {precision}"
            )
        dev = resolve_device(device)
        if wanted == "onnx":
            backend = PackageBackend(plan, _onnx_runner(descr, dev, where), "onnx", dev)
        else:
            backend = PackageBackend(plan, _torch_runner(descr, dev, where), "eager", dev)
    return backend
