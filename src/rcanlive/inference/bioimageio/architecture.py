"""The RCAN3D source a package carries: rcanlive's own model code as one importable file.

bioimage.io consumers import a ``pytorch_state_dict`` architecture from a single file
outside any package, so the relative import between :mod:`rcanlive.model.rcan` and
:mod:`rcanlive.model.config` cannot stay. The file joins the two modules' code
unchanged, less their docstrings, their ``from __future__`` lines and that relative
import; it needs only torch and pydantic (which bioimage.io tools bring).
"""

from __future__ import annotations

import ast
from pathlib import Path

from rcanlive.model import config as config_module
from rcanlive.model import rcan as rcan_module

#: the callable a package's architecture names
CALLABLE = "RCAN3D"
#: file name of the source inside a package
FILE_NAME = "rcan3d.py"


def _body(path: Path, allowed_relative: set[str]) -> str:
    """``path``'s code without its docstring, future import and relative imports."""
    text = path.read_text("utf-8")
    tree = ast.parse(text)
    drop: set[int] = set()
    for index, node in enumerate(tree.body):
        is_docstring = (
            index == 0
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        imported = node.module if isinstance(node, ast.ImportFrom) else None
        is_future = imported == "__future__"
        is_relative = isinstance(node, ast.ImportFrom) and node.level > 0
        if is_relative and imported not in allowed_relative:
            raise RuntimeError(
                f"{path.name} imports .{imported} (not bundled into the bioimage.io "
                "architecture file); add it to rcanlive.inference.bioimageio.architecture"
            )
        if is_docstring or is_future or is_relative:
            drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    lines = text.splitlines()
    kept = [line for number, line in enumerate(lines, start=1) if number not in drop]
    return "\n".join(kept).strip("\n") + "\n"


def architecture_source(version: str) -> str:
    """The text of :data:`FILE_NAME`: ``ModelConfig`` and ``RCAN3D`` in one module.

    Parameters
    ----------
    version
        rcanlive version recorded in the header.
    """
    header = (
        f'"""3D RCAN (Chen et al., Nature Methods 2021) as trained by rcanlive {version}.\n\n'
        "The code of rcanlive.model.config and rcanlive.model.rcan, joined into one file\n"
        'so that bioimage.io tools can import it; build it with RCAN3D(**kwargs)."""\n\n'
        "from __future__ import annotations\n\n"
    )
    parts = [
        _body(Path(config_module.__file__), set()),
        _body(Path(rcan_module.__file__), {"config"}),
    ]
    source = header + "\n\n".join(parts)
    compile(source, FILE_NAME, "exec")  # a broken join fails here, not in a consumer
    return source
