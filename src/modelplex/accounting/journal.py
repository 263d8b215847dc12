"""The spill journal: an append-only JSONL file for usage the sink could not take (yet).

Owns: ``Journal`` — appending records and feedback (``append``: write + flush + fsync once per
batch; ``append_nowait``: a buffered write for the recorder's hot path, made durable by the next
``sync``), rotation for replay (``rotate`` renames the active file to ``<path>.replay-NNNNNN`` so new
spills never mix with a replay in progress), reading replay files back in batches (a torn last
line from a crash is skipped and counted in ``corrupt_lines``) and deleting a file once replayed.

One line is ``{"t": "r", "v": {UsageRecord fields}}`` or ``{"t": "f", "v": {FeedbackEntry fields}}``.
One process owns a journal: an exclusive ``flock`` on ``<path>.lock`` refuses a second owner
(``JournalLockedError``); give each worker process its own ``journal_path``.

Must not touch: the sink, the queue (``recorder`` decides what to spill and when to replay).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

import orjson

from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks.base import FeedbackEntry

log = logging.getLogger("modelplex.accounting.journal")

Entry = UsageRecord | FeedbackEntry

_RECORD_FIELDS = frozenset(f.name for f in fields(UsageRecord))
_FEEDBACK_FIELDS = frozenset(f.name for f in fields(FeedbackEntry))
_REPLAY_RE = re.compile(r"\.replay-(\d+)$")

try:  # POSIX advisory locks; elsewhere a journal is not guarded against a second owner
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class JournalLockedError(RuntimeError):
    """Another process (or another ``Journal`` in this one) owns this journal file."""


def encode(entry: Entry) -> bytes:
    """One journal line (with its newline)."""
    kind = "f" if isinstance(entry, FeedbackEntry) else "r"
    return orjson.dumps({"t": kind, "v": entry}) + b"\n"


def decode(line: bytes) -> Entry:
    """Parse one journal line; raises ``ValueError`` on anything malformed."""
    obj = orjson.loads(line)
    if not isinstance(obj, dict) or not isinstance(obj.get("v"), dict):
        raise ValueError("not a journal entry")
    v: dict[str, Any] = obj["v"]
    if obj.get("t") == "r":
        return UsageRecord(**{k: val for k, val in v.items() if k in _RECORD_FIELDS})
    if obj.get("t") == "f":
        return FeedbackEntry(**{k: val for k, val in v.items() if k in _FEEDBACK_FIELDS})
    raise ValueError(f"unknown journal entry type {obj.get('t')!r}")


class Journal:
    """An append-only JSONL spill file at ``path`` (created on first write), safe to use from any thread."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.fsync = fsync
        self.corrupt_lines = 0
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None
        self._lock_fh: IO[bytes] | None = None
        self._dirty = False
        self._closed = False

    # ------------------------------------------------------------------ ownership

    def _own(self) -> None:
        if self._closed:
            raise RuntimeError(f"journal {self.path} is closed")
        if self._lock_fh is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path.with_name(self.path.name + ".lock"), "ab")  # noqa: SIM115 - held until close
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                raise JournalLockedError(f"journal {self.path} is in use by another recorder; give each "
                                         "process its own accounting.journal_path") from None
        self._lock_fh = fh

    def _open(self) -> IO[bytes]:
        self._own()
        if self._fh is None:
            self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open for appends
        return self._fh

    # ------------------------------------------------------------------ appending

    def append(self, entries: Iterable[Entry]) -> int:
        """Append entries and make them durable (one flush + fsync). Returns how many were written."""
        data = [encode(e) for e in entries]
        if not data:
            return 0
        with self._lock:
            fh = self._open()
            fh.write(b"".join(data))
            self._sync_locked()
        return len(data)

    def append_nowait(self, entry: Entry) -> None:
        """Append one entry to the file buffer (no fsync); ``sync()`` makes it durable."""
        line = encode(entry)
        with self._lock:
            self._open().write(line)
            self._dirty = True

    def sync(self) -> None:
        """Flush buffered appends to the file and fsync them (no-op when nothing is pending)."""
        with self._lock:
            if self._dirty:
                self._sync_locked()

    def _sync_locked(self) -> None:
        fh = self._fh
        if fh is None:
            return
        fh.flush()
        if self.fsync:
            os.fsync(fh.fileno())
        self._dirty = False

    @property
    def rejected_path(self) -> Path:
        """Where entries the sink refused as invalid are kept (``<path>.rejected``), for inspection."""
        return self.path.with_name(self.path.name + ".rejected")

    def reject(self, entry: Entry) -> None:
        """Keep an entry the sink refused (never replayed automatically)."""
        line = encode(entry)
        with self._lock:
            self._own()
            with open(self.rejected_path, "ab") as fh:
                fh.write(line)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())

    # ------------------------------------------------------------------ replay

    def replay_files(self) -> list[Path]:
        """Rotated files waiting for replay, oldest first."""
        found = []
        for p in self.path.parent.glob(self.path.name + ".replay-*"):
            m = _REPLAY_RE.search(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def has_pending(self) -> bool:
        """Anything to replay: a rotated file, or a non-empty active file."""
        with self._lock:
            if self._dirty or self._active_size() > 0:
                return True
        return bool(self.replay_files())

    def _active_size(self) -> int:
        if self._fh is not None:
            self._fh.flush()
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def rotate(self) -> list[Path]:
        """Close the active file and move it aside for replay; returns every replay file, oldest first."""
        with self._lock:
            self._own()
            if self._fh is not None:
                self._sync_locked()
                self._fh.close()
                self._fh = None
            if self._active_size() > 0:
                existing = self.replay_files()
                last = int(_REPLAY_RE.search(existing[-1].name).group(1)) if existing else 0  # type: ignore[union-attr]
                target = self.path.with_name(f"{self.path.name}.replay-{last + 1:06d}")
                os.replace(self.path, target)
                self._fsync_dir()
        return self.replay_files()

    def _fsync_dir(self) -> None:
        if not self.fsync or not hasattr(os, "O_DIRECTORY"):
            return
        try:
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def read(self, path: Path) -> Iterator[Entry]:
        """The entries of one replay file; malformed lines are skipped and counted in ``corrupt_lines``."""
        bad = 0
        with open(path, "rb") as fh:
            for raw in fh:
                line = raw.strip()
                if not line:
                    continue
                try:
                    yield decode(line)
                except (ValueError, TypeError):
                    bad += 1
        if bad:
            self.corrupt_lines += bad
            log.warning("journal %s: skipped %d malformed line(s) (a write torn by a crash?)", path, bad)

    def batches(self, path: Path, size: int) -> Iterator[list[Entry]]:
        batch: list[Entry] = []
        for entry in self.read(path):
            batch.append(entry)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def discard(self, path: Path) -> None:
        """Delete a fully replayed file."""
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Make pending appends durable, release the file and its lock. Idempotent."""
        with self._lock:
            if self._fh is not None:
                self._sync_locked()
                self._fh.close()
                self._fh = None
            if self._lock_fh is not None:
                if fcntl is not None:
                    fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
                self._lock_fh.close()
                self._lock_fh = None
            self._closed = True

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"


__all__ = ["Entry", "Journal", "JournalLockedError", "decode", "encode"]
