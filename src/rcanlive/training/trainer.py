"""Train a 3D RCAN on matched pairs: Adam, step-halved learning rate, AMP, DDP.

One call, :func:`train`, runs the paper's recipe from a :class:`TrainingConfig`:

* Adam at ``learning_rate`` (1e-4), halved every quarter of the epochs (``StepLR``);
* MAE (paper) or MSE loss on percentile-normalised patches (16×256×256 by default)
  with background rejection and rot90/flip augmentation;
* validation PSNR and SSIM every epoch on fixed patches of held-out volumes;
* mixed precision: bf16 autocast on CUDA (fp16 with loss scaling where bf16 is not
  supported) and on CPUs with native bf16, selectable with ``precision``;
* ``last.pt`` every epoch (with optimiser state, for ``resume``) and ``best.pt`` when
  validation PSNR improves, ``history.json``, and ``loss.png`` at the end;
* several GPUs when launched with ``torchrun``: ``torch.distributed`` +
  ``DistributedDataParallel``, patch indices sharded by ``DistributedSampler``;
* a wall-clock budget (``max_minutes``): the run is shortened to the epochs that fit,
  timed on its second epoch (the first is warm-up), the schedule rescaled, and stops
  early if it falls behind.

Under ``torchrun`` every process validates the same patches (cheap, and it keeps
them in step without extra communication); only rank 0 writes files and shows
progress.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..analysis.metrics import psnr, ssim
from ..log import logger
from ..model import (
    ModelConfig,
    PercentileNormalizer,
    build_network,
    load_checkpoint,
    save_checkpoint,
)
from .datasets import (
    PatchDataset,
    PreparedVolume,
    VolumePair,
    deconvolve_targets,
    prepare,
    read_tiff_pairs,
    read_zarr_pairs,
    register_pairs,
    split_pairs,
)
from .patches import BackgroundRule, PatchSampler
from .precision import choose_precision, resolve_precision

if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractContextManager

    from rich.console import Console

    from ..config.training import TrainingConfig

# Seed stream of the fixed validation patches, apart from the training patches' epochs.
_VALIDATION_STREAM = 2**31 - 1


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """Figures of one epoch (losses on normalised intensities)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_psnr: float
    val_ssim: float
    lr: float
    seconds: float


@dataclass
class TrainingResult:
    """What :func:`train` produced.

    Attributes
    ----------
    output_dir
        Folder holding the files below.
    best_checkpoint, last_checkpoint
        ``best.pt`` (highest validation PSNR) and ``last.pt``.
    loss_plot
        ``loss.png``.
    history
        One record per epoch, resumed epochs included.
    best_epoch, best_psnr
        Epoch and validation PSNR (dB) of ``best.pt``.
    raw_psnr, raw_ssim
        The same metrics of the raw input against ground truth: the baseline.
    rank
        This process's rank under ``torchrun`` (0 otherwise); only rank 0 writes files.
    planned_epochs, epochs
        The configured epoch count, and the count the run ends after (fewer when
        ``max_minutes`` shortened it).
    """

    output_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    loss_plot: Path
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_psnr: float = -math.inf
    raw_psnr: float = math.nan
    raw_ssim: float = math.nan
    rank: int = 0
    planned_epochs: int = 0
    epochs: int = 0


@dataclass(frozen=True, slots=True)
class _Distributed:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return torch.distributed.is_available() and torch.distributed.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _agreed_precision(
    config: TrainingConfig, device: torch.device, dist_ctx: _Distributed
) -> torch.dtype | None:
    """The autocast dtype; under DDP, rank 0's measured choice for every rank."""
    if not dist_ctx.enabled or dist_ctx.world_size == 1:
        return choose_precision(config, device)[0]
    names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    choice = [names[choose_precision(config, device)[0]] if dist_ctx.is_main else ""]
    torch.distributed.broadcast_object_list(choice, src=0)
    return resolve_precision(choice[0], device)


def load_training_pairs(config: TrainingConfig) -> list[VolumePair]:
    """Read the pairs named by ``config.data`` (TIFF folders or OME-Zarr pairs)."""
    data = config.data
    if data.pairs is not None:
        return read_zarr_pairs(data.pairs)
    assert data.raw_dir is not None and data.gt_dir is not None
    return read_tiff_pairs(data.raw_dir, data.gt_dir)


def train(
    config: TrainingConfig,
    *,
    resume: bool = False,
    pairs: Sequence[VolumePair] | None = None,
    console: Console | None = None,
    target_psf: np.ndarray | None = None,
) -> TrainingResult:
    """Train an RCAN3D as ``config`` says and write its checkpoints.

    Parameters
    ----------
    config
        The training settings.
    resume
        Continue from ``output_dir/last.pt`` (weights, optimiser, schedule, history).
    pairs
        Pairs to use instead of reading ``config.data``'s source (the split settings
        still apply).
    console
        Rich console for the progress bar (stderr by default).
    target_psf
        PSF for ``data.deconvolve_target`` when ``data.psf`` names none (the CLI
        passes the rig's iSIM PSF at the pairs dataset's voxel size).

    Returns
    -------
    TrainingResult
        Paths of the checkpoints and plot, and the per-epoch history.

    Raises
    ------
    FileNotFoundError
        If ``resume`` is set and there is no ``last.pt``.
    DatasetError
        If the pairs cannot be used.
    """
    dist_ctx, device = _setup_distributed(config.device)
    try:
        if config.data.registration != "none":  # before RL: resampling would blur a deconvolved GT
            pairs = register_pairs(
                pairs if pairs is not None else load_training_pairs(config), config.data
            )
        if config.data.deconvolve_target:  # the paper's ground truth: RL-deconvolved
            pairs = deconvolve_targets(
                pairs if pairs is not None else load_training_pairs(config),
                config.data,
                psf=target_psf,
                device=str(device),
            )
        return _train(config, dist_ctx, device, resume, pairs, console)
    finally:
        if dist_ctx.owns_group:
            torch.distributed.destroy_process_group()


@dataclass(frozen=True, slots=True)
class _TrainingData:
    """The split pairs, their normalised volumes, the validation patches and the loader."""

    train_pairs: list[VolumePair]
    val_pairs: list[VolumePair]
    normalizer: PercentileNormalizer
    sampler: PatchSampler
    train_volumes: list[PreparedVolume]
    val_patches: list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, slots=True)
class _Optimisation:
    """The network and what trains it."""

    model_config: ModelConfig
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module


@dataclass(frozen=True, slots=True)
class _Run:
    """Everything the epoch loop needs, set up by :func:`_train`."""

    config: TrainingConfig
    dist_ctx: _Distributed
    device: torch.device
    amp_dtype: torch.dtype | None
    data: _TrainingData
    dataset: PatchDataset
    loader: DataLoader[tuple[torch.Tensor, torch.Tensor]]
    parts: _Optimisation
    model: nn.Module
    metadata_base: dict[str, Any]


def _train(
    config: TrainingConfig,
    dist_ctx: _Distributed,
    device: torch.device,
    resume: bool,
    pairs: Sequence[VolumePair] | None,
    console: Console | None,
) -> TrainingResult:
    """Set up data and model, run the epochs and plot the history."""
    out = Path(config.output_dir)
    result = TrainingResult(out, out / "best.pt", out / "last.pt", out / "loss.png")
    result.rank = dist_ctx.rank
    result.planned_epochs = result.epochs = config.epochs
    amp_dtype = _agreed_precision(config, device, dist_ctx)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one patch shape: let cuDNN pick kernels
    torch.manual_seed(config.seed)

    # --- data ---------------------------------------------------------------
    data = _load_data(config, pairs)
    result.raw_psnr = float(np.mean([psnr(h, lo) for lo, h in data.val_patches]))
    result.raw_ssim = float(np.mean([ssim(h, lo) for lo, h in data.val_patches]))
    dataset, loader = _make_loader(config, data, dist_ctx, device)

    # --- model and optimisation -----------------------------------------------
    parts = _build_optimisation(config, device, amp_dtype)
    start_epoch = 1
    if resume:
        start_epoch = _restore(result, parts, device)
    model: nn.Module = parts.net
    if dist_ctx.enabled:
        model = nn.parallel.DistributedDataParallel(
            parts.net, device_ids=[device.index] if device.type == "cuda" else None
        )
    metadata_base = _metadata_base(config, result, data, amp_dtype, dist_ctx)
    if dist_ctx.is_main:
        _log_start(data, metadata_base["precision"], device, dist_ctx, result.raw_psnr)

    # --- loop -----------------------------------------------------------------
    run = _Run(
        config, dist_ctx, device, amp_dtype, data, dataset, loader, parts, model, metadata_base
    )
    _run_epochs(run, result, start_epoch, console)
    if dist_ctx.is_main:
        plot_history(result.history, result.loss_plot, raw_psnr=result.raw_psnr)
    return result


def _load_data(config: TrainingConfig, pairs: Sequence[VolumePair] | None) -> _TrainingData:
    """Read and split the pairs, normalise them and cut the fixed validation patches."""
    all_pairs = list(pairs) if pairs is not None else load_training_pairs(config)
    train_pairs, val_pairs = split_pairs(
        all_pairs,
        validation_fraction=config.data.validation_fraction,
        validation_count=config.data.validation_count,
        seed=config.seed,
    )
    normalizer = PercentileNormalizer(config.normalization.p_low, config.normalization.p_high)
    sampler = PatchSampler(
        config.patch_shape,
        BackgroundRule(config.background.fraction, config.background.max_tries),
    )
    train_volumes = prepare(train_pairs, normalizer)
    val_patches = _validation_patches(
        prepare(val_pairs, normalizer), sampler, config.data.validation_patches, config.seed
    )
    return _TrainingData(train_pairs, val_pairs, normalizer, sampler, train_volumes, val_patches)


def _make_loader(
    config: TrainingConfig, data: _TrainingData, dist_ctx: _Distributed, device: torch.device
) -> tuple[PatchDataset, DataLoader[tuple[torch.Tensor, torch.Tensor]]]:
    """The epoch's random patch dataset and its loader (sharded across ranks)."""
    per_rank = config.steps_per_epoch * config.batch_size
    dataset = PatchDataset(
        data.train_volumes, data.sampler, per_rank * dist_ctx.world_size, seed=config.seed
    )
    shard: DistributedSampler[int] | None = (
        DistributedSampler(
            dataset, num_replicas=dist_ctx.world_size, rank=dist_ctx.rank, shuffle=False
        )
        if dist_ctx.enabled
        else None
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=shard,
        shuffle=False,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
    return dataset, loader


def _build_optimisation(
    config: TrainingConfig, device: torch.device, amp_dtype: torch.dtype | None
) -> _Optimisation:
    """The network on ``device`` with Adam, the step-halving schedule, scaler and loss."""
    model_config = ModelConfig(**config.model.model_dump())
    net = build_network(model_config).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=0.5)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    loss_fn: nn.Module = nn.L1Loss() if config.loss == "mae" else nn.MSELoss()
    return _Optimisation(model_config, net, optimizer, scheduler, scaler, loss_fn)


def _metadata_base(
    config: TrainingConfig,
    result: TrainingResult,
    data: _TrainingData,
    amp_dtype: torch.dtype | None,
    dist_ctx: _Distributed,
) -> dict[str, Any]:
    """Checkpoint metadata shared by every epoch."""
    return {
        "training_config": config.model_dump(mode="json"),
        "raw_psnr": result.raw_psnr,
        "raw_ssim": result.raw_ssim,
        "train_pairs": [p.name for p in data.train_pairs],
        "validation_pairs": [p.name for p in data.val_pairs],
        "precision": str(amp_dtype or torch.float32).removeprefix("torch."),
        "world_size": dist_ctx.world_size,
        "distributed": dist_ctx.enabled,
        "max_minutes": config.max_minutes,
        "planned_epochs": config.epochs,
    }


def _log_start(
    data: _TrainingData,
    precision: str,
    device: torch.device,
    dist_ctx: _Distributed,
    raw_psnr: float,
) -> None:
    """Log what is about to be trained, and the raw-input baseline."""
    logger.info(
        "training %d pairs (%d held out), patch %s, %s on %s x%d; raw PSNR %.2f dB",
        len(data.train_pairs),
        len(data.val_pairs),
        data.sampler.shape_for(data.train_volumes[0].high.shape),
        precision,
        device,
        dist_ctx.world_size,
        raw_psnr,
    )


def _run_epochs(
    run: _Run, result: TrainingResult, start_epoch: int, console: Console | None
) -> None:
    """Train epochs ``start_epoch``..``result.epochs``, recording, saving and logging each.

    ``result.epochs`` starts at ``config.epochs``; ``max_minutes`` may lower it.
    """
    config = run.config
    show = config.progress and run.dist_ctx.is_main
    started, first = _clock(), 0.0  # first: seconds the first epoch of this run took
    with _progress(show, console) as progress:
        task = progress.add_task(
            "training",
            total=config.epochs * config.steps_per_epoch,
            completed=(start_epoch - 1) * config.steps_per_epoch,
            loss=math.nan,
            psnr=result.history[-1].val_psnr if result.history else math.nan,
        )
        epoch = start_epoch
        while epoch <= result.epochs:
            record = _run_epoch(run, epoch, progress, task)
            result.history.append(record)
            progress.update(task, psnr=record.val_psnr)
            if config.max_minutes is not None:
                done = epoch - start_epoch + 1
                if done == 1:
                    first = _clock() - started
                _apply_budget(run, result, done, _clock() - started, first)
                progress.update(task, total=result.epochs * config.steps_per_epoch)
            improved = record.val_psnr > result.best_psnr
            if improved:
                result.best_psnr, result.best_epoch = record.val_psnr, epoch
            if run.dist_ctx.is_main:
                _save_epoch(result, run, improved)
                _log_epoch(record, result.epochs)
            epoch += 1


def _apply_budget(
    run: _Run, result: TrainingResult, done: int, elapsed: float, first: float
) -> None:
    """Fit the epoch count to ``max_minutes`` after ``done`` epochs took ``elapsed`` s.

    The first epoch of a run is slow (worker start-up, cuDNN's kernel search, caches),
    so the epoch time is measured on the epochs after it (``first``: seconds at the
    end of the first). After the second epoch the count is lowered to the epochs that
    fit and the schedule rescaled, once; after any epoch the run ends there if one
    more epoch would overrun. Every rank decides on the slowest rank's time, so all
    take the same decision.
    """
    config = run.config
    assert config.max_minutes is not None
    budget = 60.0 * config.max_minutes
    elapsed = _max_across_ranks(elapsed, run.device, run.dist_ctx)
    per_epoch = (elapsed - first) / (done - 1) if done > 1 else elapsed
    epoch = result.history[-1].epoch
    if done == 2 and per_epoch > 0:
        fits = epoch + max(0, int((budget - elapsed) // per_epoch))
        if fits < result.epochs:
            if run.dist_ctx.is_main:
                logger.info(
                    "max_minutes %g: %d epochs do not fit (%.1f s/epoch); training %d",
                    config.max_minutes,
                    result.epochs,
                    per_epoch,
                    fits,
                )
            result.epochs = fits
            _rescale_schedule(run.parts, config, fits)
    if epoch < result.epochs and elapsed + per_epoch > budget:
        if run.dist_ctx.is_main:
            logger.info(
                "max_minutes %g: stopping after epoch %d of %d (%.1f s spent, %.1f s/epoch)",
                config.max_minutes,
                epoch,
                result.epochs,
                elapsed,
                per_epoch,
            )
        result.epochs = epoch


def _rescale_schedule(parts: _Optimisation, config: TrainingConfig, epochs: int) -> None:
    """Halve the LR every quarter of ``epochs`` from now on, unless ``lr_step_epochs`` is set.

    The optimiser's LR is set to what the new schedule gives at the current epoch.
    """
    if config.lr_step_epochs is not None:
        return
    scheduler = parts.scheduler
    scheduler.step_size = max(1, epochs // 4)
    halvings = scheduler.last_epoch // scheduler.step_size
    lrs = [base * scheduler.gamma**halvings for base in scheduler.base_lrs]
    for group, lr in zip(parts.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() and the saved state report


def _run_epoch(run: _Run, epoch: int, progress: Any, task: int) -> EpochRecord:
    """Train one epoch, step the schedule and validate; return the epoch's record."""
    parts = run.parts
    t0 = _clock()
    run.dataset.set_epoch(epoch)
    run.model.train()
    total, count = 0.0, 0
    for low, high in run.loader:
        loss = train_step(
            run.model, parts.optimizer, parts.scaler, parts.loss_fn, low, high, run.amp_dtype
        )
        total += float(loss)
        count += 1
        progress.update(task, advance=1, loss=total / count)
    lr = parts.optimizer.param_groups[0]["lr"]
    parts.scheduler.step()
    train_loss = _mean_across_ranks(total / max(count, 1), run.device, run.dist_ctx)
    val_loss, val_psnr, val_ssim = _validate(
        parts.net, run.data.val_patches, parts.loss_fn, run.device, run.amp_dtype
    )
    return EpochRecord(epoch, train_loss, val_loss, val_psnr, val_ssim, lr, _clock() - t0)


def _clock() -> float:
    """Seconds on a monotonic clock (the wall-clock budget's; tests replace it)."""
    return time.perf_counter()


def _log_epoch(record: EpochRecord, epochs: int) -> None:
    """Log one epoch's figures."""
    logger.info(
        "epoch %d/%d loss %.4f val %.4f PSNR %.2f dB SSIM %.4f (%.1f s)",
        record.epoch,
        epochs,
        record.train_loss,
        record.val_loss,
        record.val_psnr,
        record.val_ssim,
        record.seconds,
    )


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss_fn: nn.Module,
    low: torch.Tensor,
    high: torch.Tensor,
    amp_dtype: torch.dtype | None,
) -> torch.Tensor:
    """One optimiser step on a batch ``(N, 1, Z, Y, X)``; return the (detached) loss.

    The forward pass runs under autocast when ``amp_dtype`` is set; the loss is taken
    in fp32. ``low`` and ``high`` are moved to the model's device.
    """
    device = next(model.parameters()).device
    low = low.to(device, non_blocking=True)
    high = high.to(device, non_blocking=True)
    with _autocast(device, amp_dtype):
        pred = model(low)
    loss = loss_fn(pred.float(), high)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def _setup_distributed(device_pref: str) -> tuple[_Distributed, torch.device]:
    """Join the process group ``torchrun`` describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_pref != "cpu" and torch.cuda.is_available()
    if device_pref.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device_pref!r} asked for but CUDA is not available")
    if "WORLD_SIZE" not in os.environ or not torch.distributed.is_available():
        device = torch.device(
            device_pref if device_pref != "auto" else "cuda" if use_cuda else "cpu"
        )
        return _Distributed(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    ctx = _Distributed(world, torch.distributed.get_rank(), local_rank, owns)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return ctx, torch.device("cuda", local_rank)
    return ctx, torch.device("cpu")


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _validation_patches(
    volumes: Sequence[PreparedVolume], sampler: PatchSampler, per_volume: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    patches = []
    for i, vol in enumerate(volumes):
        rng = np.random.default_rng([seed, _VALIDATION_STREAM, i])
        for _ in range(per_volume):
            low, high = sampler.sample(vol.low, vol.high, rng, vol.stats)
            patches.append((np.ascontiguousarray(low), np.ascontiguousarray(high)))
    return patches


@torch.no_grad()
def _validate(
    net: nn.Module,
    patches: Sequence[tuple[np.ndarray, np.ndarray]],
    loss_fn: nn.Module,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> tuple[float, float, float]:
    """Mean loss, PSNR (dB) and SSIM of ``net`` on the validation patches."""
    net.eval()
    losses, psnrs, ssims = [], [], []
    for low, high in patches:
        with _autocast(device, amp_dtype):
            pred = net(torch.from_numpy(low)[None, None].to(device))
        pred_np = pred.float()[0, 0].cpu().numpy()
        losses.append(float(loss_fn(torch.from_numpy(pred_np), torch.from_numpy(high))))
        psnrs.append(psnr(high, pred_np))
        ssims.append(ssim(high, pred_np))
    net.train()
    return float(np.mean(losses)), float(np.mean(psnrs)), float(np.mean(ssims))


def _mean_across_ranks(value: float, device: torch.device, ctx: _Distributed) -> float:
    return _across_ranks(value, device, ctx, "sum") / max(ctx.world_size, 1)


def _max_across_ranks(value: float, device: torch.device, ctx: _Distributed) -> float:
    return _across_ranks(value, device, ctx, "max")


def _across_ranks(value: float, device: torch.device, ctx: _Distributed, op: str) -> float:
    """``value`` summed or maximised over the ranks (itself without torchrun)."""
    if not ctx.enabled or ctx.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    reduce = torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM
    torch.distributed.all_reduce(t, op=reduce)
    return float(t.item())


def _save_epoch(result: TrainingResult, run: _Run, improved: bool) -> None:
    """Write ``last.pt`` (and ``best.pt`` if ``improved``) and ``history.json``."""
    parts = run.parts
    record = result.history[-1]
    metadata = {
        **run.metadata_base,
        "epoch": record.epoch,
        "scheduled_epochs": result.epochs,
        "metrics": asdict(record),
        "best_epoch": result.best_epoch,
        "best_psnr": result.best_psnr,
    }
    state = {
        "epoch": record.epoch,
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "history": [asdict(r) for r in result.history],
        "best_epoch": result.best_epoch,
        "best_psnr": result.best_psnr,
    }
    normalizer = run.data.normalizer
    save_checkpoint(result.last_checkpoint, parts.net, normalizer, metadata, training_state=state)
    if improved:
        save_checkpoint(result.best_checkpoint, parts.net, normalizer, metadata)
    history = {
        "raw_psnr": result.raw_psnr,
        "raw_ssim": result.raw_ssim,
        "max_minutes": run.config.max_minutes,
        "planned_epochs": result.planned_epochs,
        "scheduled_epochs": result.epochs,
        "epochs": [asdict(r) for r in result.history],
    }
    (result.output_dir / "history.json").write_text(json.dumps(history, indent=1))


def _restore(result: TrainingResult, parts: _Optimisation, device: torch.device) -> int:
    """Load ``last.pt`` into the training objects; return the next epoch."""
    model_config = parts.model_config
    path = result.last_checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: no {path.name} in {path.parent}")
    loaded = load_checkpoint(path, map_location=device)
    if loaded.model_config != model_config:
        raise ValueError(
            f"cannot resume from {path}: it holds a network {loaded.model_config} but the "
            f"config asks for {model_config}"
        )
    state = loaded.training_state
    if not state:
        raise ValueError(f"cannot resume from {path}: it holds no training state")
    parts.net.load_state_dict(loaded.model.state_dict())
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    parts.scaler.load_state_dict(state["scaler"])
    result.history = [EpochRecord(**r) for r in state["history"]]
    result.best_epoch = int(state["best_epoch"])
    result.best_psnr = float(state["best_psnr"])
    logger.info("resuming from %s after epoch %d", path, state["epoch"])
    return int(state["epoch"]) + 1


def plot_history(
    history: Sequence[EpochRecord], path: str | Path, *, raw_psnr: float | None = None
) -> Path:
    """Draw training/validation loss and validation PSNR per epoch into a PNG.

    Uses matplotlib's Agg canvas directly, so it never touches the pyplot backend of
    a GUI that may be running.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_psnr = fig.subplots(1, 2)
    epochs = [r.epoch for r in history]
    ax_loss.plot(epochs, [r.train_loss for r in history], label="training")
    ax_loss.plot(epochs, [r.val_loss for r in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss (normalised)", title="Loss")
    if history and min(min(r.train_loss, r.val_loss) for r in history) > 0:
        ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_psnr.plot(epochs, [r.val_psnr for r in history], color="C2", label="RCAN")
    if raw_psnr is not None and math.isfinite(raw_psnr):
        ax_psnr.axhline(raw_psnr, color="0.5", linestyle="--", label="raw input")
    ax_psnr.set(xlabel="epoch", ylabel="PSNR (dB)", title="Validation PSNR")
    ax_psnr.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


class _NoProgress:
    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(show: bool, console: Console | None) -> Any:
    if not show:
        return _NoProgress()
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  PSNR {task.fields[psnr]:.2f} dB"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )
