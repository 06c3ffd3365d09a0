"""Training with two processes (torchrun, gloo on CPU) matches one process.

Two ranks with batch B each and one process with batch 2·B see the same patches per
step (the patch set is seeded, DistributedSampler deals indices round-robin) and DDP
averages the two ranks' gradients: the loss curves must agree to rounding. Only rank 0
writes files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

SCRIPT = """
import json, os, sys
from pathlib import Path

from rcanlive.config.training import TrainingConfig
from rcanlive.simulation.phantoms import PhantomSpec, make_phantom_pair
from rcanlive.training import pairs_from_arrays, train

base, batch = Path(sys.argv[1]), int(sys.argv[2])
rank = os.environ.get("RANK", "single")
spec = PhantomSpec(shape=(16, 32, 32), n_spheres=12, gaussian_sigma=1000.0)
raws, gts = zip(*(make_phantom_pair(spec, seed=s) for s in range(3)))
config = TrainingConfig.model_validate({
    "data": {"raw_dir": "u", "gt_dir": "u", "validation_count": 1, "validation_patches": 2},
    "model": {"n_groups": 1, "n_blocks": 1, "channels": 8, "reduction": 4},
    "patch_shape": (8, 32, 32), "batch_size": batch, "epochs": 3, "steps_per_epoch": 3,
    "learning_rate": 2e-3, "precision": "fp32", "progress": False, "seed": 7,
    # each rank its own folder: a file in rank 1's shows that it wrote
    "output_dir": str(base / f"rank-{rank}"),
})
result = train(config, pairs=pairs_from_arrays(raws, gts))
if rank in ("0", "single"):
    (base / "losses.json").write_text(json.dumps([h.train_loss for h in result.history]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], base: Path) -> list[float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((base / "losses.json").read_text())


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    one, two = tmp_path / "one", tmp_path / "two"
    single = _run([sys.executable, str(script), str(one), "4"], one)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    port = ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    ddp = _run([*torchrun, *port, str(script), str(two), "2"], two)

    assert len(ddp) == len(single) == 3
    assert ddp == pytest.approx(single, rel=1e-4)  # the same steps, summed in another order
    assert ddp[-1] < ddp[0]  # and it learns
    written = sorted(p.name for p in (two / "rank-0").iterdir())
    assert {"best.pt", "last.pt", "loss.png"} <= set(written)
    from rcanlive.model import load_checkpoint

    meta = load_checkpoint(two / "rank-0" / "last.pt").metadata
    assert meta["distributed"] is True and meta["world_size"] == 2
    rank1 = two / "rank-1"
    assert not rank1.exists() or not any(rank1.iterdir()), "rank 1 wrote files"
