"""``rcanlive simulate ...``: synthetic data without a microscope."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .app import UserError, app, console

if TYPE_CHECKING:
    from ..training.pre_expansion_pairs import PreExpansionPairs

simulate_app = typer.Typer(
    help=(
        "Make synthetic training data without a microscope.\n\n"
        "Example: rcanlive simulate phantoms --out data/phantoms --n 35 --blur 2"
    ),
    no_args_is_help=True,
)
app.add_typer(simulate_app, name="simulate")


@simulate_app.command(
    "phantoms",
    help=(
        "Write the paper's spherical phantoms as raw/ and gt/ TIFF folders for training.\n\n"
        "Ground truth: random spheres (radius ≤ 3 px, intensity 1000–20000) blurred by the "
        "iSIM PSF. Input: the same spheres blurred by a kernel BLUR times the PSF's size, "
        "with Poisson + Gaussian noise (by default only when BLUR is 1, as in the paper).\n\n"
        "Example: rcanlive simulate phantoms --out data/phantoms --n 35 --size 128 --blur 2"
    ),
)
def phantoms_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (gets raw/ and gt/).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of volume pairs.")] = 30,
    size: Annotated[int, typer.Option("--size", min=8, help="Cube side in voxels.")] = 256,
    depth: Annotated[
        int | None, typer.Option("--depth", min=1, help="Planes per volume (default: size).")
    ] = None,
    blur: Annotated[
        int, typer.Option("--blur", min=1, max=4, help="Input blur, times the iSIM PSF.")
    ] = 1,
    noise: Annotated[
        bool | None,
        typer.Option("--noise/--no-noise", help="Add noise to the input (default: if blur 1)."),
    ] = None,
    sigma: Annotated[
        float, typer.Option("--sigma", min=0.0, help="Gaussian background noise (std).")
    ] = 50.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Simulate ``n`` phantom pairs into ``out/raw`` and ``out/gt``."""
    from rich.progress import Progress

    from ..simulation.phantoms import PhantomSpec, write_phantom_pairs

    try:
        spec = PhantomSpec(
            shape=(depth or size, size, size),
            blur=blur,
            noise=(blur == 1) if noise is None else noise,
            gaussian_sigma=sigma,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if spec.blur == 1 and not spec.noise:
        raise UserError("--blur 1 with --no-noise makes inputs identical to ground truth")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("phantoms", total=n)
        write_phantom_pairs(out, n, spec, seed=seed, on_volume=lambda _i: progress.advance(task))
    console.print(f"wrote {n} pairs to {out / 'raw'} and {out / 'gt'}", highlight=False)


@simulate_app.command("pairs")
def pairs_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    config: Annotated[
        Path, typer.Option("--config", "-c", help='A pairs config (kind = "pairs").')
    ] = Path("configs/training-pairs.toml"),
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
) -> None:
    """Matched low/high training pairs from the simulated iSIM, as fast as it renders.

    The same acquisition as `rcanlive acquire pairs --simulate`, without waiting for
    the exposures in wall-clock time.

    Example: rcanlive simulate pairs --out data --config configs/training-pairs.toml
    """
    from .running import run_with_progress

    run_with_progress("pairs", config, True, out, overwrite, realtime=False)


@simulate_app.command(
    "pre-expansion",
    help=(
        "Training pairs for expansion-microscopy resolution enhancement (paper, Fig. 4a).\n\n"
        "From each post-expansion volume (TIFF, folder of TIFFs, or a tiling/live dataset; "
        "a stitched gel is cut into blocks): the target is the volume deconvolved (Richardson-"
        "Lucy); the input is a synthetic pre-expansion volume (filtered by mOTF = FT(ePSF)/"
        "FT(sPSF), sampled on the unexpanded grid, with pre-expansion background and noise), "
        "deconvolved and enlarged EXPANSION times. Writes OUT/raw and OUT/gt (a training "
        "config's raw_dir and gt_dir), OUT/synthetic and OUT/pre_expansion.json. "
        "Restore real iSIM volumes the same way: deconvolve, enlarge EXPANSION times.\n\n"
        "The noise is measured on --reference (an experimental pre-expansion volume of the "
        "first volume's region, registered to it) and fitted by SSIM within ±15 %; without "
        "one, the camera's noise measured on the input and a signal EXPANSION³ times brighter "
        "(--signal-scale).\n\n"
        "Example: rcanlive simulate pre-expansion gel.ome.zarr data/exm --expansion 3.2 "
        "--reference pre.tif"
    ),
)
def pre_expansion_command(
    source: Annotated[Path, typer.Argument(help="Post-expansion TIFF(s) or dataset.")],
    out: Annotated[Path, typer.Argument(help="Output folder for the pairs.")],
    expansion: Annotated[
        float, typer.Option("--expansion", "-M", min=1.01, help="Gel's linear expansion factor.")
    ],
    psf: Annotated[
        Path | None, typer.Option("--psf", help="Measured PSF (centred bead TIFF); default: rig's.")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option("--reference", help="Experimental pre-expansion TIFF to match noise to."),
    ] = None,
    iterations: Annotated[
        int, typer.Option("--iterations", min=1, help="Richardson-Lucy iterations.")
    ] = 15,
    signal_scale: Annotated[
        float | None,
        typer.Option("--signal-scale", min=0.0, help="Without --reference: pre/post brightness."),
    ] = None,
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", min=0.0, help="TIFF pixel size, µm.")
    ] = None,
    z_step: Annotated[float | None, typer.Option("--z-step", min=0.0, help="TIFF z step, µm.")] = (
        None
    ),
    deconvolve_input: Annotated[
        bool, typer.Option("--deconvolve-input/--raw-input", help="Deconvolve the inputs.")
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the noise.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace pairs in OUT.")] = False,
) -> None:
    """Synthesise pre-expansion inputs and deconvolved targets into ``out``."""
    from rich.progress import Progress

    from ..simulation.optics import rig_psf
    from ..training.pre_expansion_pairs import PreExpansionSettings, write_pre_expansion_pairs

    if (pixel_size is None) != (z_step is None):
        raise UserError("give both --pixel-size and --z-step (the TIFFs' voxel size), or neither")
    voxel = (z_step, pixel_size, pixel_size) if z_step and pixel_size else None
    try:
        settings = PreExpansionSettings(
            expansion, iterations, deconvolve_input, signal_scale, seed=seed, device=device
        )
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("pairs", total=None)
            result = write_pre_expansion_pairs(
                source, out, settings, psf=psf or rig_psf, reference=reference,
                voxel_um=voxel, overwrite=overwrite,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )  # fmt: skip
    except (ValueError, FileExistsError) as exc:
        raise UserError(str(exc)) from None
    console.print(_pairs_summary(result), highlight=False, markup=False)


def _pairs_summary(result: PreExpansionPairs) -> str:
    """What ``simulate pre-expansion`` wrote, its noise, and how to train on it."""
    n, left_out = result.noise, len(result.skipped)
    lines = [
        f"wrote {len(result.names)} pairs to {result.raw_dir} and {result.gt_dir}"
        + (f" ({left_out} empty blocks left out)" if left_out else ""),
        f"noise: offset {n.offset:.1f} counts, gain {n.gain:.3f} e⁻/count, Gaussian "
        f"{n.read_noise:.2f} e⁻, signal ×{n.signal_scale:.3g}",
    ]
    if result.ssim is not None:
        measured, fitted = result.ssim
        lines.append(f"SSIM to the reference: {measured:.3f} measured, {fitted:.3f} fitted")
    lines.append(f'train with [data] raw_dir = "{result.raw_dir}", gt_dir = "{result.gt_dir}"')
    return "\n".join(lines)
