"""Live dashboard of photobleaching and input SNR, and its static report.

The model (:mod:`.model`) and the report (:mod:`.report`) need no Qt; the window
(:mod:`.window`, :mod:`.panels`) and the session runner (:mod:`.app`) import qtpy and
pyqtgraph, so they are not imported here.
"""

from __future__ import annotations

from .model import DashboardModel, LiveFeed, Snapshot, model_for_dataset, replay

__all__ = ["DashboardModel", "LiveFeed", "Snapshot", "model_for_dataset", "replay"]
