"""Shared fixtures: the simulated rig, small and fast."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest

from rcanlive.config.rig import load_rig
from rcanlive.microscope.rig import simulated_rig_path

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rcanlive.config.rig import RigConfig
    from rcanlive.microscope.rig import Rig


@pytest.fixture
def sim_rig_config() -> RigConfig:
    """The bundled simulated rig, without real-time exposure waits."""
    rig = load_rig(simulated_rig_path())
    return rig.replace(simulation={**rig.simulation.model_dump(), "realtime": False})


@pytest.fixture
def open_sim_rig(sim_rig_config: RigConfig) -> Iterator[callable]:
    """Factory opening simulated rigs; every rig is closed (lasers off) afterwards."""
    from rcanlive.microscope import open_rig

    opened: list[Rig] = []

    def _open(config: RigConfig | None = None) -> Rig:
        rig = open_rig(config or sim_rig_config)
        opened.append(rig)
        return rig

    yield _open
    for rig in opened:
        rig.close()
    opened.clear()
    gc.collect()
