"""Open a microscope from a rig file: the real iSIM or the simulated one."""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.rig import RigConfig, load_rig
from ..log import logger
from .illumination import aotf_value
from .safety import make_safe

if TYPE_CHECKING:
    from pymmcore_plus.experimental.unicore import UniMMCore

    from ..simulation.world import World

ILLUMINATION_GROUP = "Illumination"
_DEVICES_DIR = Path(__file__).resolve().parents[3] / "devices"


class RigError(RuntimeError):
    """The rig could not be opened; the message says which device and why."""


def devices_dir() -> Path:
    """Folder holding the bundled rig files (repo checkout or installed wheel)."""
    for candidate in (_DEVICES_DIR, Path(__file__).resolve().parents[1] / "devices_data"):
        if (candidate / "simulated-isim.rig.toml").is_file():
            return candidate
    raise RigError("cannot find the bundled devices/ folder; reinstall rcanlive")


def simulated_rig_path() -> Path:
    """Path of the simulated iSIM's rig file."""
    return devices_dir() / "simulated-isim.rig.toml"


@dataclass
class Rig:
    """An opened microscope: the core, its description and (if simulated) its world."""

    core: UniMMCore
    config: RigConfig
    world: World | None = None
    presets: dict[str, dict[int, float]] = field(default_factory=dict)

    def define_illumination(self, name: str, powers_mw: dict[int, float]) -> str:
        """Define preset ``name`` in the ``Illumination`` group from powers in mW.

        Every laser line of the rig is set (unnamed lines to 0), so a preset fully
        determines the light. Returns the preset name.
        """
        for wl in powers_mw:
            self.config.laser(wl)  # raises naming the available lines
        for line in self.config.lasers:
            power = powers_mw.get(line.wavelength_nm, 0.0)
            value = aotf_value(line, power)
            self.core.defineConfig(
                ILLUMINATION_GROUP, name, line.device, line.property, f"{value:.4f}"
            )
        self.presets[name] = dict(powers_mw)
        return name

    def volume_metadata(self, camera_metadata: dict[str, Any]) -> dict[str, Any]:
        """What a volume's record keeps of its camera's metadata (a simulated camera
        reports the truth behind the image; a real one nothing rcanlive needs)."""
        if self.world is None:
            return {}
        from ..simulation.devices import volume_metadata

        return volume_metadata(camera_metadata)

    def make_safe(self) -> None:
        """AOTF to 0 and blanking closed (verified)."""
        make_safe(self.core, self.config)

    def close(self) -> None:
        """Make safe and unload every device."""
        try:
            self.make_safe()
        finally:
            self.core.unloadAllDevices()


def _wanted_adapters(cfg: Path) -> set[str]:
    """The C++ device adapters a Micro-Manager config loads (pure-Python devices aside)."""
    return {
        m.group(1) for m in re.finditer(r"^Device,[^,]+,([^,\s]+),", cfg.read_text(), re.MULTILINE)
    }


def _missing_adapters(core: UniMMCore, cfg: Path) -> list[str]:
    wanted = _wanted_adapters(cfg)
    try:
        have = set(core.getDeviceAdapterNames())
    except Exception:
        have = set()
    return sorted(wanted - have)


def _install_world(rig: RigConfig) -> World:
    from ..simulation.samples import expanded_gel, make_sample
    from ..simulation.world import World, install_world

    sim = rig.simulation
    voxel = (0.25, rig.pixel_size_um, rig.pixel_size_um)
    if sim.sample == "gel":
        sample = expanded_gel(n_fields=sim.gel_fields, voxel_um=voxel, seed=sim.seed)
    else:
        sample = make_sample(sim.sample, seed=sim.seed, voxel_um=voxel)
    world = World(sample, seed=sim.seed)
    world.brightness = sim.brightness
    world.stage_error_um = sim.stage_error_um
    world.focus_um = sum(rig.focus_range_um) / 2
    world.z_um = world.focus_um
    world.camera = type(world.camera)(
        offset_counts=rig.camera.offset_counts,
        electrons_per_count=rig.camera.electrons_per_count,
        read_noise_e=rig.camera.read_noise_e,
    )
    return install_world(world)


def open_rig(rig: RigConfig | str | Path) -> Rig:
    """Load a rig's Micro-Manager configuration into a fresh ``UniMMCore``.

    The simulated rig gets a new simulated world (sample, bleaching) each time.
    Loading a real rig on a machine without its device adapters raises
    :class:`RigError` naming the missing adapters.
    """
    from pymmcore_plus.experimental.unicore import UniMMCore

    config = rig if isinstance(rig, RigConfig) else load_rig(rig)
    cfg = Path(config.mm_config)
    if not cfg.is_file():
        raise RigError(f"Micro-Manager config not found: {cfg}")
    world = _install_world(config) if config.simulated else None
    # A rig of pure-Python devices needs no Micro-Manager installation: giving the core
    # a path spares the user pymmcore-plus's "run 'mmcore install'" error, which is
    # wrong advice here. A rig with C++ adapters still looks for its installation.
    core = UniMMCore(mm_path=str(cfg.parent)) if not _wanted_adapters(cfg) else UniMMCore()
    try:
        core.loadSystemConfiguration(str(cfg))
        problem = None
    except Exception as exc:
        missing = _missing_adapters(core, cfg)
        problem = (
            f"missing Micro-Manager device adapter(s): {', '.join(missing)}. Install "
            "Micro-Manager with these adapters (mmcore install) on the rig's computer, "
            "or run on the simulated rig"
            if missing
            else str(exc).splitlines()[-1]
        )
    if problem is not None:
        # A core left half-loaded aborts the interpreter at exit ("exception not
        # rethrown" from MMCore's threads); collect it now, while it is safe.
        del core
        gc.collect()
        raise RigError(f"cannot open rig {config.name!r} from {cfg.name}: {problem}")
    core.setAutoShutter(False)
    if config.simulated and world is not None:
        cam = config.camera_device
        core.setProperty(cam, "RealTime", "1" if config.simulation.realtime else "0")
        core.setProperty(cam, "FastMode", "1" if config.simulation.fast_mode else "0")
        core.setProperty(config.xy_device, "PositionErrorUm", config.simulation.stage_error_um)
    opened = Rig(core=core, config=config, world=world)
    opened.make_safe()
    logger.info("opened rig %s (%s)", config.name, cfg)
    return opened
