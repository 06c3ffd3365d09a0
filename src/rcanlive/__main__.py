"""``python -m rcanlive`` runs the CLI."""

from __future__ import annotations

import sys

from rcanlive.cli import main

sys.exit(main())
