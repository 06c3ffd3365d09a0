"""Every kind of rcanlive dataset opens in other NGFF readers and in napari (npe2).

ome-zarr-py and ngff-zarr must read the axes, scale and translation rcanlive wrote;
napari's reader (through npe2, without a display) must give each layer its data,
scale and translate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import zarr

from rcanlive.storage import DatasetWriter, Geometry, RestoredWriter
from rcanlive.storage.volume import Volume

if TYPE_CHECKING:
    from pathlib import Path

PX, DZ = 0.1, 0.5
ZYX = [DZ, PX, PX]


def _volume(shape, seed, t=0, p=0, c=0):
    data = np.random.default_rng(seed).integers(100, 4000, shape, dtype=np.uint16)
    return Volume.from_array(data, t, p, c, "488", (0.0,) * shape[0], (0.0, 0.0), float(t))


def _live(tmp_path: Path) -> Path:
    path = tmp_path / "cell.ome.zarr"
    g = Geometry(planes=3, height=16, width=20, pixel_size_um=PX, z_step_um=DZ, n_t=2, interval_s=5)
    writer = DatasetWriter(path, "live", g, plan={}, rig={})
    for t in range(2):
        writer.write(_volume((3, 16, 20), t, t=t))
    writer.finish("completed")
    restored = RestoredWriter(path)
    restored.write((0, 0, 0), np.ones((3, 16, 20), np.float32), backend="test")
    restored.close()
    return path


def _pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.ome.zarr"
    g = Geometry(planes=2, height=12, width=12, pixel_size_um=PX, z_step_um=DZ, n_c=2, n_p=2)
    writer = DatasetWriter(path, "pairs", g, plan={}, rig={})
    for p in range(2):
        for c in range(2):
            writer.write(_volume((2, 12, 12), 10 * p + c, p=p, c=c))
    writer.finish("completed")
    return path


def _tiles(tmp_path: Path) -> Path:
    """A 1×2 tiling with restored tiles and both stitched pyramids."""
    from rcanlive.stitching import stitch_dataset, use_scheduler

    path = tmp_path / "gel.ome.zarr"
    size, step = 48, 36
    tiles = [
        {"index": i, "row": 0, "col": i, "x_um": (i * step + size / 2) * PX, "y_um": size / 2 * PX}
        for i in range(2)
    ]
    g = Geometry(planes=2, height=size, width=size, pixel_size_um=PX, z_step_um=DZ, n_p=2)
    writer = DatasetWriter(path, "tile", g, plan={}, rig={}, tiles=tiles)
    world = np.random.default_rng(3).integers(100, 4000, (2, size, step + size), dtype=np.uint16)
    for i in range(2):
        data = np.ascontiguousarray(world[:, :, i * step : i * step + size])
        writer.write(Volume.from_array(data, 0, i, 0, "488", (0.0, 0.0), (0.0, 0.0), 0.0))
    writer.finish("completed")
    restored = RestoredWriter(path)
    for i in range(2):
        raw = np.asarray(zarr.open_array(path / "tiles" / f"{i:04d}" / "0", mode="r")[0])
        restored.write((0, i, 0), raw.astype(np.float32), backend="test")
    restored.close()
    with use_scheduler("sync"):
        stitch_dataset(path, image="tiles", register=False, chunk_px=32)
        stitch_dataset(path, image="restored", register=False, chunk_px=32)
    return path


#: (dataset maker, NGFF image, axes, level-0 scale, level-0 translation or None)
IMAGES = [
    (_live, "raw", "tczyx", [5.0, 1.0, *ZYX], None),
    (_live, "restored", "tczyx", [5.0, 1.0, *ZYX], None),
    (_pairs, "pairs/low", "tczyx", [1.0, 1.0, *ZYX], None),
    (_pairs, "pairs/high", "tczyx", [1.0, 1.0, *ZYX], None),
    (_tiles, "tiles/0001", "czyx", [1.0, *ZYX], [0.0, -DZ / 2, 0.0, 36 * PX]),
    (_tiles, "restored_tiles/0001", "czyx", [1.0, *ZYX], [0.0, -DZ / 2, 0.0, 36 * PX]),
    (_tiles, "stitched", None, None, None),
    (_tiles, "stitched_restored", None, None, None),
]


def _written(group: Path) -> tuple[list[str], list[float], list[float]]:
    """Axes, level-0 scale and translation as rcanlive wrote them."""
    ms = zarr.open_group(group, mode="r").attrs["ome"]["multiscales"][0]  # type: ignore[index]
    scale, translation = None, None
    for tr in ms["datasets"][0]["coordinateTransformations"]:
        if tr["type"] == "scale":
            scale = tr["scale"]
        else:
            translation = tr["translation"]
    axes = [a["name"] for a in ms["axes"]]
    return axes, scale, translation or [0.0] * len(axes)


@pytest.mark.parametrize(
    ("make", "image", "axes", "scale", "translation"),
    IMAGES,
    ids=[f"{m.__name__[1:]}-{i}" for m, i, *_ in IMAGES],
)
def test_other_ngff_readers_see_what_rcanlive_wrote(
    tmp_path, make, image, axes, scale, translation
):
    import ngff_zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    group = make(tmp_path) / image
    w_axes, w_scale, w_translation = _written(group)
    if axes is not None:  # the expected values, independently of how they were written
        assert "".join(w_axes) == axes
        assert w_scale == pytest.approx(scale)
        assert w_translation == pytest.approx(translation or [0.0] * len(axes))

    node = next(iter(Reader(parse_url(str(group)))()))
    assert [a["name"] for a in node.metadata["axes"]] == w_axes
    ome_scale = next(
        t["scale"] for t in node.metadata["coordinateTransformations"][0] if t["type"] == "scale"
    )
    assert ome_scale == pytest.approx(w_scale)
    level0 = np.asarray(node.data[0])
    np.testing.assert_array_equal(level0, zarr.open_array(group / "0", mode="r")[...])

    multiscales = ngff_zarr.from_ngff_zarr(str(group))
    first = multiscales.images[0]
    assert list(first.dims) == w_axes
    assert [first.scale[a] for a in w_axes] == pytest.approx(w_scale)
    assert [first.translation[a] for a in w_axes] == pytest.approx(w_translation)
    assert first.data.shape == level0.shape


def _napari_layers(path: Path) -> dict[str, tuple]:
    import npe2

    # napari discovers the installed plugins at start-up: here, the entry point that
    # `pip install rcanlive` declared
    npe2.PluginManager.instance().discover(include_npe1=False)
    layers = npe2.read([str(path)], stack=False, plugin_name="rcanlive")
    return {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in layers}


def test_napari_opens_live_raw_and_restored_side_by_side(tmp_path):
    path = _live(tmp_path)
    layers = _napari_layers(path)
    assert set(layers) == {"cell raw", "cell restored"}
    raw, kwargs, kind = layers["cell raw"]
    assert kind == "image" and raw.shape == (2, 3, 16, 20)  # t, z, y, x (channel split)
    assert kwargs["scale"] == pytest.approx([5.0, *ZYX])
    assert kwargs["axis_labels"] == ["t", "z", "y", "x"]
    np.testing.assert_array_equal(np.asarray(raw[1]), zarr.open_array(path / "raw/0")[1, 0])
    restored, rkwargs, _ = layers["cell restored"]
    np.testing.assert_array_equal(np.asarray(restored[0]), 1.0)
    # complementary colours, added: agreement shows white, differences in one colour
    assert {kwargs["colormap"], rkwargs["colormap"]} == {"magenta", "green"}
    assert kwargs["blending"] == rkwargs["blending"] == "additive"


def test_napari_opens_pairs_as_low_and_high(tmp_path):
    layers = _napari_layers(_pairs(tmp_path))
    assert set(layers) == {"pairs low", "pairs high"}
    low, kwargs, _ = layers["pairs low"]
    assert low.shape == (2, 2, 12, 12) and kwargs["scale"][1:] == pytest.approx(ZYX)


def test_napari_opens_tiles_in_place_and_stitched_as_pyramids(tmp_path):
    path = _tiles(tmp_path)
    layers = _napari_layers(path)
    assert {"gel tile 0000", "gel tile 0001", "gel restored tile 0001"} <= set(layers)
    _, kwargs, _ = layers["gel tile 0001"]
    assert kwargs["translate"] == pytest.approx([-DZ / 2, 0.0, 36 * PX])  # z, y, x in µm
    assert kwargs["scale"] == pytest.approx(ZYX)
    for name in ("gel stitched", "gel stitched restored"):
        pyramid, skw, _ = layers[name]
        _, w_scale, w_translation = _written(path / name.replace("gel ", "").replace(" ", "_"))
        assert skw["multiscale"] is True and len(pyramid) > 1
        assert pyramid[0].shape[-1] > pyramid[1].shape[-1]  # level 1 is coarser
        assert skw["scale"] == pytest.approx(w_scale[-3:])
        assert skw["translate"] == pytest.approx(w_translation[-3:])


def test_napari_declines_what_is_not_an_rcanlive_dataset(tmp_path):
    from rcanlive.napari_plugin.reader import get_reader

    (tmp_path / "plain.zarr").mkdir()
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    assert get_reader(str(tmp_path / "plain.zarr")) is None
    assert get_reader(str(tmp_path / "missing.zarr")) is None
