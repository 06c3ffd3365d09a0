"""``rcanlive train``: fit a 3D RCAN to matched low/high pairs."""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  (typer resolves annotations at runtime)
from typing import Annotated

import typer

from .app import UserError, app, console


@app.command(
    "train",
    help=(
        "Train a 3D RCAN from a training config (pairs dataset or raw/gt TIFF folders).\n\n"
        "Writes best.pt (best validation PSNR), last.pt, history.json and loss.png to the "
        "output folder. Launch with torchrun to train on several GPUs.\n\n"
        "Example: rcanlive train --config configs/rcan-isim.toml --out runs/isim --epochs 50"
    ),
)
def train_command(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Training config (TOML/YAML/JSON).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (overrides output_dir).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Number of epochs (overrides epochs).")
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes",
            help=(
                "Wall-clock budget for training, in minutes (overrides max_minutes): the "
                "run is shortened to the epochs that fit, its learning-rate schedule "
                "rescaled. Example: --max-minutes 5"
            ),
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from last.pt in the output folder.")
    ] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (overrides device).")
    ] = None,
) -> None:
    """Run the trainer and report where the model went."""
    from ..config import load_config
    from ..config.training import TrainingConfig
    from ..log import configure_logging
    from ..model import CheckpointError
    from ..simulation.optics import channel_psf
    from ..training import DatasetError, train
    from ..training.ground_truth import pairs_target_psf

    cfg = load_config(
        config,
        TrainingConfig,
        output_dir=out,
        epochs=epochs,
        device=device,
        max_minutes=max_minutes,
    )
    configure_logging()
    try:
        target_psf = pairs_target_psf(cfg.data, channel_psf)  # the rig's, for deconvolve_target
        result = train(cfg, resume=resume, console=console, target_psf=target_psf)
    except (DatasetError, CheckpointError) as exc:
        raise UserError(str(exc)) from None
    except ValueError as exc:
        if str(exc).startswith(("cannot resume", "precision", "device", "this GPU")):
            raise UserError(str(exc)) from None
        raise
    if result.rank != 0:
        return
    console.print(
        f"best model: {result.best_checkpoint} (epoch {result.best_epoch}, validation PSNR "
        f"{result.best_psnr:.2f} dB vs raw {result.raw_psnr:.2f} dB); "
        f"loss curve: {result.loss_plot}",
        highlight=False,
    )
