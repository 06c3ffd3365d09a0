"""RCAN3D architecture, mixed precision, and the checkpoint format."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch

from rcanlive.config.training import NetworkConfig
from rcanlive.model import (
    RCAN3D,
    CheckpointError,
    ModelConfig,
    PercentileNormalizer,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)
from rcanlive.model.rcan import ChannelAttention, ResidualGroup

if TYPE_CHECKING:
    from pathlib import Path

TINY = {"n_groups": 1, "n_blocks": 1, "channels": 8, "reduction": 4}


def test_default_model_follows_the_paper() -> None:
    model = RCAN3D()
    # G=5 groups of B=3 RCABs, C=32, r=8: the paper's "about 1.0 M parameters"
    assert count_parameters(model) == 1_002_621
    groups = [m for m in model.modules() if isinstance(m, ResidualGroup)]
    assert len(groups) == 5
    attention = [m for m in model.modules() if isinstance(m, ChannelAttention)]
    assert len(attention) == 15
    assert attention[0].squeeze.out_channels == 4  # C/r filters
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert {c.kernel_size for c in convs} == {(3, 3, 3), (1, 1, 1)}
    assert all(c.kernel_size == (3, 3, 3) for c in convs if c not in _attention_convs(model))


def _attention_convs(model: torch.nn.Module) -> set[torch.nn.Module]:
    return {c for m in model.modules() if isinstance(m, ChannelAttention) for c in m.children()}


@pytest.mark.parametrize("shape", [(1, 1, 5, 17, 23), (2, 1, 8, 16, 16)])
def test_output_has_input_shape(shape: tuple[int, ...]) -> None:
    model = RCAN3D(**TINY).eval()
    with torch.no_grad():
        assert model(torch.rand(shape)).shape == shape


def test_configurable_channels_and_wrong_rank_error() -> None:
    model = RCAN3D(in_channels=2, out_channels=3, **TINY)
    assert model(torch.rand(1, 2, 4, 8, 8)).shape == (1, 3, 4, 8, 8)
    with pytest.raises(ValueError, match=r"5D tensor \(N, C, Z, Y, X\)"):
        model(torch.rand(2, 4, 8, 8))


def test_training_config_mirrors_model_config() -> None:
    assert NetworkConfig.model_fields.keys() == ModelConfig.model_fields.keys()
    assert NetworkConfig().model_dump() == ModelConfig().model_dump()


def test_channel_attention_mean_is_fp32_under_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.dtype] = []
    original = torch.Tensor.mean

    def spy(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append(self.dtype)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "mean", spy)
    model = RCAN3D(**TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 1, 4, 16, 16))
    assert out.dtype == torch.bfloat16  # the network does run in bf16 ...
    assert seen == [torch.float32]  # ... but its one channel mean is taken in fp32


def test_bf16_autocast_stays_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = RCAN3D(**TINY).eval()
    x = torch.rand(1, 1, 6, 24, 24)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).float()
    assert (low - ref).abs().max() < 0.05 * ref.abs().max()


def test_checkpoint_round_trip_is_bit_identical(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = RCAN3D(**TINY).eval()
    norm = PercentileNormalizer(p_low=1.0, p_high=99.5)
    path = save_checkpoint(
        tmp_path / "m.pt", model, norm, {"epoch": 7, "where": tmp_path, "psnr": 31.5}
    )
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.model_config == ModelConfig(**TINY)
    assert loaded.normalizer == norm
    assert loaded.metadata == {"epoch": 7, "where": str(tmp_path), "psnr": 31.5}
    x = torch.rand(1, 1, 5, 20, 20)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, no leftovers


def test_checkpoint_of_a_ddp_like_wrapper_stores_the_network(tmp_path: Path) -> None:
    class Wrapper(torch.nn.Module):
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

    model = RCAN3D(**TINY)
    loaded = load_checkpoint(
        save_checkpoint(tmp_path / "w.pt", Wrapper(model), PercentileNormalizer())
    )
    assert loaded.model.state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"definitely not torch", "is not an rcanlive checkpoint"),
        ({"weights": torch.zeros(2)}, "no 'rcanlive-checkpoint' marker"),
        ({"format": "rcanlive-checkpoint", "version": 99}, "version 99 is not supported"),
        (
            {"format": "rcanlive-checkpoint", "version": 1, "model_config": {"channels": 4}},
            "damaged rcanlive checkpoint",
        ),
    ],
    ids=["garbage", "foreign", "future", "damaged"],
)
def test_loading_a_foreign_file_says_so(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_checkpoint_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
