"""Restoration quality against classical baselines on the paper's protocols (issue 12).

Protocols, all on simulated data (the simulator's physics, without Micro-Manager):

1. ``isim``: iSIM denoising at the paper's intensities, 4.2 → 457 W/cm² (0.3 → 33 mW
   at 488 nm), for two sample types: mitochondria and an ER-like network. The test
   volumes come from new samples (seed 8), the baselines are tuned on other samples
   (seed 9), and the networks trained here on yet others (seed 7, the bundled
   pairs config's positions); the truth is the 457 W/cm² volume, as in the paper.
2. ``phantoms``: the paper's spherical-phantom deblurring at 2×, 3×, 4× the iSIM PSF,
   noise-free inputs (Supplementary Table 4).
3. ``snr``: an input-SNR sweep (Fig. 1c): mitochondria and ER imaged at the
   intensities that give a median foreground input SNR of 1 to 10, restored PSNR/SSIM
   against the measured input SNR.

Methods: raw input, the Gaussian filter tuned per axis, Richardson–Lucy with the known
PSF tuned in iterations (and in re-blurring to the truth's PSF), the bundled RCAN, and
with ``--train-budget-s N``: an RCAN at the paper's configuration (5 groups × 3 blocks
× 32 channels) and one at the bundled recipe's (2×2×16), trained here on the same data
for the same wall-clock budget with :func:`rcanlive.training.train`; CARE (CAREamics)
when it is importable (otherwise its row says why it was skipped).

Also reported: the input SNR the simulator gives at 4.2, 360 and 457 W/cm² per sample,
and in protocol 1 the lateral and axial resolution (decorrelation analysis with the
paper's modification, :class:`rcanlive.evaluation.methods.ResolutionSpec`) of the
truth, the input and every restoration, mean over the test volumes.
Metrics: :func:`rcanlive.analysis.evaluation.evaluate` under the paper's convention
(printed with every table). Writes ``OUT.json`` and ``OUT.png``.

    python benchmarks/bench_quality.py --quick
    python benchmarks/bench_quality.py --protocols isim --train-budget-s 600
    python benchmarks/bench_quality.py --networks runs/models   # from train_models.py
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rcanlive.analysis.metrics import MetricConvention
from rcanlive.evaluation import (
    CareMethod,
    CheckpointMethod,
    EvalPair,
    GaussianMethod,
    Method,
    MethodTable,
    RawInput,
    RichardsonLucyMethod,
    care_unavailable,
    run_methods,
)
from rcanlive.evaluation.methods import ResolutionSpec
from rcanlive.evaluation.report import method_markdown
from rcanlive.evaluation.simulated import (
    PAPER_HIGH_W_CM2,
    PAPER_LIVE_W_CM2,
    PAPER_LOW_W_CM2,
    IsimSpec,
    expected_volume,
    expose,
    input_snr,
    intensity_for_snr,
    isim_pairs,
    make_world,
    simulator_psf,
)
from rcanlive.model import bundled_model_path

SAMPLES = ("mitochondria", "er")
#: Stage positions of the bundled pairs config (configs/bundled/pairs.toml).
TRAIN_POSITIONS = [(0.0, 0.0), (-8.0, 6.0), (7.0, -5.0), (6.0, 8.0), (-7.0, -7.0), (0.0, 9.0)]
TEST_POSITIONS = [(2.0, -3.0), (-6.0, 4.0), (8.0, 7.0), (-4.0, -8.0)]
TUNE_POSITIONS = [(0.0, 0.0), (5.0, -6.0)]
SEEDS = {"train": 7, "test": 8, "tune": 9}
#: The paper's targets for phantom deblurring (RCAN, Supplementary Table 4): SSIM, PSNR.
PAPER_PHANTOM = {2: (0.98, 38.0), 3: (0.93, 32.0)}
#: Network configurations trained with a budget: label → (groups, blocks, channels).
NETWORKS = {"RCAN 5×3×32 (paper)": (5, 3, 32), "RCAN 2×2×16 (bundled recipe)": (2, 2, 16)}


@dataclass
class Settings:
    """Sizes of a run (``--quick`` shrinks them)."""

    roi_px: int = 256
    planes: int = 16
    test_positions: int = 4
    tune_positions: int = 2
    phantom_shape: tuple[int, int, int] = (64, 128, 128)
    phantom_test: int = 4
    phantom_train: int = 8
    blurs: tuple[int, ...] = (2, 3, 4)
    snr_levels: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0)
    train_budget_s: float = 0.0
    train_patch: tuple[int, int, int] = (16, 64, 64)
    device: str = "auto"
    networks_dir: Path | None = None
    bundled: Path | None = None
    sweep_samples: tuple[str, ...] = ("mitochondria", "er")
    convention: MetricConvention = field(default_factory=MetricConvention)
    runs_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "rcanlive-quality")

    @classmethod
    def quick(cls) -> Settings:
        """A small run: 128-pixel ROIs, 2 test volumes, 4 SNR levels."""
        return cls(
            roi_px=128,
            test_positions=2,
            tune_positions=1,
            phantom_shape=(32, 96, 96),
            phantom_test=2,
            phantom_train=4,
            snr_levels=(1.0, 2.0, 4.0, 10.0),
        )


@functools.lru_cache(maxsize=8)
def sample_world(kind: str, seed: int) -> Any:
    """The simulated sample ``kind`` with ``seed`` (built once: a 640² sample takes seconds)."""
    return make_world(kind, seed)


# -- training networks on a wall-clock budget ----------------------------------------


def _seconds_per_step(config: Any) -> tuple[float, str]:
    """Measured s/step of ``config`` and the precision the trainer will use."""
    import torch

    from rcanlive.training import choose_precision, train_step

    device = torch.device("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")
    dtype, timings = choose_precision(config, device)
    name = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    if timings:
        return min(t.seconds_per_step for t in timings), name
    from rcanlive.model import RCAN3D, ModelConfig

    net = RCAN3D.from_config(ModelConfig(**config.model.model_dump())).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    low = torch.rand(config.batch_size, 1, *config.patch_shape, device=device)
    t0 = 0.0
    for i in range(4):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        train_step(net, opt, scaler, torch.nn.L1Loss(), low, low, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / 3, name


def train_network(
    label: str, pairs: list[EvalPair], arch: tuple[int, int, int], settings: Settings, tag: str
) -> CheckpointMethod:
    """Train ``arch`` on ``pairs`` for about ``settings.train_budget_s`` seconds."""
    from rcanlive.config.training import NetworkConfig, TrainingConfig, TrainingDataConfig
    from rcanlive.training import pairs_from_arrays, train

    groups, blocks, channels = arch
    out = settings.runs_dir / f"{tag}-{groups}x{blocks}x{channels}"
    base = TrainingConfig(
        data=TrainingDataConfig(pairs=Path("in-memory"), validation_count=1, validation_patches=2),
        model=NetworkConfig(
            n_groups=groups, n_blocks=blocks, channels=channels, reduction=min(8, channels // 4)
        ),
        patch_shape=settings.train_patch,
        batch_size=2,
        learning_rate=5e-4,
        device=settings.device,
        output_dir=out,
        progress=False,
    )
    per_step, precision = _seconds_per_step(base)
    # 80 % of the budget for the steps, the rest for set-up, validation and saving; the
    # steps are timed before training, so on a shared machine the real time drifts:
    # the table reports the time spent, not the budget
    steps = max(1, int(0.8 * settings.train_budget_s / per_step))
    epochs = min(8, steps)
    config = base.model_copy(update={"epochs": epochs, "steps_per_epoch": steps // epochs})
    t0 = time.perf_counter()
    train(config, pairs=pairs_from_arrays([p.low for p in pairs], [p.high for p in pairs]))
    spent = time.perf_counter() - t0
    info = {
        "training": f"{spent:.0f} s, {epochs * (steps // epochs)} steps ({precision}, "
        f"{per_step:.2f} s/step timed before)",
        "steps": epochs * (steps // epochs),
        "train_seconds": spent,
        "budget_seconds": settings.train_budget_s,
    }
    return CheckpointMethod(out / "best.pt", label, device=settings.device, info=info)


#: train_models.py stage → row label, per protocol tag
TRAINED_LABELS = {
    "isim": {
        "isim-rcan": "RCAN 5×3×32 (paper)",
        "isim-care": "CARE 3D U-Net (rcanlive)",
        "isim-small": "RCAN 2×2×16 (bundled recipe)",
    },
    "phantom2x": {"phantom2": "RCAN 5×3×32 (paper)"},
    "phantom3x": {"phantom3": "RCAN 5×3×32 (paper)"},
}


def networks_from(directory: Path, tag: str) -> list[Method]:
    """Networks trained by ``train_models.py`` (``DIR/<stage>.pt``) for protocol ``tag``."""
    records = {}
    history = directory / "histories.json"
    if history.exists():
        records = {r["stage"]: r for r in json.loads(history.read_text())}
    methods: list[Method] = []
    for stage, label in TRAINED_LABELS.get(tag, {}).items():
        path = directory / f"{stage}.pt"
        if not path.exists():
            continue
        r = records.get(stage, {})
        epochs = len(r.get("history", []))
        info = {
            "training": f"{r.get('train_seconds', math.nan):.0f} s, {epochs} epochs "
            f"× {r.get('steps_per_epoch', 50)} steps, batch {r.get('batch', '?')} "
            f"{tuple(r.get('patch', ()))} on {r.get('device', '?')}",
            "train_seconds": r.get("train_seconds"),
        }
        methods.append(CheckpointMethod(path, label, info=info))
    return methods


def trained_networks(pairs: list[EvalPair], settings: Settings, tag: str) -> list[Method]:
    """The budget networks (none without a budget), those of ``--networks``, and CARE."""
    methods: list[Method] = []
    if settings.networks_dir is not None:
        methods += networks_from(settings.networks_dir, tag)
    if settings.train_budget_s > 0:
        for label, arch in NETWORKS.items():
            print(f"  training {label} on {len(pairs)} pairs ({settings.train_budget_s:.0f} s)")
            methods.append(train_network(label, pairs, arch, settings, tag))
    methods.append(CareMethod())
    return methods


# -- protocol 1: iSIM denoising ------------------------------------------------------


def _spec(settings: Settings, low: float = PAPER_LOW_W_CM2) -> IsimSpec:
    return IsimSpec(planes=settings.planes, roi_px=settings.roi_px, low_w_cm2=low)


def snr_table(settings: Settings) -> list[dict[str, Any]]:
    """Median foreground input SNR per sample at 4.2, 360 and 457 W/cm² (test positions)."""
    rows = []
    spec = _spec(settings)
    for kind in SAMPLES:
        world = sample_world(kind, SEEDS["test"])
        row: dict[str, Any] = {"sample": kind}
        for label, w_cm2 in (
            ("4.2", PAPER_LOW_W_CM2),
            ("360", PAPER_LIVE_W_CM2),
            ("457", PAPER_HIGH_W_CM2),
        ):
            snrs = [
                input_snr(world, expose(world, expected_volume(world, pos, spec, w_cm2)))
                for pos in TEST_POSITIONS[: settings.test_positions]
            ]
            row[label] = float(np.mean(snrs))
        row["w_cm2_for_snr3"] = intensity_for_snr(world, TEST_POSITIONS[0], spec, 3.0)
        rows.append(row)
    return rows


def isim_sets(settings: Settings) -> dict[str, dict[str, list[EvalPair]]]:
    """Per sample: ``train``, ``tune`` and ``test`` pairs, each from its own sample seed."""
    spec = _spec(settings)
    out: dict[str, dict[str, list[EvalPair]]] = {}
    for kind in SAMPLES:
        positions = {
            "train": TRAIN_POSITIONS,
            "tune": TUNE_POSITIONS[: settings.tune_positions],
            "test": TEST_POSITIONS[: settings.test_positions],
        }
        out[kind] = {}
        for role, where in positions.items():
            if role == "train" and settings.train_budget_s <= 0:
                out[kind][role] = []
                continue
            world = sample_world(kind, SEEDS[role])
            out[kind][role] = isim_pairs(world, where, spec, group=f"{kind}-{role}")
    return out


def baselines(
    psf: np.ndarray, background: float, target: np.ndarray | None, settings: Settings
) -> list[Method]:
    """Raw, tuned Gaussian, tuned Richardson–Lucy and the bundled RCAN (or ``--bundled``)."""
    model = settings.bundled or bundled_model_path()
    methods: list[Method] = [
        RawInput(),
        GaussianMethod(),
        RichardsonLucyMethod(psf, background, target),
    ]
    if model is not None:
        methods.append(CheckpointMethod(model, "bundled RCAN (2×2×16)"))
    return methods


def run_isim(settings: Settings) -> tuple[list[MethodTable], dict[str, list[EvalPair]]]:
    """Protocol 1: one table per sample type, with resolution columns."""
    sets = isim_sets(settings)
    psf = simulator_psf(0.25, 0.0555)
    # the simulated iSIM: 0.25 × 0.0555 × 0.0555 µm voxels, NA 1.42, emission 525 nm
    resolution = ResolutionSpec(pixel_size_nm=55.5, z_step_nm=250.0, na=1.42, emission_nm=525.0)
    train_pairs = [p for kind in SAMPLES for p in sets[kind]["train"]]
    networks = trained_networks(train_pairs, settings, "isim")
    tables = []
    for kind in SAMPLES:
        print(f"protocol 1 (iSIM 4.2 → 457 W/cm²): {kind}")
        methods = baselines(psf, 100.0, psf, settings) + [_fresh(m) for m in networks]
        title = f"iSIM denoising, {kind}, 4.2 → 457 W/cm²"
        test, tune = sets[kind]["test"], sets[kind]["tune"]
        tables.append(
            run_methods(
                methods,
                test,
                tune,
                title=title,
                resolution=resolution,
                convention=settings.convention,
            )
        )
    return tables, {k: sets[k]["test"] for k in SAMPLES}


def _fresh(method: Method) -> Method:
    """A new, unprepared copy of a checkpoint or CARE method (run_methods closes them)."""
    if isinstance(method, CheckpointMethod):
        return CheckpointMethod(
            method.model,
            method.name,
            method.backend,
            method.precision,
            method.device,
            dict(method.info),
        )
    if isinstance(method, CareMethod):
        return CareMethod(method.model, method.name, dict(method.info))
    return method


# -- protocol 2: spherical phantoms ----------------------------------------------------


def phantom_pairs(blur: int, n: int, seed: int, settings: Settings) -> list[EvalPair]:
    """``n`` noise-free phantom pairs blurred ``blur``× the iSIM PSF (one group each)."""
    from rcanlive.simulation.phantoms import PhantomSpec, make_phantom_pair

    spec = PhantomSpec(shape=settings.phantom_shape, blur=blur, noise=False)
    pairs = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n)):
        raw, gt = make_phantom_pair(spec, child)
        name = f"phantom{blur}x-s{seed}-{i}"
        pairs.append(EvalPair(name, raw, gt, name))
    return pairs


def run_phantoms(settings: Settings) -> list[MethodTable]:
    """Protocol 2: one table per blur factor."""
    from rcanlive.simulation.phantoms import PhantomSpec, blur_kernel

    tables = []
    for blur in settings.blurs:
        print(f"protocol 2 (phantoms): {blur}× the iSIM PSF, noise-free")
        spec = PhantomSpec(shape=settings.phantom_shape, blur=blur, noise=False)
        test = phantom_pairs(blur, settings.phantom_test, 100 + blur, settings)
        tune = phantom_pairs(blur, 1, 200 + blur, settings)
        methods = baselines(blur_kernel(spec, blur), 0.0, blur_kernel(spec, 1), settings)
        train = (
            phantom_pairs(blur, settings.phantom_train, 300 + blur, settings)
            if settings.train_budget_s > 0
            else []
        )
        methods += trained_networks(train, settings, f"phantom{blur}x")
        title = f"phantom deblurring, {blur}× the iSIM PSF, noise-free"
        tables.append(run_methods(methods, test, tune, title=title, convention=settings.convention))
    return tables


# -- protocol 3: input-SNR sweep -------------------------------------------------------


def run_snr_sweep(settings: Settings, networks: list[Method]) -> list[dict[str, Any]]:
    """Protocol 3: each sweep sample at intensities giving input SNR 1–10; truth 457 W/cm²."""
    psf = simulator_psf(0.25, 0.0555)
    rows = []
    for kind in settings.sweep_samples:
        test_world, tune_world = (
            sample_world(kind, SEEDS["test"]),
            sample_world(kind, SEEDS["tune"]),
        )
        for target in settings.snr_levels:
            w_cm2 = intensity_for_snr(tune_world, TUNE_POSITIONS[0], _spec(settings), target)
            spec = _spec(settings, low=w_cm2)
            test_at = TEST_POSITIONS[: settings.test_positions]
            test = isim_pairs(test_world, test_at, spec, group="test")
            tune_at = TUNE_POSITIONS[: settings.tune_positions]
            tune = isim_pairs(tune_world, tune_at, spec, group="tune")
            measured = float(np.mean([input_snr(test_world, p.low) for p in test]))
            print(
                f"protocol 3 (SNR sweep): {kind}, target {target:g}, {w_cm2:.1f} W/cm², "
                f"measured {measured:.2f}"
            )
            methods = baselines(psf, 100.0, psf, settings) + [_fresh(m) for m in networks]
            table = run_methods(
                methods,
                test,
                tune,
                title=f"{kind}, input SNR {measured:.2f}",
                convention=settings.convention,
            )
            rows.append(
                {
                    "sample": kind,
                    "target_snr": target,
                    "w_cm2": w_cm2,
                    "input_snr": measured,
                    "table": table,
                }
            )
    return rows


# -- goals, report, figure --------------------------------------------------------------


def _mean(table: MethodTable, name: str, metric: str) -> float:
    row = next((r for r in table.results if r.name == name), None)
    if row is None or row.summary is None:
        return math.nan
    return float(getattr(row.summary, metric).mean)


#: row labels of networks (the rest are classical methods)
NETWORK_PREFIXES = ("bundled RCAN", "RCAN", "CARE")


def _networks(table: MethodTable) -> list[str]:
    return [r.name for r in table.results if r.name.startswith(NETWORK_PREFIXES) and r.summary]


#: the methods a network must beat
CLASSICAL = ("raw input", "tuned Gaussian", "tuned Richardson–Lucy")


def _beats_classical(table: MethodTable, net: str) -> bool:
    """Whether ``net`` beats every classical method in mean PSNR and SSIM."""
    return all(
        _mean(table, net, m) > _mean(table, c, m) for c in CLASSICAL for m in ("psnr", "ssim")
    )


def goals(
    isim: list[MethodTable],
    phantoms: list[MethodTable],
    blurs: tuple[int, ...],
    sweep: list[dict[str, Any]],
) -> list[str]:
    """The issue's goals, met or not, one line each."""
    lines = []
    for table in [*isim, *phantoms]:
        for net in _networks(table):
            beats = _beats_classical(table, net)
            lines.append(
                f"{'met' if beats else 'NOT met'}: {net} beats every classical baseline "
                f"in PSNR and SSIM — {table.title}"
            )
    for blur, table in zip(blurs if phantoms else (), phantoms, strict=True):
        if blur not in PAPER_PHANTOM:
            continue
        want_ssim, want_psnr = PAPER_PHANTOM[blur]
        for net in _networks(table) or ["(no network)"]:
            got_ssim, got_psnr = _mean(table, net, "ssim"), _mean(table, net, "psnr")
            ok = got_ssim >= want_ssim and got_psnr >= want_psnr
            lines.append(
                f"{'met' if ok else 'NOT met'}: {blur}× phantoms SSIM {want_ssim} / PSNR "
                f"{want_psnr:g} dB — {net}: {got_ssim:.3f} / {got_psnr:.2f} dB"
            )
    for row in sweep:
        table = row["table"]
        for net in _networks(table):
            beats = _beats_classical(table, net)
            lines.append(
                f"{'met' if beats else 'NOT met'}: {net} beats every classical baseline "
                f"in PSNR and SSIM — input SNR {row['input_snr']:.2f}"
            )
    lines += _care_goal(isim)
    return lines


def _care_goal(isim: list[MethodTable]) -> list[str]:
    """RCAN (paper's configuration) against CARE, trained alike, per iSIM table."""
    lines = []
    for table in isim:
        rcan, care = (
            "RCAN 5×3×32 (paper)",
            next((n for n in _networks(table) if n.startswith("CARE")), None),
        )
        if care is None or math.isnan(_mean(table, rcan, "psnr")):
            continue
        ok = all(_mean(table, rcan, m) >= _mean(table, care, m) for m in ("psnr", "ssim"))
        lines.append(
            f"{'met' if ok else 'NOT met'}: RCAN ≥ CARE (same data, same budget) — "
            f"{table.title}: {_mean(table, rcan, 'psnr'):.2f} / {_mean(table, rcan, 'ssim'):.3f} "
            f"vs {_mean(table, care, 'psnr'):.2f} / {_mean(table, care, 'ssim'):.3f}"
        )
    if not lines:
        care = care_unavailable()
        lines.append(
            "NOT measured: RCAN ≥ CARE ("
            + (f"CAREamics skipped: {care}; " if care else "")
            + "no CARE network trained: --networks DIR from train_models.py)"
        )
    return lines


def plot(
    path: Path,
    isim: list[MethodTable],
    phantoms: list[MethodTable],
    sweep: list[dict[str, Any]],
    blurs: tuple[int, ...],
) -> None:
    """PSNR per method per protocol, and PSNR/SSIM against input SNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 5))
    for ax, tables, xs, xlabel in (
        (axes[0], isim, [t.title.split(", ")[1] for t in isim], "sample (4.2 → 457 W/cm²)"),
        (axes[1], phantoms, [f"{b}×" for b in blurs], "phantom blur (× iSIM PSF)"),
    ):
        if not tables:
            ax.set_visible(False)
            continue
        names = [r.name for r in tables[0].results if r.summary is not None]
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            ax.bar(
                np.arange(len(tables)) + i * width,
                [_mean(t, name, "psnr") for t in tables],
                width,
                label=name,
            )
        ax.set_xticks(np.arange(len(tables)) + 0.4 - width / 2, xs)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("PSNR (dB)")
        top = max((_mean(t, n, "psnr") for t in tables for n in names), default=1.0)
        ax.set_ylim(0, 1.35 * top)  # room for the legend above the bars
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    for ax, metric in ((axes[2], "psnr"), (axes[3], "ssim")):
        if not sweep:
            ax.set_visible(False)
            continue
        names = [r.name for r in sweep[0]["table"].results if r.summary is not None]
        colours = {n: f"C{i}" for i, n in enumerate(names)}
        for kind, style in zip(_sweep_samples(sweep), ("o-", "s--", "^:"), strict=False):
            rows = [r for r in sweep if r["sample"] == kind]
            for name in names:
                ax.plot(
                    [r["input_snr"] for r in rows],
                    [_mean(r["table"], name, metric) for r in rows],
                    style,
                    color=colours[name],
                    label=f"{name} ({kind})",
                )
        ax.axvline(3.0, color="grey", ls=":", label="paper's breakdown (SNR ≈ 3)")
        ax.set_xscale("log")
        ax.set_xlabel("input SNR (median over foreground)")
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.legend(fontsize=5, ncol=2)
    convention = (isim or phantoms or [s["table"] for s in sweep])[0].convention.describe()
    fig.suptitle(f"Restoration quality (issue 12); {convention}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sweep_samples(sweep: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["sample"] for r in sweep))


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    import torch

    from rcanlive.cpu import cpu_model, has_native_bf16

    return {
        "cpu": cpu_model(),
        "native_bf16": has_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen protocols, print the tables, write OUT.json and OUT.png."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small run (minutes on 2 cores)")
    parser.add_argument(
        "--protocols", default="isim,phantoms,snr", help="comma separated: isim, phantoms, snr"
    )
    parser.add_argument(
        "--train-budget-s", type=float, default=0.0, help="train the networks for this long each"
    )
    parser.add_argument("--device", default="auto", help="training device (auto, cpu, cuda)")
    parser.add_argument(
        "--networks", type=Path, help="networks trained by train_models.py (DIR/<stage>.pt)"
    )
    parser.add_argument("--bundled", type=Path, help="evaluate this model as the bundled one")
    parser.add_argument(
        "--sweep-samples", default="mitochondria,er", help="samples of the SNR sweep"
    )
    parser.add_argument(
        "--scaling",
        choices=("percentile", "least_squares"),
        default="percentile",
        help="how a prediction is put on the truth's scale: percentile (the paper's: each "
        "volume to its own 2/99.9 percentiles) or least_squares (a·pred + b fitted)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "quality", help="OUT.json, OUT.png"
    )
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    settings.train_budget_s, settings.device = args.train_budget_s, args.device
    settings.networks_dir, settings.bundled = args.networks, args.bundled
    settings.convention = MetricConvention(scaling=args.scaling)
    settings.sweep_samples = tuple(k.strip() for k in args.sweep_samples.split(",") if k.strip())
    wanted = {p.strip() for p in args.protocols.split(",") if p.strip()}
    t0 = time.perf_counter()
    snr_rows = snr_table(settings)
    isim, _ = run_isim(settings) if "isim" in wanted else ([], {})
    phantoms = run_phantoms(settings) if "phantoms" in wanted else []
    nets = [_fresh(m) for m in _network_methods(isim)]
    sweep = run_snr_sweep(settings, nets) if "snr" in wanted else []
    report = _report(settings, snr_rows, isim, phantoms, sweep, time.perf_counter() - t0)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(args.out.with_suffix(".png"), isim, phantoms, sweep, settings.blurs)
    payload = {
        "command": "python benchmarks/bench_quality.py "
        + " ".join(argv or __import__("sys").argv[1:]),
        "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()},
        "input_snr": snr_rows,
        "isim": [t.as_dict() for t in isim],
        "phantoms": [t.as_dict() for t in phantoms],
        "snr_sweep": [
            {**{k: v for k, v in r.items() if k != "table"}, "table": r["table"].as_dict()}
            for r in sweep
        ],
        "goals": goals(isim, phantoms, settings.blurs, sweep),
        "seconds": time.perf_counter() - t0,
    }
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")
    return 0


def _network_methods(isim: list[MethodTable]) -> list[Method]:
    """The budget-trained iSIM networks (from protocol 1's first table), for the sweep."""
    if not isim:
        return []
    out: list[Method] = []
    for row in isim[0].results:
        model = row.details.get("model")
        if row.summary is not None and row.name.startswith(("RCAN", "CARE")) and model:
            out.append(
                CheckpointMethod(
                    Path(model), row.name, info={"training": row.details.get("training", "")}
                )
            )
    return out


def _report(
    settings: Settings,
    snr_rows: list[dict[str, Any]],
    isim: list[MethodTable],
    phantoms: list[MethodTable],
    sweep: list[dict[str, Any]],
    seconds: float,
) -> str:
    """The Markdown section: SNR table, one table per protocol, the sweep, the goals."""
    lines = [
        "### Input SNR the simulator gives (median over the foreground, mean of the test fields)",
        "",
    ]
    lines += [
        "| sample | 4.2 W/cm² | 360 W/cm² | 457 W/cm² | W/cm² for SNR 3 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['sample']} | {r['4.2']:.2f} | {r['360']:.2f} | {r['457']:.2f} "
        f"| {r['w_cm2_for_snr3']:.1f} |"
        for r in snr_rows
    ]
    for table in [*isim, *phantoms]:
        lines += ["", f"### {table.title}", "", method_markdown(table)]
    if sweep:
        names = [r.name for r in sweep[0]["table"].results if r.summary is not None]
        lines += ["", "### Input-SNR sweep (PSNR dB / SSIM)", ""]
        lines += [
            "| sample | input SNR | W/cm² | " + " | ".join(names) + " |",
            "|---|---|---|" + "---|" * len(names),
        ]
        for r in sweep:
            cells = [
                f"{_mean(r['table'], n, 'psnr'):.2f} / {_mean(r['table'], n, 'ssim'):.3f}"
                for n in names
            ]
            lines.append(
                f"| {r['sample']} | {r['input_snr']:.2f} | {r['w_cm2']:.1f} | "
                + " | ".join(cells)
                + " |"
            )
    lines += ["", "### Goals", ""] + [
        f"- {g}" for g in goals(isim, phantoms, settings.blurs, sweep)
    ]
    lines += ["", f"Total time {seconds / 60:.1f} min."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
