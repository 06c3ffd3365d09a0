"""SNR-guided illumination: the least light that keeps restoration reliable.

The paper's restorations break down once the input SNR drops below about 3 (Fig. 1c);
above that, more light only bleaches the sample faster. The
:class:`IlluminationController` closes the loop: after each volume it sets the next
volume's power from that volume's measured SNR (by default the 10th percentile of the
foreground's per-pixel SNR, where artifacts appear first).

Control law
-----------
At a fixed exposure the signal S (photoelectrons) is proportional to the power, and
the paper's SNR is ``S/√(S + Nr²)``: in the shot-noise limit SNR ∝ √power. Inverting the
formula gives the signal behind a measured SNR,

    S(snr) = (snr² + snr·√(snr² + 4·Nr²)) / 2        (= snr² when Nr = 0)

so the power that brings the volume to the aim is ``P · S(aim) / S(snr)``: the
shot-noise model ``P · (aim/snr)²`` corrected for read noise. Because the SNR is a
monotonic function of S pixel by pixel, a percentile of the SNR is the SNR of the same
percentile of S, so the law applies to the 10th percentile as to the median.

Stability
---------
* The controller anticipates the sample's trend: the change of its signal per mW
  between the last decisions (bleaching, expression, dimming), smoothed, is assumed
  to hold for one more decision, beyond a dead band that keeps measurement noise
  from reading as a trend. Without it every decision is one volume late.
* The aim is ``target_snr·(1 + headroom)`` (10 % above the target by default): the
  headroom absorbs what the trend does not predict (a sudden change; SNR ∝ S^0.54 near
  the aim, so the margin left at the band's lower edge, 1.10 × 0.97, covers an
  unforeseen loss of about a seventh of the signal) and the noise of the measurement.
  In ``benchmarks/bench_adaptive.py`` the trend let the aim come down from 15 % to
  10 % with every volume still at or above the target.
* The power is held while the SNR is within ``tolerance`` (±3 %) of the aim; outside,
  each decision corrects fully (gain 1). The band is wider than the measurement's
  noise (the 10th percentile of a few thousand foreground pixels moves by about 1 %
  from volume to volume on a constant sample, in steps of the photon counts'
  quantisation) so the power does not chatter, and narrow enough that a sample
  drifting slowly is followed by small steps (a 3 % SNR error is a 6 % power step)
  instead of a saw-tooth of large ones.
* One decision moves the power by at most ``max_step_up`` (×1.5) or ``max_step_down``
  (×0.8), within ``[min_mw, max_mw]`` — themselves inside the rig's calibrated range.
* A measurement that failed, or is not a number a camera can produce (NaN, ±inf, ≤ 0,
  above :data:`SNR_PLAUSIBLE_MAX`), holds the last power.
* On the simulated rig the model's slope d ln SNR / d ln P at the aim (0.535) matches
  the measured one (0.56 between 40 and 80 W/cm²), so a decision lands within the
  band in one step when the step limits allow it (``benchmarks/bench_adaptive.py``).

How the run keeps hardware sequencing
-------------------------------------
Two ways were open (both checked on the simulated rig, pymmcore-plus 0.18):

(a) one ``MDASequence`` (one ``core.mda.run``) per volume, the power set in between;
(b) one queue-driven MDA, ``core.mda.run(iterator)``, fed by the controller.

pymmcore-plus runs an *iterator* as given and skips the engine's ``event_iterator``,
so the documented queue form (``iter(queue.get, None)`` of plain ``MDAEvent``s) runs
every plane as its own software-timed snap: 16 events for two 8-plane volumes, no z
or AOTF sequence. A non-iterator iterable does go through the engine's event
combiner, but the combiner yields a volume's sequence only when the next volume's
first event arrives, i.e. before the volume it should be decided from was taken.

We use (b) with the volumes pre-combined: the run's
:class:`~rcanlive.acquisition.illumination_loop.IlluminationRecorder` builds each
volume's events with its power in the event properties (the AOTF value of the
channel's line), turns them into one hardware sequence with pymmcore-plus's public
``iter_sequenced_events`` (piezo z + AOTF sequences stepped by the camera, as in a
fixed run), and yields it once the previous volume's decision has arrived on its
queue. Against (a) this keeps one MDA for the whole run: one runner clock
(``interval_s`` and volume times as in a fixed run), one relay thread, the engine's
set-up and laser-safe teardown once, and cancel, pause and Ctrl-C working at any
moment exactly as in a fixed run — with (a) a ``core.mda.cancel()`` that arrives
between two per-volume runs (from the dashboard, say) would be lost. The power only
changes between two sequences, never inside a volume.

This module holds the control law only (no hardware, no threads); the loop that
measures, records and feeds the MDA is :mod:`~rcanlive.acquisition.illumination_loop`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..microscope.illumination import intensity_to_power_mw, power_to_intensity_w_cm2

if TYPE_CHECKING:
    from ..config.experiment import AdaptiveIllumination
    from ..config.rig import RigConfig

#: the sample's signal per unit power may change by at most this factor per decision in
#: the trend the controller anticipates (larger jumps are taken as noise or a new field)
TREND_RANGE = (0.7, 1.3)
#: smoothing of the trend (exponential, in log space): the weight of the newest ratio
TREND_GAIN = 1 / 3
#: trends smaller than this (log, ≈3 % per decision) are not anticipated
TREND_DEADBAND = 0.03

#: A 16-bit sCMOS pixel holds at most ~30 000 e⁻ (65 535 counts × 0.46 e⁻/count):
#: SNR ≤ √30 000 ≈ 175. A larger value is a broken measurement, not a bright sample.
SNR_PLAUSIBLE_MAX = 200.0

Statistic = Literal["p10", "median"]


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    """The controller's settings for one channel, resolved against the rig (mW).

    Attributes
    ----------
    target_snr
        The SNR every volume should reach (statistic ``statistic``).
    statistic
        ``"p10"`` (10th percentile of the foreground's per-pixel SNR) or ``"median"``.
    min_mw, max_mw
        Power bounds at the objective, inside the line's calibrated range.
    max_step_up, max_step_down
        Largest factor one decision may apply (> 1 and < 1).
    every
        Decide after every N-th volume; hold in between.
    headroom, tolerance
        Aim ``target_snr·(1 + headroom)``; hold while within ``±tolerance`` of it.
    """

    target_snr: float = 4.0
    statistic: Statistic = "p10"
    min_mw: float = 0.1
    max_mw: float = 100.0
    max_step_up: float = 1.5
    max_step_down: float = 0.8
    every: int = 1
    headroom: float = 0.10
    tolerance: float = 0.03

    def __post_init__(self) -> None:
        if not 0 < self.min_mw < self.max_mw:
            raise ValueError(
                f"power bounds must satisfy 0 < min < max, got {self.min_mw}–{self.max_mw} mW"
            )
        if not (self.max_step_up > 1 and 0 < self.max_step_down < 1):
            raise ValueError(
                f"steps must be max_step_up > 1 and 0 < max_step_down < 1, got "
                f"{self.max_step_up} and {self.max_step_down}"
            )
        if self.target_snr <= 0 or self.every < 1:
            raise ValueError("target_snr must be > 0 and every ≥ 1")

    @property
    def aim(self) -> float:
        """The SNR the controller steers to (above the target by the headroom)."""
        return self.target_snr * (1 + self.headroom)


def resolve_adaptive(
    config: AdaptiveIllumination, rig: RigConfig, line_nm: int, initial_mw: float
) -> AdaptiveSettings:
    """Turn ``[illumination.adaptive]`` into settings for one channel of ``rig``.

    Raises
    ------
    ValueError
        A bound outside the line's calibrated range (or not below the other), or a
        channel power outside the bounds; the message names the setting.
    """
    line = rig.laser(line_nm)
    calibrated = [p for _, p in line.calibration if p > 0]
    top = line.max_power_mw

    def bound(mw: float | None, w_cm2: float | None, name: str, default: float) -> float:
        if mw is None and w_cm2 is None:
            return default
        power = mw if mw is not None else intensity_to_power_mw(rig, w_cm2 or 0.0)
        if power > top:
            given = (
                f"{name}_mw = {mw:g} mW"
                if mw is not None
                else f"{name}_w_cm2 = {w_cm2:g} W/cm² (= {power:.3g} mW)"
            )
            raise ValueError(
                f"{given} exceeds the {line_nm} nm line's calibrated maximum of "
                f"{top:.3g} mW (= {power_to_intensity_w_cm2(rig, top):.0f} W/cm²)"
            )
        return power

    lo = bound(config.min_mw, config.min_w_cm2, "min", calibrated[0])
    hi = bound(config.max_mw, config.max_w_cm2, "max", top)
    if not lo < hi:
        raise ValueError(f"the minimum ({lo:.3g} mW) must be below the maximum ({hi:.3g} mW)")
    if not lo <= initial_mw <= hi:
        raise ValueError(
            f"the channel's power {initial_mw:.3g} mW "
            f"(= {power_to_intensity_w_cm2(rig, initial_mw):.3g} W/cm²), where the run "
            f"starts, is outside the adaptive bounds {lo:.3g}–{hi:.3g} mW "
            f"(= {power_to_intensity_w_cm2(rig, lo):.3g}–{power_to_intensity_w_cm2(rig, hi):.3g}"
            " W/cm²); change the channel's power or the bounds"
        )
    return AdaptiveSettings(
        target_snr=config.target_snr,
        statistic=config.statistic,
        min_mw=lo,
        max_mw=hi,
        max_step_up=config.max_step_up,
        max_step_down=config.max_step_down,
        every=config.every,
        headroom=config.headroom,
        tolerance=config.tolerance,
    )


def signal_for_snr(snr: float, read_noise_e: float) -> float:
    """The signal S (e⁻) whose SNR ``S/√(S + Nr²)`` is ``snr`` (inverse of the formula)."""
    return (snr * snr + snr * math.sqrt(snr * snr + 4 * read_noise_e * read_noise_e)) / 2


def snr_for_signal(signal_e: float, read_noise_e: float) -> float:
    """The paper's SNR, ``S/√(S + Nr²)``, of a signal S (e⁻)."""
    return signal_e / math.sqrt(signal_e + read_noise_e * read_noise_e) if signal_e > 0 else 0.0


def snr_problem(snr: float | None) -> str | None:
    """Why ``snr`` cannot steer the power (None when it can)."""
    if snr is None:
        return "no SNR measurement"
    if not math.isfinite(snr):
        return f"SNR {snr} is not a number"
    if snr <= 0:
        return f"SNR {snr:g}: no signal above the camera offset"
    if snr > SNR_PLAUSIBLE_MAX:
        return f"SNR {snr:.3g} is beyond what the camera can record"
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    """The power for the next volume and why."""

    power_mw: float
    reason: str
    changed: bool


class IlluminationController:
    """Sets each volume's power from the previous volume's SNR (see the module doc).

    Parameters
    ----------
    settings
        Bounds, steps and target.
    initial_mw
        The first volume's power (clipped into the bounds).
    read_noise_e
        The camera's read noise (e⁻), for the SNR formula's inverse.
    """

    def __init__(
        self, settings: AdaptiveSettings, initial_mw: float, read_noise_e: float = 0.0
    ) -> None:
        self.settings = settings
        self.read_noise_e = float(read_noise_e)
        self.power_mw = self._clip(float(initial_mw))
        self._efficiency: float | None = None  # signal per mW of the last decision
        self._log_trend = 0.0  # its change per decision, smoothed (log)
        self.trend = 1.0  # the change expected by the next decision

    def _expected_signal(self, snr: float, base: float) -> float:
        """The next volume's signal at power ``base``: this volume's, times the trend.

        The sample's signal per mW changes between decisions (bleaching, expression,
        dimming); the ratio of the last two, smoothed in log space, is assumed to hold
        for one more decision, so that the controller is not always one volume late.
        """
        signal = signal_for_snr(snr, self.read_noise_e)
        efficiency = signal / base
        if self._efficiency is not None:
            ratio = min(max(efficiency / self._efficiency, TREND_RANGE[0]), TREND_RANGE[1])
            self._log_trend += TREND_GAIN * (math.log(ratio) - self._log_trend)
        self._efficiency = efficiency
        # a measurement's noise (≈2 % on the signal) must not read as a trend
        self.trend = math.exp(self._log_trend) if abs(self._log_trend) > TREND_DEADBAND else 1.0
        return signal * self.trend

    def _clip(self, power: float) -> float:
        s = self.settings
        return min(max(power, s.min_mw), s.max_mw)

    def _hold(self, base: float, reason: str) -> Decision:
        self.power_mw = self._clip(base)
        return Decision(self.power_mw, f"hold: {reason}", False)

    def update(self, t: int, snr: float | None, power_mw: float | None = None) -> Decision:
        """Decide the next volume's power from volume ``t``'s SNR.

        ``power_mw`` is the power volume ``t`` was taken at (default: the last
        decision); the next power is computed from it, so a volume that had to be
        taken at a held power is still steered correctly.
        """
        s = self.settings
        base = self.power_mw if power_mw is None else float(power_mw)
        if not math.isfinite(base) or base <= 0:
            base = self.power_mw
        problem = snr_problem(snr)
        if problem is not None:
            return self._hold(base, problem)
        assert snr is not None
        if (t + 1) % s.every:
            return self._hold(base, f"decides every {s.every} volumes")
        expected = self._expected_signal(snr, base)
        ahead = snr_for_signal(expected, self.read_noise_e)
        if abs(ahead / s.aim - 1) <= s.tolerance:
            return self._hold(
                base, f"SNR {snr:.2f} (next {ahead:.2f}) within ±{s.tolerance:.0%} of {s.aim:.2f}"
            )
        wanted = signal_for_snr(s.aim, self.read_noise_e) / expected
        step = min(max(wanted, s.max_step_down), s.max_step_up)
        new = self._clip(base * step)
        direction = "up" if snr < s.aim else "down"
        if new == base:
            bound = "max" if direction == "up" else "min"
            return self._hold(base, f"at {bound} {base:.3g} mW, SNR {snr:.2f} vs aim {s.aim:.2f}")
        notes = []
        if step != wanted:
            notes.append(f"step limited from ×{wanted:.2f}")
        if new != base * step:
            notes.append("at max" if direction == "up" else "at min")
        note = f" ({', '.join(notes)})" if notes else ""
        self.power_mw = new
        return Decision(
            new,
            f"{direction} ×{new / base:.2f}: SNR {snr:.2f} vs aim {s.aim:.2f}{note}",
            True,
        )
