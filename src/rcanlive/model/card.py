"""Model cards: what a model was trained on, how well it restores, and where it holds.

A card lives in a checkpoint's metadata under ``"model_card"`` (plain JSON), so it
travels with the weights (and into a bioimage.io package exported from them)::

    {
        "summary": "3D RCAN for iSIM volumes, trained on simulated pairs",
        "training_data": "...",
        "reliable_input_snr": [2.0, 20.0],   # median foreground input SNR
        "metrics": [{"data": ..., "method": ..., "psnr": ..., "ssim": ...,
                     "convention": ...}, ...],
        "limitations": ["..."],
        "measured_by": "python benchmarks/bench_quality.py ...",
    }

The reliable range is in the paper's SNR, S/√(S + Nr²), summarised as the median over
the foreground of a raw volume (:func:`rcanlive.analysis.snr.volume_snr`), so that a run
can compare its own input with it (:func:`snr_reliability`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..log import logger

#: the metadata key holding the card
CARD_KEY = "model_card"


class ModelCard(BaseModel):
    """A model's card (frozen; ``model_dump(mode="json")`` is its JSON form).

    Attributes
    ----------
    summary
        One line: what the model is.
    training_data
        What it was trained on (sample, microscope or simulator, SNR of the inputs).
    reliable_input_snr
        ``(low, high)``: the median foreground input SNR range the model restores
        reliably (measured, not guessed: see ``measured_by``); ``None`` where no noisy
        input was measured (a deblurring model trained on noise-free data).
    metrics
        Rows ``{"data", "method", "psnr", "ssim", "convention"}`` comparing the model
        with the baselines (raw input, deconvolution, other networks).
    limitations
        What it should not be trusted for.
    measured_by
        The command that measured the metrics and the range.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    summary: str
    training_data: str
    reliable_input_snr: tuple[float, float] | None
    metrics: list[dict[str, Any]] = []
    limitations: list[str] = []
    measured_by: str = ""

    @field_validator("reliable_input_snr")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is None:
            return None
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise ValueError(f"must be two finite SNRs with 0 <= low < high, got {value}")
        return value

    @field_validator("metrics")
    @classmethod
    def _rows(cls, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for row in rows:
            missing = {"data", "method"} - row.keys()
            if missing:
                raise ValueError(f"a metrics row needs {sorted(missing)}: {row}")
        return rows

    def describe_range(self) -> str:
        """E.g. ``reliable at median input SNR 2–20 (model card)``."""
        if self.reliable_input_snr is None:
            return "reliable input SNR not measured (model card)"
        lo, hi = self.reliable_input_snr
        return f"reliable at median input SNR {lo:g}–{hi:g} (model card)"


def model_card(metadata: Mapping[str, Any] | Any) -> ModelCard | None:
    """The card in a checkpoint's ``metadata``; None when there is none or it is malformed.

    Never raises: a damaged card is logged as a warning and ignored (the model still
    restores; only its reliability cannot be checked).
    """
    if not isinstance(metadata, Mapping) or metadata.get(CARD_KEY) is None:
        return None
    try:
        return ModelCard.model_validate(metadata[CARD_KEY])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "card"
        logger.warning("ignoring the model card: %s: %s", where, first["msg"])
        return None


def read_model_card(path: str | os.PathLike[str]) -> ModelCard | None:
    """The card of the checkpoint at ``path``; None for no card, or not a checkpoint.

    Exported artifacts (``.pt2``, ``.onnx``, ``.engine``) carry no metadata: None.
    Never raises; an unreadable file is logged as a warning.
    """
    path = Path(path)
    if path.suffix.lower() != ".pt" or not path.is_file():
        return None
    from .checkpoint import read_payload

    try:
        payload = read_payload(path)
    except Exception as exc:
        logger.warning("could not read the model card of %s: %s", path, exc)
        return None
    return model_card(payload.get("metadata"))


def with_model_card(path: str | os.PathLike[str], card: ModelCard) -> Path:
    """Put ``card`` into the metadata of the checkpoint at ``path`` (atomically).

    Everything else in the checkpoint (weights, architecture, normalisation, other
    metadata, training state) is written back unchanged.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If it is not an rcanlive checkpoint.
    """
    import torch

    from .checkpoint import read_payload

    path = Path(path)
    payload = read_payload(path)
    metadata = dict(payload.get("metadata") or {})
    metadata[CARD_KEY] = card.model_dump(mode="json")
    payload["metadata"] = metadata
    tmp = path.with_name(f".{path.name}.card.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def snr_reliability(card: ModelCard, snr_median: float) -> str | None:
    """A warning when ``snr_median`` (median foreground input SNR) is outside the card's
    reliable range; None inside it (or when the SNR is not a number)."""
    if not math.isfinite(snr_median) or card.reliable_input_snr is None:
        return None
    lo, hi = card.reliable_input_snr
    measured = f"input SNR {snr_median:.3g} (median over the foreground)"
    if snr_median < lo:
        return (
            f"{measured} is below {lo:g}, the lowest this model is reliable at (model "
            "card): expect artifacts; raise the excitation power or the exposure, or use "
            "a model trained at this SNR"
        )
    if snr_median > hi:
        return (
            f"{measured} is above {hi:g}, the highest this model is reliable at (model "
            "card): it was not trained on input this clean and may distort it; lower the "
            "excitation power (less bleaching), or use a model trained at this SNR"
        )
    return None


def card_markdown(card: ModelCard) -> str:
    """The card as a README-ready Markdown block."""
    reliable = (
        "not measured (noise-free data only)"
        if card.reliable_input_snr is None
        else "median foreground SNR = S/√(S + Nr²) from {:g} to {:g}".format(
            *card.reliable_input_snr
        )
    )
    lines = [
        f"**{card.summary}**",
        "",
        f"- Training data: {card.training_data}",
        f"- Reliable input: {reliable}",
    ]
    if card.measured_by:
        lines.append(f"- Measured with: `{card.measured_by}`")
    if card.metrics:
        conventions = {str(row.get("convention", "")) for row in card.metrics}
        shared = conventions.pop() if len(conventions) == 1 else None
        header = "| data | method | PSNR (dB) | SSIM |" + (
            " convention |" if shared is None else ""
        )
        lines += ["", header, "|---|---|---|---|" + ("---|" if shared is None else "")]
        lines += [_metric_row(row, with_convention=shared is None) for row in card.metrics]
        if shared:
            lines += ["", f"Convention: {shared}."]
    if card.limitations:
        lines += ["", "Limitations:", ""] + [f"- {item}" for item in card.limitations]
    return "\n".join(lines) + "\n"


def _metric_row(row: dict[str, Any], *, with_convention: bool = True) -> str:
    def num(key: str, spec: str) -> str:
        value = row.get(key)
        return format(value, spec) if isinstance(value, int | float) else "–"

    cells = [str(row["data"]), str(row["method"]), num("psnr", ".2f"), num("ssim", ".3f")]
    if with_convention:
        cells.append(str(row.get("convention", "")))
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
