"""bioimage.io model packages (spec 0.5): rcanlive models out, any 3D restoration model in.

* :func:`export_bioimageio` writes an rcanlive model as a package: ``pytorch_state_dict``
  weights with the :class:`~rcanlive.model.RCAN3D` source, ONNX weights, test tensors,
  percentile preprocessing, axes in µm, a cover image, a README and the paper's citation.
* :func:`load_bioimageio` turns a package written by rcanlive back into the
  :class:`~rcanlive.model.LoadedModel` it came from (bit-identical weights and
  normalisation), so every backend runs it like the checkpoint.
* :func:`open_package_backend` runs any other single-channel 3D package with
  ``pytorch_state_dict`` or ``onnx`` weights (a CARE model exported by CAREamics, a
  3D U-Net), applying its own pre- and postprocessing, input sizes and halo.

A package is a ``.zip`` or a folder holding ``rdf.yaml`` or ``bioimageio.yaml`` (or the
YAML file itself). The functions here that only *detect* a package import neither torch
nor bioimageio, so the acquisition process may call them; the rest are loaded on first
use and need the ``bioimageio`` extra (``pip install 'rcanlive[bioimageio]'``).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ...lazy import lazy_attributes

if TYPE_CHECKING:
    from .backend import PackageBackend, PackageNormalizer, open_package_backend
    from .export import export_bioimageio
    from .package import PackageError, check_package, load_bioimageio

#: names the bioimage.io spec gives the description file at a package's top level
RDF_NAMES = ("bioimageio.yaml", "rdf.yaml")
#: key under the description's ``config`` that marks a package written by rcanlive
MARKER = "rcanlive"

_WHERE = {
    ".backend": ("PackageBackend", "PackageNormalizer", "open_package_backend"),
    ".export": ("export_bioimageio",),
    ".package": ("PackageError", "check_package", "load_bioimageio"),
}

__all__ = [
    "MARKER",
    "RDF_NAMES",
    "PackageBackend",
    "PackageError",
    "PackageNormalizer",
    "check_package",
    "export_bioimageio",
    "is_bioimageio_package",
    "is_foreign_package",
    "is_rcanlive_package",
    "load_bioimageio",
    "open_package_backend",
    "rdf_name",
]


__getattr__ = lazy_attributes(__name__, _WHERE)


def _is_rdf(name: str) -> bool:
    return name in RDF_NAMES or name.endswith(".bioimageio.yaml")


def rdf_name(path: str | os.PathLike[str]) -> str | None:
    """The description file's name inside the package at ``path``, or ``None``.

    ``path`` may be a ``.zip`` package, a package folder, or the description file.
    """
    path = Path(path)
    if path.is_file() and _is_rdf(path.name):
        return path.name
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.is_file() and _is_rdf(p.name))
    elif path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = sorted(n for n in zf.namelist() if "/" not in n and _is_rdf(n))
        except (OSError, zipfile.BadZipFile):
            return None
    else:
        return None
    # bioimageio.yaml is the current name; rdf.yaml the older one
    return next((n for n in RDF_NAMES if n in names), names[0] if names else None)


def is_bioimageio_package(path: object) -> bool:
    """Whether ``path`` (any object) names a bioimage.io package: zip, folder or YAML."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    return rdf_name(path) is not None


def _read_rdf_text(path: Path, name: str) -> str:
    if path.is_file() and path.name == name and not zipfile.is_zipfile(path):
        return path.read_text("utf-8")
    if path.is_dir():
        return (path / name).read_text("utf-8")
    with zipfile.ZipFile(path) as zf:
        return zf.read(name).decode("utf-8")


def is_rcanlive_package(path: object) -> bool:
    """Whether ``path`` is a bioimage.io package written by :func:`export_bioimageio`."""
    if not is_bioimageio_package(path):
        return False
    import yaml

    name = rdf_name(path)  # type: ignore[arg-type]
    assert name is not None
    try:
        rdf = yaml.safe_load(_read_rdf_text(Path(path), name))  # type: ignore[arg-type]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    config = rdf.get("config") if isinstance(rdf, dict) else None
    return isinstance(config, dict) and isinstance(config.get(MARKER), dict)


def is_foreign_package(path: object) -> bool:
    """Whether ``path`` is a bioimage.io package rcanlive did not write (run as packaged)."""
    return is_bioimageio_package(path) and not is_rcanlive_package(path)
