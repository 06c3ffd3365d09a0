"""What rcanlive can run of a bioimage.io model description (spec 0.5): a :class:`PackagePlan`.

rcanlive restores one single-channel 3D volume into another of the same shape, with
statistics of the *whole* volume. A package qualifies when

* it has one input and one output, each with z, y and x space axes, one channel at
  most and a batch axis at most (no time or index axes);
* the output has the input's size and voxel size along z, y and x (a halo is fine);
* it has ``pytorch_state_dict`` or ``onnx`` weights;
* its preprocessing is linear (``scale_range`` or ``zero_mean_unit_variance`` over z,
  y and x together, ``fixed_zero_mean_unit_variance``, ``scale_linear``,
  ``ensure_dtype``) and its postprocessing is none or the exact inverse of a fixed
  preprocessing (CAREamics packages).

Every other case is a :class:`~.package.PackageError` that names what does not fit.
"""

from __future__ import annotations

import math
from typing import Any

from .package import RUNNABLE_FORMATS, AffineStep, AxisSize, PackageError, PackagePlan

SPACE = ("z", "y", "x")


def _axis_ids(tensor: Any, where: str, role: str) -> tuple[str, ...]:
    """The tensor's axis ids in order, after checking their kinds and channel count."""
    ids = []
    for axis in tensor.axes:
        kind = str(axis.type)
        if kind == "channel" and axis.size != 1:
            raise PackageError(
                f"{where}: the {role} has {axis.size} channels; rcanlive restores "
                "single-channel volumes (one colour at a time)"
            )
        if kind not in ("batch", "channel", "space"):
            raise PackageError(
                f"{where}: the {role} has a {kind} axis '{axis.id}'; rcanlive restores "
                "one 3D volume at a time (axes batch, channel, z, y, x)"
            )
        ids.append("batch" if kind == "batch" else "channel" if kind == "channel" else str(axis.id))
    space = [a for a in ids if a not in ("batch", "channel")]
    if sorted(space) != sorted(SPACE):
        shape = ",".join(ids)
        what = "a 2D model" if len(space) == 2 else f"space axes {space}"
        raise PackageError(
            f"{where}: the {role} axes are ({shape}), {what}; rcanlive restores 3D "
            "volumes and needs space axes z, y and x"
        )
    return tuple(ids)


def _space(tensor: Any) -> dict[str, Any]:
    return {str(a.id): a for a in tensor.axes if str(a.type) == "space"}


def _input_sizes(tensor: Any, where: str) -> tuple[AxisSize, AxisSize, AxisSize]:
    """Valid sizes of the input along z, y and x."""
    from bioimageio.spec.model.v0_5 import ParameterizedSize

    axes = _space(tensor)
    sizes = []
    for name in SPACE:
        size = axes[name].size
        if isinstance(size, int):
            sizes.append(AxisSize(size, 0))
        elif isinstance(size, ParameterizedSize):
            sizes.append(AxisSize(size.min, size.step))
        else:
            raise PackageError(
                f"{where}: the input's {name} size is tied to another axis ({size}); "
                "rcanlive needs each of z, y and x fixed or min + n*step"
            )
    return sizes[0], sizes[1], sizes[2]


def _halo(inputs: Any, outputs: Any, where: str) -> tuple[int, int, int]:
    """The output's halo along z, y and x, after checking it has the input's size."""
    from bioimageio.spec.model.v0_5 import SizeReference

    ins, outs = _space(inputs), _space(outputs)
    halo = []
    for name in SPACE:
        axis, source = outs[name], ins[name]
        size = axis.size
        same = (
            isinstance(size, SizeReference)
            and str(size.tensor_id) == str(inputs.id)
            and str(size.axis_id) == name
            and size.offset == 0
        ) or (isinstance(size, int) and size == source.size)
        if not same or not math.isclose(axis.scale, source.scale):
            raise PackageError(
                f"{where}: the output's {name} axis is not the input's (size {size}, "
                f"scale {axis.scale} vs {source.scale}); rcanlive restores a volume voxel "
                "for voxel and cannot run models that crop, upsample or resample"
            )
        halo.append(int(getattr(axis, "halo", 0) or 0))
    return halo[0], halo[1], halo[2]


def _single(value: Any, what: str, where: str) -> float:
    """A scalar kwarg, or the one value of a per-channel list."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise PackageError(
                f"{where}: {what} has {len(value)} values (one per channel or index); "
                "rcanlive restores single-channel volumes"
            )
        value = value[0]
    return float(value)


def _whole_volume(kwargs: Any, step: str, where: str) -> None:
    """Refuse statistics that are not over z, y and x together (e.g. per plane)."""
    axes = getattr(kwargs, "axes", None)
    if axes is not None and not set(SPACE) <= {str(a) for a in axes}:
        raise PackageError(
            f"{where}: {step} computes its statistics over axes "
            f"{[str(a) for a in axes]}, not the whole volume; rcanlive normalises "
            "whole volumes (z, y and x together)"
        )


def _step(proc: Any, where: str, role: str, tensor_id: str) -> AffineStep | None:
    """One processing step as a linear map (``None``: no effect on values)."""
    kind = str(proc.id)
    kw: Any = getattr(proc, "kwargs", None)  # sigmoid and a few others have none
    if kind == "ensure_dtype":
        return None
    if kind == "scale_linear":
        return AffineStep(
            "linear", _single(kw.gain, "scale_linear gain", where), _single(kw.offset, "", where)
        )
    if kind == "fixed_zero_mean_unit_variance":
        mean, std = _single(kw.mean, "mean", where), _single(kw.std, "std", where)
        return AffineStep("linear", 1.0 / (std + 1e-6), -mean / (std + 1e-6))
    if role == "preprocessing" and kind == "scale_range":
        _whole_volume(kw, kind, where)
        if kw.reference_tensor not in (None, tensor_id):
            raise PackageError(f"{where}: scale_range refers to another tensor")
        return AffineStep(
            "percentile", p_low=kw.min_percentile, p_high=kw.max_percentile, eps=kw.eps
        )
    if role == "preprocessing" and kind == "zero_mean_unit_variance":
        _whole_volume(kw, kind, where)
        return AffineStep("mean_std", eps=kw.eps)
    raise PackageError(
        f"{where}: the {role} step '{kind}' is not supported; rcanlive applies linear "
        "whole-volume normalisation (scale_range, zero_mean_unit_variance, "
        "fixed_zero_mean_unit_variance, scale_linear) and, after the network, nothing "
        "or its exact inverse, so it runs restoration models, not segmentation"
    )


def compose(steps: tuple[AffineStep, ...]) -> tuple[float, float]:
    """``(gain, offset)`` of fixed linear steps applied in order."""
    gain, offset = 1.0, 0.0
    for s in steps:
        gain, offset = s.gain * gain, s.gain * offset + s.offset
    return gain, offset


def _inverse(pre: tuple[AffineStep, ...], post: tuple[AffineStep, ...], where: str) -> bool:
    """Whether ``post`` undoes ``pre`` (True) or is absent (False); else an error."""
    if not post:
        return False
    if any(s.kind != "linear" for s in pre):
        raise PackageError(
            f"{where}: the postprocessing rescales the output with fixed values while "
            "the preprocessing depends on each volume's statistics; rcanlive needs the "
            "postprocessing to be absent or the exact inverse of the preprocessing"
        )
    g, o = compose(pre)
    gp, op = compose(post)
    # post(pre(x)) = gp*g*x + gp*o + op must be x
    scale = max(1.0, abs(o / g))  # intensity of the input that maps to 0
    if not (math.isclose(gp * g, 1.0, rel_tol=1e-4) and abs(gp * o + op) <= 1e-4 * scale):
        raise PackageError(
            f"{where}: the postprocessing (x -> {gp:.6g} x + {op:.6g}) is not the inverse "
            f"of the preprocessing (x -> {g:.6g} x + {o:.6g}); rcanlive needs it to be "
            "absent or to bring the output back to the input's intensities"
        )
    return True


def plan_of(descr: Any, where: str) -> PackagePlan:
    """Check a spec-0.5 model description and return how rcanlive runs it."""
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise PackageError(
            f"{where}: the model has {len(descr.inputs)} input(s) and "
            f"{len(descr.outputs)} output(s); rcanlive runs models with one of each"
        )
    inputs, outputs = descr.inputs[0], descr.outputs[0]
    input_axes = _axis_ids(inputs, where, "input")
    output_axes = _axis_ids(outputs, where, "output")
    present = [f for f in RUNNABLE_FORMATS if getattr(descr.weights, f, None) is not None]
    if not present:
        have = ", ".join(sorted(k for k, v in descr.weights if v is not None))
        raise PackageError(
            f"{where}: the weights are in {have}; rcanlive runs pytorch_state_dict or onnx "
            "weights (convert them with bioimageio.core's add_weights)"
        )
    tensor_id = str(inputs.id)
    pre = tuple(
        s for p in inputs.preprocessing if (s := _step(p, where, "preprocessing", tensor_id))
    )
    post = tuple(
        s for p in outputs.postprocessing if (s := _step(p, where, "postprocessing", tensor_id))
    )
    batch = next((a.size for a in inputs.axes if str(a.type) == "batch"), None)
    sizes, halo = _input_sizes(inputs, where), _halo(inputs, outputs, where)
    for name, size, h in zip(SPACE, sizes, halo, strict=True):
        # blocks of a fixed size F overlap by 2h + 1 with h cropped: F - 2h >= 2h + 2
        if size.step == 0 and h and size.min < 4 * h + 2:
            raise PackageError(
                f"{where}: the model's fixed {name} size {size.min} leaves too little "
                f"inside its halo of {h} voxels each side to tile a volume (it needs at "
                f"least {4 * h + 2})"
            )
    return PackagePlan(
        name=str(descr.name),
        formats=tuple(present),
        input_axes=input_axes,
        output_axes=output_axes,
        sizes=sizes,
        halo=halo,
        batch=batch if isinstance(batch, int) else None,
        preprocessing=pre,
        inverse_postprocessing=_inverse(pre, post, where),
    )
