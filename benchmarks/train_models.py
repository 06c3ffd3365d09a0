"""Train the networks of the quality benchmark and the bundled model, each on a time budget.

Stages (``--stages``, comma separated):

``bundled``
    The bundled live model's recipe (RCAN 2×2×16) on a mix of structures and input SNRs:
    mitochondria (tubes), filaments, puncta and sheets, 8 fields each, 3 inputs per
    field with median input SNR spread over 0.7–12, truth at 457 W/cm². The ER network
    is left out on purpose: it is the unseen structure the model card reports.
``isim-rcan``, ``isim-care``, ``isim-small``
    Protocol 1's networks (``bench_quality.py``): the paper's RCAN 5×3×32, a CARE 3D
    U-Net and RCAN 2×2×16, on the same pairs (mitochondria and ER, 4.2 → 457 W/cm²,
    seed 7 samples, the bundled pairs config's 6 positions).
``phantom2``, ``phantom3``
    Protocol 2's deblurring networks (RCAN 5×3×32) on 8 noise-free phantom pairs
    blurred 2× / 3× the iSIM PSF.

Every stage trains with :func:`rcanlive.training.train` and ``max_minutes`` (the
trainer fits its epochs and learning-rate schedule into the budget); validation holds
out whole fields of view. ``OUT/<stage>.pt`` is each stage's best checkpoint and
``OUT/histories.json`` every stage's learning curve, budget and time spent.

    python benchmarks/train_models.py --device cuda --out /tmp/models       # GPU
    python benchmarks/train_models.py --stages bundled --budget-scale 0.05  # CPU smoke
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

#: Stage → (minutes on the reference GPU budget, architecture, data set).
STAGES: dict[str, tuple[float, dict[str, Any], str]] = {
    "bundled": (2.0, {"n_groups": 2, "n_blocks": 2, "channels": 16, "reduction": 4}, "mixed"),
    "isim-rcan": (1.2, {"n_groups": 5, "n_blocks": 3, "channels": 32, "reduction": 8}, "isim"),
    "isim-care": (1.2, {"architecture": "unet"}, "isim"),
    "isim-small": (0.5, {"n_groups": 2, "n_blocks": 2, "channels": 16, "reduction": 4}, "isim"),
    "phantom2": (0.7, {"n_groups": 5, "n_blocks": 3, "channels": 32, "reduction": 8}, "phantom2"),
    "phantom3": (0.7, {"n_groups": 5, "n_blocks": 3, "channels": 32, "reduction": 8}, "phantom3"),
}
#: Training fields of the mixed set (stage ``bundled``): inside a 640² px sample.
MIXED_POSITIONS = [(x, y) for x in (-8.0, -2.5, 2.5, 8.0) for y in (-6.0, 6.0)]
MIXED_KINDS = ("mitochondria", "filaments", "puncta", "sheets")


@functools.lru_cache(maxsize=2)
def _data(name: str) -> tuple[list[Any], tuple[int, int, int]]:
    """The training pairs of a data set and the patch shape trained on."""
    import bench_quality as bq

    from rcanlive.evaluation.simulated import mixed_pairs

    settings = bq.Settings(train_budget_s=1.0)
    if name == "mixed":
        return mixed_pairs(MIXED_KINDS, MIXED_POSITIONS, snr_range=(0.7, 12.0), seed=11), (
            16,
            96,
            96,
        )
    if name == "isim":
        sets = bq.isim_sets(settings)
        return [p for kind in bq.SAMPLES for p in sets[kind]["train"]], (16, 96, 96)
    blur = int(name.removeprefix("phantom"))
    return bq.phantom_pairs(blur, settings.phantom_train, 300 + blur, settings), (32, 64, 64)


def train_stage(stage: str, out: Path, runs: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train one stage; return its record for histories.json."""
    from rcanlive.config.training import NetworkConfig, TrainingConfig, TrainingDataConfig
    from rcanlive.training import pairs_from_arrays, train

    minutes, arch, data_name = STAGES[stage]
    t0 = time.perf_counter()
    pairs, patch = _data(data_name)
    data_s = time.perf_counter() - t0
    config = TrainingConfig(
        data=TrainingDataConfig(pairs=Path("in-memory"), validation_count=2, validation_patches=4),
        model=NetworkConfig(**arch),
        patch_shape=patch,
        batch_size=args.batch,
        epochs=400,
        steps_per_epoch=args.steps_per_epoch,
        learning_rate=5e-4,
        device=args.device,
        num_workers=args.workers,
        max_minutes=minutes * args.budget_scale,
        output_dir=runs / stage,
        progress=False,
    )
    arrays = pairs_from_arrays(
        [p.low for p in pairs],
        [p.high for p in pairs],
        [p.name for p in pairs],
        groups=[p.group for p in pairs],
    )
    t1 = time.perf_counter()
    result = train(config, pairs=arrays)
    shutil.copy(result.best_checkpoint, out / f"{stage}.pt")
    return {
        "stage": stage,
        "architecture": arch,
        "pairs": len(pairs),
        "groups": len({p.group for p in pairs}),
        "patch": patch,
        "batch": args.batch,
        "steps_per_epoch": config.steps_per_epoch,
        "device": _device_name(args.device),
        "budget_minutes": minutes * args.budget_scale,
        "data_seconds": data_s,
        "train_seconds": time.perf_counter() - t1,
        "best_epoch": result.best_epoch,
        "best_val_psnr": result.best_psnr,
        "raw_val_psnr": result.raw_psnr,
        "history": [asdict(r) for r in result.history],
    }


def plot_curves(histories: Path, out: Path) -> None:
    """Validation PSNR against training time, one line per stage (are they converged?)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in json.loads(histories.read_text()) if r.get("history")]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in records:
        seconds = np.cumsum([h["seconds"] for h in r["history"]])
        psnr = [h["val_psnr"] for h in r["history"]]
        (line,) = ax.plot(seconds, psnr, "o-", ms=2, label=f"{r['stage']} ({r['device']})")
        ax.axhline(r["raw_val_psnr"], color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlabel("training time (s, epochs only)")
    ax.set_ylabel("validation PSNR (dB, held-out fields)")
    ax.set_title("train_models.py learning curves (dotted: raw input)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _device_name(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    from rcanlive.cpu import cpu_model

    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def _psf_cache(load: Path | None, save: Path | None) -> None:
    """Serve the iSIM PSFs from a file where psfmodels is missing, or record them.

    The GPU machine's Python has no psfmodels wheel: the PSFs are computed here
    (``--save-psf FILE``) and travel with the job (``--load-psf FILE``).
    """
    from rcanlive.simulation import optics

    original = optics._isim_psf_cached
    stored: dict[str, np.ndarray] = dict(np.load(load)) if load else {}

    def cached(*args: Any) -> np.ndarray:
        key = repr(args)
        if key not in stored:
            stored[key] = np.asarray(original(*args))
            if save:
                np.savez(save, **stored)  # type: ignore[arg-type]
        return stored[key]

    optics._isim_psf_cached = cached  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    """Train the chosen stages; write OUT/<stage>.pt and OUT/histories.json."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--out", type=Path, default=Path("runs/models"))
    parser.add_argument("--runs", type=Path, help="training folders (default OUT/runs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="× each stage's minutes")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--load-psf", type=Path, help="PSFs computed elsewhere (.npz)")
    parser.add_argument("--save-psf", type=Path, help="record the PSFs used (.npz)")
    parser.add_argument(
        "--plot", type=Path, help="only plot OUT/histories.json's learning curves to this PNG"
    )
    args = parser.parse_args(argv)
    if args.plot:
        plot_curves(args.out / "histories.json", args.plot)
        return 0
    _psf_cache(args.load_psf, args.save_psf)
    args.out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    for stage in [s.strip() for s in args.stages.split(",") if s.strip()]:
        print(f"== {stage}", flush=True)
        try:
            records.append(train_stage(stage, args.out, args.runs or args.out / "runs", args))
            r = records[-1]
            print(
                f"   {r['train_seconds']:.0f} s, {len(r['history'])} epochs, best val PSNR "
                f"{r['best_val_psnr']:.2f} dB (raw {r['raw_val_psnr']:.2f})",
                flush=True,
            )
        except Exception as exc:  # one failed stage must not lose the others
            import traceback

            traceback.print_exc()
            records.append({"stage": stage, "error": repr(exc)})
        (args.out / "histories.json").write_text(json.dumps(records, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
