"""``rcanlive simulate ...``: synthetic data without a microscope."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import UserError, app, console

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
