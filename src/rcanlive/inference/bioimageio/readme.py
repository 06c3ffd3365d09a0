"""The README.md an exported package carries as its documentation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rcanlive.model import LoadedModel

CITATION = (
    "Chen, J., Sasaki, H., Lai, H. et al. Three-dimensional residual channel attention "
    "networks denoise and sharpen fluorescence microscopy image volumes. Nature Methods "
    "18, 678–687 (2021)."
)
DOI = "10.1038/s41592-021-01155-x"


_GENERAL = (
    "## Tiling\n\n"
    "Channel attention averages over the whole input, so restore whole volumes "
    "where memory allows, or large tiles blended over their overlaps (rcanlive uses "
    "tiles of up to 32 × 256 × 256 voxels overlapping by 4 × 32 × 32). The "
    "network has no halo: its output has the input's shape.\n",
    "## Validation\n\n"
    "The package's test input is a small raw volume and its test output the network's "
    "restoration of it; `bioimageio test` reproduces the output with each weight "
    "format. How well the model restores unseen data is in the training metrics "
    "above (PSNR and SSIM on held-out pairs, on normalised volumes); check it on "
    "data of your own microscope before trusting it (the paper sees artifacts "
    "below an input SNR of about 3).\n",
    "## Use with rcanlive\n\n"
    "```\nrcanlive restore raw.tif restored.tif --model this-package.zip\n```\n\n"
    "rcanlive reads the package back into the checkpoint it was exported from "
    "(identical weights and normalisation) and runs it on any of its backends.\n",
)
"""The sections that do not depend on the model: tiling, validation, use."""

_WEIGHTS = (
    "- `pytorch_state_dict`: `RCAN3D(**kwargs)` from `rcan3d.py` (rcanlive's own "
    "model code; needs torch and pydantic)\n"
)
_ONNX = (
    "- `onnx`: the same network exported from it with torch's dynamo exporter, any "
    "batch and volume size, float32 in and out\n"
)


def _training_lines(metadata: dict[str, Any]) -> list[str]:
    """What the checkpoint says about its training, as Markdown list items."""
    lines = []
    if "epoch" in metadata:
        lines.append(f"- epoch: {metadata['epoch']}")
    metrics = metadata.get("metrics")
    if isinstance(metrics, dict):
        shown = ", ".join(
            f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if isinstance(v, (int, float))
        )
        if shown:
            lines.append(f"- validation metrics at that epoch: {shown}")
    if "raw_psnr" in metadata:
        lines.append(f"- PSNR of the raw validation input: {metadata['raw_psnr']:.4g} dB")
    if "precision" in metadata:
        lines.append(f"- training precision: {metadata['precision']}")
    pairs = metadata.get("train_pairs")
    if isinstance(pairs, list):
        lines.append(f"- training pairs: {len(pairs)}")
    return lines or ["- (the checkpoint recorded no training metadata)"]


def readme_text(
    loaded: LoadedModel,
    *,
    name: str,
    description: str,
    version: str,
    n_parameters: int,
    voxel_size_um: tuple[float, float, float] | None,
    onnx: bool = True,
) -> str:
    """The package's README.md: model, normalisation, output units, tiling, citation."""
    c = loaded.model_config
    n = loaded.normalizer
    voxel = (
        "z, y, x voxel size of the training data: "
        + " × ".join(f"{v:g}" for v in voxel_size_um)
        + " µm"
        if voxel_size_um is not None
        else "the training data's voxel size was not recorded (axes carry no unit)"
    )
    sections = [
        f"# {name}\n\n{description}\n",
        "## Model\n\n"
        f"A 3D residual channel attention network (RCAN, Chen et al. 2021) with "
        f"{c.n_groups} residual group(s) of {c.n_blocks} block(s), {c.channels} feature "
        f"channels and channel-attention reduction {c.reduction} ({n_parameters:,} "
        f"parameters), trained with rcanlive {version}.\n\n"
        + "\n".join(_training_lines(loaded.metadata))
        + "\n",
        "## Input\n\n"
        f"One single-channel volume, axes (batch, channel, z, y, x), any size; {voxel}.\n\n"
        f"Preprocessing: percentile normalisation of the whole volume, `scale_range` with "
        f"percentiles {n.p_low:g} and {n.p_high:g} over z, y and x: "
        "`(x - lo) / (hi - lo)`, so the dim background sits near 0 and bright "
        "structures near 1 whatever the illumination power.\n",
        "## Output\n\n"
        "The restored volume, same shape, float32, **in the input's normalised units** "
        f"(0 ≈ the input's percentile {n.p_low:g}, 1 ≈ its percentile {n.p_high:g}; not "
        "clipped). bioimage.io postprocessing cannot refer to the input's percentiles, "
        "so the package leaves the output there; `y * (hi - lo) + lo`, with `lo` and `hi` "
        "the input's percentiles, brings it back to the raw intensity scale, which is "
        "what rcanlive does (bleaching curves need real intensities).\n",
        "## Weights\n\n" + _WEIGHTS + (_ONNX if onnx else ""),
        *_GENERAL,
        f"## Citation\n\n{CITATION} https://doi.org/{DOI}\n",
    ]
    return "\n".join(sections)
