"""Live 3D restoration in a plain pymmcore-plus script, on the simulated iSIM.

Any pymmcore-plus set-up gets rcanlive's live restoration by adding one output handler
to its MDA: the handler writes the OME-Zarr dataset exactly as ``rcanlive acquire``
does and hands every stored volume to restoration worker processes. The sequence is an
ordinary ``useq.MDASequence``; nothing here uses rcanlive's experiment configs.

Run it as is::

    python examples/pymmcore_plus_handler.py            # bundled model, eager backend
    python examples/pymmcore_plus_handler.py --no-model # raw data only

The first run passes the handler as ``output=``; the second connects it to the core's
events, as you would when a GUI (napari-micromanager, pymmcore-gui) starts the MDA.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from pathlib import Path

import useq

from rcanlive.acquisition import LiveRestorationHandler
from rcanlive.config.experiment import Restoration
from rcanlive.microscope import open_rig
from rcanlive.microscope.engine import ISIMEngine
from rcanlive.microscope.rig import simulated_rig_path


def sequence() -> useq.MDASequence:
    """4 time points, 2 s apart, of a 12-plane stack in one 488 nm channel."""
    return useq.MDASequence(
        axis_order="tpcz",
        time_plan=useq.TIntervalLoops(interval=2.0, loops=4),
        stage_positions=[useq.Position(x=0.0, y=0.0, z=50.0)],
        channels=[useq.Channel(group="Illumination", config="488nm 2mW", exposure=20.0)],
        z_plan=useq.ZRangeAround(range=2.75, step=0.25),
    )


def report(handler: LiveRestorationHandler) -> None:
    result = handler.result
    assert result is not None
    print(f"  dataset: {result.dataset} ({result.kind}, {result.status})")
    print(f"  {result.volumes} volume(s), {result.frames}/{result.expected_frames} frames")
    if result.restoration is not None:
        r = result.restoration
        print(
            f"  restored live: {result.restored} of {r['submitted']} with {r['backend']} "
            f"{r['precision']}; not restored: {len(r['skipped']) + r['failed']}"
        )
    if result.error:
        print(f"  error: {result.error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the datasets")
    parser.add_argument("--no-model", action="store_true", help="store the raw data only")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rcanlive-handler-"))

    # -- an existing pymmcore-plus set-up: here the simulated iSIM ---------------------
    rig = open_rig(simulated_rig_path())
    core = rig.core
    core.setROI(960, 960, 128, 128)
    core.definePixelSizeConfig("60x")
    core.setPixelSizeUm("60x", rig.config.pixel_size_um)
    core.setPixelSizeConfig("60x")
    rig.define_illumination("488nm 2mW", {488: 2.0})  # the "Illumination" config group
    # the rig's engine opens the blanking for each event and turns the lasers off at
    # the end; the handler works with any engine
    core.mda.set_engine(ISIMEngine(core, rig.config))

    # -- live restoration: one handler ---------------------------------------------------
    handler = LiveRestorationHandler(
        core,
        out / "cells.ome.zarr",
        model=None if args.no_model else "bundled",
        backend="eager",  # "auto" measures every backend once per machine, then caches
        precision="fp32",
        # restore every volume (the default keeps up with the newest, skipping older ones)
        restoration=Restoration(policy="fifo", max_queue=8),
        volume_metadata=rig.volume_metadata,  # the simulated camera's ground truth
    )
    try:
        print("1. core.mda.run(sequence, output=[handler])")
        core.mda.run(sequence(), output=[handler])
        report(handler)

        print("2. handler connected to core.mda.events; the MDA started elsewhere (a GUI)")
        with handler:  # handler.connect() ... handler.disconnect()
            core.run_mda(sequence()).join()  # what a GUI's "Run" button does
        report(handler)  # a second dataset: cells_1.ome.zarr
    finally:
        rig.close()
        del rig, core
        gc.collect()  # (an MMCore collected at interpreter exit can abort it)


if __name__ == "__main__":
    main()
