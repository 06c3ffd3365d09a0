"""CARE's 3D U-Net: shapes, residual output, training, checkpoints and inference."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from rcanlive.config.training import NetworkConfig
from rcanlive.inference import create_backend, predict_volume
from rcanlive.model import (
    RCAN3D,
    LoadedModel,
    ModelConfig,
    PercentileNormalizer,
    UNet3D,
    build_network,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)
from rcanlive.model.checkpoint import FORMAT, VERSION

if TYPE_CHECKING:
    from pathlib import Path

TINY = {"depth": 2, "filters": 4}


def _tiny(seed: int = 0) -> UNet3D:
    torch.manual_seed(seed)
    return UNet3D(**TINY).eval()


def _zero_head(net: UNet3D) -> UNet3D:
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    return net


def test_defaults_are_cares_3d_unet() -> None:
    net = UNet3D()
    # CSBDeep 3D defaults (depth 2, 32 filters, 3x3x3, two convs per level): ~1.0 M
    assert count_parameters(net) == 996_769
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    widths = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert max(widths) == 128 and widths[-1] == 1


@pytest.mark.parametrize("shape", [(1, 1, 5, 33, 47), (2, 1, 8, 16, 16), (1, 1, 1, 3, 2)])
def test_output_has_input_shape(shape: tuple[int, ...]) -> None:
    with torch.no_grad():
        assert _tiny()(torch.rand(shape)).shape == shape


def test_zeroed_last_conv_returns_the_input() -> None:
    net = _zero_head(_tiny())
    x = torch.rand(1, 1, 5, 33, 47)
    with torch.no_grad():
        torch.testing.assert_close(net(x), x)
        assert not torch.equal(_tiny()(x), x)  # the residual branch does contribute


def test_a_few_adam_steps_lower_the_loss() -> None:
    net = _tiny().train()
    gen = torch.Generator().manual_seed(1)
    low = torch.rand(1, 1, 8, 16, 16, generator=gen)
    high = 1.5 * low + 0.1  # a contrast change the residual branch has to learn
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = torch.nn.functional.l1_loss(net(low), high)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_config_chooses_the_architecture() -> None:
    config = ModelConfig(architecture="unet", unet_filters=4)
    net = build_network(config)
    assert isinstance(net, UNet3D) and net.config == config
    assert isinstance(build_network(ModelConfig(n_groups=1)), RCAN3D)
    # an RCAN dumps exactly its pre-U-Net fields (checkpoints, bioimage.io kwargs)
    assert "architecture" not in ModelConfig().model_dump()
    assert "n_groups" not in config.model_dump()
    with pytest.raises(ValidationError, match="n_groups do not apply to architecture 'unet'"):
        ModelConfig(architecture="unet", n_groups=2)
    with pytest.raises(ValidationError, match=r"in_channels .* must equal out_channels"):
        ModelConfig(architecture="unet", in_channels=1, out_channels=2)
    with pytest.raises(ValueError, match="RCAN3D needs architecture 'rcan'"):
        RCAN3D.from_config(config)


def test_training_config_builds_a_unet() -> None:
    section = NetworkConfig.model_validate({"architecture": "unet", "unet_filters": 8})
    assert ModelConfig(**section.model_dump()) == ModelConfig(architecture="unet", unet_filters=8)
    with pytest.raises(ValidationError, match="unet_depth do not apply"):
        NetworkConfig.model_validate({"unet_depth": 3})


def test_checkpoint_round_trip_gives_identical_output(tmp_path: Path) -> None:
    net = _tiny()
    path = save_checkpoint(tmp_path / "unet.pt", net, PercentileNormalizer(), {"epoch": 3})
    loaded = load_checkpoint(path)
    assert isinstance(loaded.model, UNet3D) and loaded.model_config == net.config
    x = torch.rand(1, 1, 6, 20, 22)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), net(x))


def test_checkpoint_without_architecture_loads_as_rcan(tmp_path: Path) -> None:
    torch.manual_seed(0)
    rcan = RCAN3D(n_groups=1, n_blocks=1, channels=8, reduction=4)
    old_config = {
        "in_channels": 1,
        "out_channels": 1,
        "n_groups": 1,
        "n_blocks": 1,
        "channels": 8,
        "reduction": 4,
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": old_config,  # as written before the U-Net existed
        "normalizer": PercentileNormalizer().to_dict(),
        "state_dict": rcan.state_dict(),
        "metadata": {},
        "training_state": None,
    }
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert isinstance(loaded.model, RCAN3D)
    assert loaded.model_config.architecture == "rcan"
    assert loaded.model_config.model_dump() == old_config


def test_eager_inference_restores_a_volume_with_a_unet(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "unet.pt", _zero_head(_tiny()), PercentileNormalizer())
    volume = np.random.default_rng(0).poisson(200.0, (9, 41, 45)).astype(np.float32) + 100
    backend = create_backend("eager", path, "fp32", "cpu")
    # an identity U-Net, tiled with overlaps: normalisation, padding and residual undo
    restored = predict_volume(volume, backend, tile_shape=(8, 32, 32))
    np.testing.assert_allclose(restored, volume, rtol=1e-4)
    loaded = LoadedModel(_tiny(1), _tiny(1).config, PercentileNormalizer())
    changed = predict_volume(volume, create_backend("eager", loaded, "fp32", "cpu"))
    assert changed.shape == volume.shape and np.isfinite(changed).all()


def test_trainer_trains_a_unet(tmp_path: Path) -> None:
    from rcanlive.config.training import TrainingConfig
    from rcanlive.simulation.phantoms import PhantomSpec, make_phantom_pair
    from rcanlive.training import pairs_from_arrays, train

    spec = PhantomSpec(shape=(16, 32, 32), n_spheres=12, gaussian_sigma=1000.0)
    raws, gts = zip(*(make_phantom_pair(spec, seed=s) for s in range(2)), strict=True)
    config = TrainingConfig.model_validate(
        {
            "data": {"raw_dir": "unused", "gt_dir": "unused", "validation_patches": 1},
            "model": {"architecture": "unet", "unet_filters": 4},
            "patch_shape": (8, 32, 32),
            "batch_size": 2,
            "epochs": 1,
            "steps_per_epoch": 3,
            "precision": "fp32",
            "output_dir": tmp_path,
            "progress": False,
        }
    )
    result = train(config, pairs=pairs_from_arrays(raws, gts))
    loaded = load_checkpoint(result.last_checkpoint)
    assert isinstance(loaded.model, UNet3D) and loaded.model_config.unet_filters == 4
    assert np.isfinite(result.history[0].train_loss)


@pytest.mark.slow
def test_onnx_export_of_a_unet_runs_any_size(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from rcanlive.inference.backends.onnx_runtime import export_onnx

    net = _tiny()
    loaded = LoadedModel(net, net.config, PercentileNormalizer())
    graph = export_onnx(loaded, tmp_path / "unet.onnx", precision="fp32")
    volume = np.random.default_rng(0).poisson(200.0, (7, 37, 45)).astype(np.float32)
    eager = predict_volume(volume, create_backend("eager", loaded, "fp32", "cpu"))
    onnx = predict_volume(volume, create_backend("onnx", graph, "fp32", "cpu"))
    np.testing.assert_allclose(onnx, eager, rtol=1e-4, atol=1e-2)


def test_bioimageio_export_refuses_a_unet(tmp_path: Path) -> None:
    from rcanlive.inference.bioimageio import export_bioimageio

    net = _tiny()
    loaded = LoadedModel(net, net.config, PercentileNormalizer())
    sample = np.random.default_rng(0).poisson(200.0, (8, 32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match="RCAN"):
        export_bioimageio(loaded, tmp_path / "m", sample=sample, onnx=False, authors=["t"])
