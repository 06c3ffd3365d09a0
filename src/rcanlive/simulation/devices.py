"""Pure-Python Micro-Manager devices of the simulated iSIM, for ``UniMMCore``.

Loaded from ``devices/simulated-isim.cfg`` with ``#py pyDevice`` lines. They share
physical state through :mod:`rcanlive.simulation.world`. In a hardware-sequenced
acquisition the camera steps the loaded piezo and AOTF sequences itself, frame by
frame, standing in for the TTL lines a real camera drives.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.experimental.unicore import (
    CameraDevice,
    GenericDevice,
    ShutterDevice,
    StageDevice,
    XYStageDevice,
    pymm_property,
)

from .world import LINES_NM, get_world
from .world import World as SimWorld

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from numpy.typing import DTypeLike

SEQUENCE_MAX = 100_000
SENSOR = (2048, 2048)


class _WorldDevice:
    """Mixin: a pre-init ``World`` property naming the shared physical state."""

    _world_name: str = "default"

    @pymm_property(is_pre_init=True, property_type=str)
    def World(self) -> str:
        """Name of the simulated world this device acts in."""
        return self._world_name

    # mypy knows the same-name setter idiom only for the builtin @property
    @World.setter  # type: ignore[no-redef]
    def World(self, value: str) -> None:
        self._world_name = str(value)

    @property
    def world(self) -> SimWorld:
        return get_world(self._world_name)


class SimCamera(_WorldDevice, CameraDevice):
    """sCMOS-like camera: 2048² 16-bit sensor, offset 100, 0.46 e⁻/count, 1.3 e⁻ read.

    ``FastMode`` replays a bank of pre-rendered frames so that benchmarks measure
    the pipeline rather than the renderer.
    """

    def __init__(self) -> None:
        super().__init__()
        self._exposure = 50.0
        h, w = 512, 512
        self._roi = ((SENSOR[1] - w) // 2, (SENSOR[0] - h) // 2, w, h)
        self._fast = False
        self._bank: list[np.ndarray] = []
        self._realtime = True

    # -- required API ---------------------------------------------------------
    def get_exposure(self) -> float:
        return self._exposure

    def set_exposure(self, exposure: float) -> None:
        exposure = float(exposure)
        if exposure <= 0:
            raise ValueError(f"exposure must be > 0 ms, got {exposure}")
        self._exposure = float(exposure)

    def shape(self) -> tuple[int, int]:
        return (self._roi[3], self._roi[2])

    def dtype(self) -> DTypeLike:
        return np.uint16

    def get_roi(self) -> tuple[int, int, int, int]:
        return self._roi

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        if x < 0 or y < 0 or width <= 0 or height <= 0:
            raise ValueError(f"invalid ROI {(x, y, width, height)}")
        if x + width > SENSOR[1] or y + height > SENSOR[0]:
            raise ValueError(f"ROI {(x, y, width, height)} exceeds the 2048×2048 sensor")
        self._roi = (int(x), int(y), int(width), int(height))
        self._bank = []

    def clear_roi(self) -> None:
        self.set_roi(0, 0, SENSOR[1], SENSOR[0])

    # -- extra properties -----------------------------------------------------
    @pymm_property(allowed_values=["0", "1"], property_type=str)
    def FastMode(self) -> str:
        """1: replay a bank of pre-rendered frames (benchmarks); 0: render each frame."""
        return "1" if self._fast else "0"

    @FastMode.setter  # type: ignore[no-redef]  # same-name setter: see _WorldDevice
    def FastMode(self, value: str) -> None:
        self._fast = str(value) == "1"
        self._bank = []

    @pymm_property(allowed_values=["0", "1"], property_type=str)
    def RealTime(self) -> str:
        """1: frames take their exposure time in wall-clock time; 0: as fast as possible."""
        return "1" if self._realtime else "0"

    @RealTime.setter  # type: ignore[no-redef]  # same-name setter: see _WorldDevice
    def RealTime(self, value: str) -> None:
        self._realtime = str(value) == "1"

    # -- rendering ------------------------------------------------------------
    def _roi_offset(self) -> tuple[int, int]:
        x, y, w, h = self._roi
        return (x - (SENSOR[1] - w) // 2, y - (SENSOR[0] - h) // 2)

    def _render(self, z_um: float, aotf: dict[int, float]) -> tuple[np.ndarray, float]:
        world = self.world
        with world.lock:
            intensity = world.intensity(aotf)
            signal = world.expected_photoelectrons(
                self.shape(), self._exposure, z_um, intensity, self._roi_offset()
            )
            world.bleach(self.shape(), self._exposure, intensity)
            frame = world.camera.expose(signal, world.rng)
        return frame, intensity

    def _bank_frame(self, i: int, z_um: float, aotf: dict[int, float]) -> tuple[np.ndarray, float]:
        if not self._bank:
            self._bank = [self._render(z_um, aotf)[0] for _ in range(8)]
        return self._bank[i % len(self._bank)], self.world.intensity(aotf)

    def start_sequence(
        self, n: int | None, get_buffer: Callable[[Sequence[int], DTypeLike], np.ndarray]
    ) -> Iterator[Mapping[str, Any]]:
        world = self.world
        trig = world.triggers
        shape, dtype = self.shape(), self.dtype()
        period = self._exposure * 1e-3
        if self._fast:  # render the bank before the clock starts, as a camera is ready
            z0 = trig.z[0] if trig.z else world.z_um
            self._bank_frame(0, z0, {**world.aotf, **{ln: s[0] for ln, s in trig.aotf.items()}})
        t_next = time.perf_counter()
        i = 0
        limit = n if n is not None else 2**62
        while i < limit:
            z = trig.z[i % len(trig.z)] if trig.z else world.z_um
            aotf = dict(world.aotf)
            for line, seq in trig.aotf.items():
                aotf[line] = seq[i % len(seq)]
            if self._fast:
                frame, intensity = self._bank_frame(i, z, aotf)
            else:
                frame, intensity = self._render(z, aotf)
            if self._realtime:
                t_next += period
                delay = t_next - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            buf = get_buffer(shape, dtype)
            buf[:] = frame
            yield {
                # when the frame left the camera (this process's monotonic clock, s):
                # frame timing as the camera saw it, whatever the consumers did
                "sim_time_s": f"{time.perf_counter():.6f}",
                "sim_z_um": f"{z:.4f}",
                "sim_intensity_w_cm2": f"{intensity:.4f}",
                "sim_aotf": ",".join(f"{ln}:{v:.3f}" for ln, v in sorted(aotf.items())),
                "sim_stage_true_um": "{:.4f},{:.4f}".format(*world.xy_true),
            }
            i += 1


class SimAOTF(_WorldDevice, GenericDevice):
    """AOTF: one transmission value (0–100) per laser line, hardware-sequenceable.

    Transmission follows sin²(π/2 · value/100); the rig config's calibration table
    maps powers to values.
    """

    def __init__(self) -> None:
        super().__init__()
        for line in LINES_NM:
            self._register_line(line)
        self._loaded: dict[int, tuple[float, ...]] = {}

    def _register_line(self, line: int) -> None:
        """Register the ``<line>nm`` property; the accessors receive the device."""

        def get(dev: SimAOTF) -> float:
            return dev.world.aotf[line]

        def set_(dev: SimAOTF, value: float) -> None:
            dev._set_line(line, value)

        def load(dev: SimAOTF, seq: Sequence[float]) -> None:
            dev._load(line, seq)

        def start(dev: SimAOTF) -> None:
            dev._start(line)

        def stop(dev: SimAOTF) -> None:
            dev._stop(line)

        self.register_property(
            name=f"{line}nm",
            property_type=float,
            limits=(0.0, 100.0),
            sequence_max_length=SEQUENCE_MAX,
            getter=get,
            setter=set_,
            sequence_loader=load,
            sequence_starter=start,
            sequence_stopper=stop,
        )

    def _set_line(self, line: int, value: float) -> None:
        v = float(value)
        if not 0.0 <= v <= 100.0:
            raise ValueError(f"AOTF {line} nm value must be within 0–100, got {v}")
        with self.world.lock:
            self.world.aotf[line] = v

    def _load(self, line: int, seq: Sequence[float]) -> None:
        self._loaded[line] = tuple(float(v) for v in seq)

    def _start(self, line: int) -> None:
        self.world.triggers.aotf[line] = self._loaded[line]

    def _stop(self, line: int) -> None:
        self.world.triggers.aotf.pop(line, None)

    def shutdown(self) -> None:
        with self.world.lock:
            for line in LINES_NM:
                self.world.aotf[line] = 0.0
            self.world.triggers.aotf.clear()


class SimBlanking(_WorldDevice, ShutterDevice):
    """Laser blanking / shutter: no light reaches the sample while closed."""

    def get_open(self) -> bool:
        return self.world.shutter_open

    def set_open(self, open: bool) -> None:
        with self.world.lock:
            self.world.shutter_open = bool(open)

    def shutdown(self) -> None:
        self.set_open(False)


class SimPiezo(_WorldDevice, StageDevice):
    """Z piezo (0–100 µm), hardware-sequenceable."""

    def __init__(self) -> None:
        super().__init__()
        self._sequence: tuple[float, ...] = ()

    def set_position_um(self, val: float) -> None:
        if not 0.0 <= val <= 100.0:
            raise ValueError(f"piezo position {val} µm is outside its 0–100 µm range")
        self.world.z_um = float(val)

    def get_position_um(self) -> float:
        return self.world.z_um

    def home(self) -> None:
        self.set_position_um(0.0)

    def stop(self) -> None:
        pass

    def set_origin(self) -> None:
        raise NotImplementedError("the simulated piezo has a fixed origin")

    def get_sequence_max_length(self) -> int:
        return SEQUENCE_MAX

    def send_sequence(self, sequence: tuple[float, ...]) -> None:
        bad = [z for z in sequence if not 0.0 <= z <= 100.0]
        if bad:
            raise ValueError(f"piezo sequence leaves the 0–100 µm range: {bad[:3]}")
        self._sequence = tuple(sequence)

    def start_sequence(self) -> None:
        self.world.triggers.z = self._sequence

    def stop_sequence(self) -> None:
        self.world.triggers.z = None


class SimXYStage(_WorldDevice, XYStageDevice):
    """Motorised XY stage with travel limits and a configurable positioning error."""

    def __init__(self) -> None:
        super().__init__()
        self._limits = (-25_000.0, 25_000.0, -25_000.0, 25_000.0)

    @pymm_property(limits=(0.0, 50.0), property_type=float)
    def PositionErrorUm(self) -> float:
        """σ (µm) of the random error between commanded and reached position."""
        return self.world.stage_error_um

    @PositionErrorUm.setter  # type: ignore[no-redef]  # same-name setter: see _WorldDevice
    def PositionErrorUm(self, value: float) -> None:
        self.world.stage_error_um = float(value)

    @pymm_property(is_read_only=True, property_type=str)
    def TravelLimitsUm(self) -> str:
        """xmin,xmax,ymin,ymax of the stage travel, µm."""
        return ",".join(f"{v:g}" for v in self._limits)

    def limits_um(self) -> tuple[float, float, float, float]:
        return self._limits

    def set_position_um(self, x: float, y: float) -> None:
        xmin, xmax, ymin, ymax = self._limits
        if not (xmin <= x <= xmax and ymin <= y <= ymax):
            raise ValueError(
                f"XY position ({x:.1f}, {y:.1f}) µm is outside the stage travel "
                f"x∈[{xmin:g}, {xmax:g}], y∈[{ymin:g}, {ymax:g}]"
            )
        self.world.move_xy(float(x), float(y))

    def get_position_um(self) -> tuple[float, float]:
        return self.world.xy_commanded

    def set_origin_x(self) -> None:
        raise NotImplementedError("the simulated stage has a fixed origin")

    def set_origin_y(self) -> None:
        raise NotImplementedError("the simulated stage has a fixed origin")

    def home(self) -> None:
        self.set_position_um(0.0, 0.0)

    def stop(self) -> None:
        pass


def volume_metadata(camera_metadata: dict[str, Any]) -> dict[str, Any]:
    """What a volume's log record keeps of the simulated camera's metadata: the
    intensity at the sample and the stage's true position (for checks against truth)."""
    out: dict[str, Any] = {}
    if "sim_intensity_w_cm2" in camera_metadata:
        out["sim_intensity_w_cm2"] = float(camera_metadata["sim_intensity_w_cm2"])
    if "sim_stage_true_um" in camera_metadata:
        out["sim_stage_true_um"] = [
            float(v) for v in str(camera_metadata["sim_stage_true_um"]).split(",")
        ]
    return out
