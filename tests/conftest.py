"""Shared fixtures: the simulated rig, small and fast."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest

from rcanlive.config.rig import load_rig
from rcanlive.microscope.rig import simulated_rig_path

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from rcanlive.config.rig import RigConfig
    from rcanlive.microscope.rig import Rig


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide terminal for every console made during a test: no test may depend on where
    rich wraps a line (at the terminal width, anywhere in a long temporary path)."""
    monkeypatch.setenv("COLUMNS", "500")


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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 1-group, 1-block, 4-channel RCAN checkpoint: fast to run anywhere."""
    import torch

    from rcanlive.model import RCAN3D, PercentileNormalizer, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, RCAN3D(n_groups=1, n_blocks=1, channels=4), PercentileNormalizer())
    return path
