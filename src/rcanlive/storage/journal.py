"""Incremental reading of the append-only JSON-lines logs (``volumes.jsonl``, ...).

A reader keeps the file offset of the last complete line it read, so that reading
what another process appended since costs only the new lines, never a re-parse of
the whole file. An unterminated last line (a writer killed mid-line, or a line
being written right now) is left for the next read; a complete line that is not a
JSON record is counted as damaged and skipped, never a reason to stop reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

KEY_FIELDS = ("t", "p", "c")
VOLUMES_LOG = "volumes.jsonl"
RESTORED_LOG = "restored.jsonl"


def _is_record(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k), int) and not isinstance(value.get(k), bool) for k in KEY_FIELDS
    )


class Journal:
    """Reader of an append-only JSON-lines log of volume records.

    Parameters
    ----------
    path
        The log file (it may not exist yet).

    Attributes
    ----------
    records
        Every record read so far, in file order (each a dict with int ``t``, ``p``,
        ``c``).
    bad_lines
        1-based numbers of complete lines that are not such a record (damaged).
    lines
        Complete lines read so far.
    torn
        Whether the file ended, at the last read, with an unterminated line.
    exists
        Whether the file existed at the last read.
    resets
        How often the file was found replaced or shortened and read again from the
        start (:attr:`records` then holds only the new file's records).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.records: list[dict[str, Any]] = []
        self.bad_lines: list[int] = []
        self.lines = 0
        self.torn = False
        self.exists = False
        self.resets = 0
        self._inode: tuple[int, int] | None = None

    def _reset(self) -> None:
        self.offset, self.lines, self.torn = 0, 0, False
        self.records, self.bad_lines = [], []
        self.resets += 1

    def read_new(self) -> list[dict[str, Any]]:
        """Read the complete lines appended since the last call; return their records.

        A log that was replaced or shortened since the last read (e.g. rebuilt by
        ``rcanlive check --repair``) is read again from the start.
        """
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            self.exists = self.torn = False
            return []
        with f:
            st = os.fstat(f.fileno())
            inode = (st.st_dev, st.st_ino)
            if (self._inode is not None and inode != self._inode) or st.st_size < self.offset:
                self._reset()
            self._inode, self.exists = inode, True
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n")
        self.torn = len(data) > end + 1
        if end < 0:
            return []
        self.offset += end + 1
        new: list[dict[str, Any]] = []
        for line in data[:end].split(b"\n"):
            self.lines += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if _is_record(record):
                new.append(record)
            else:
                self.bad_lines.append(self.lines)
        self.records.extend(new)
        return new


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """Every record of the log at ``path`` (damaged lines and a torn last line skipped)."""
    journal = Journal(path)
    journal.read_new()
    return journal.records


def key_of(record: dict[str, Any]) -> tuple[int, int, int]:
    """``(t, p, c)`` of a record."""
    return (int(record["t"]), int(record["p"]), int(record["c"]))
