"""The spill journal: an append-only JSONL file for usage the sink could not take (yet).

Owns: ``Journal`` — appending records and feedback (``append``: write + flush + fsync once per
batch; ``append_nowait``: a buffered write for the recorder's hot path, made durable by the next
``sync``), rotation for replay (``rotate`` renames the active file to ``<path>.replay-NNNNNN`` so new
spills never mix with a replay in progress), reading replay files back in batches (a torn last
line from a crash is skipped and counted in ``corrupt_lines``) and deleting a file once replayed.

One line is ``{"t": "r", "v": {UsageRecord fields}}`` or ``{"t": "f", "v": {FeedbackEntry fields}}``.
One process owns a journal file: an exclusive ``flock`` on ``<file>.lock``. Processes that share a
configured path (``modelplex serve --workers N``, replicas started in one directory) therefore take
slots: the first owns ``<path>``, the next ``<path>.1``, ``<path>.2`` ... (up to ``MAX_SLOTS``; only
when every slot is held is it ``JournalLockedError``). ``rotate`` also adopts what a process that is
gone left in another slot (its file lock is free), so a crashed worker's spills are replayed by any
live one, whichever slot it took.

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


def _ends_torn(path: Path) -> bool:
    """Whether ``path`` is non-empty and its last byte is not a newline (a line cut by a crash)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:
        return False


class JournalLockedError(RuntimeError):
    """Every slot of this journal is owned by another process (or another ``Journal`` in this one)."""


MAX_SLOTS = 64
"""Journal files one configured path can serve: processes sharing the path take ``<path>``, ``<path>.1`` ..."""


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
        self.base = Path(path).expanduser()
        """The configured path; ``path`` is the slot this process owns (``base`` itself unless it was taken)."""
        self.path = self.base
        self.fsync = fsync
        self.corrupt_lines = 0
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None
        self._lock_fh: IO[bytes] | None = None
        self._dirty = False
        self._closed = False

    # ------------------------------------------------------------------ ownership

    def _slot(self, k: int) -> Path:
        return self.base if k == 0 else self.base.with_name(f"{self.base.name}.{k}")

    @staticmethod
    def _try_lock(path: Path) -> IO[bytes] | None:
        """The open, exclusively locked ``<path>.lock``, or ``None`` when another owner holds it."""
        fh = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115 - held until released
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                return None
        return fh

    @staticmethod
    def _release(fh: IO[bytes]) -> None:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()

    def _own(self) -> None:
        """Take the first free slot (``base``, then ``base.1`` ...); ``path`` becomes that slot."""
        if self._closed:
            raise RuntimeError(f"journal {self.base} is closed")
        if self._lock_fh is not None:
            return
        self.base.parent.mkdir(parents=True, exist_ok=True)
        for k in range(MAX_SLOTS):
            fh = self._try_lock(self._slot(k))
            if fh is not None:
                self._lock_fh, self.path = fh, self._slot(k)
                if k:
                    log.info("journal %s is in use by another process; this one spills to %s", self.base, self.path)
                return
        raise JournalLockedError(f"all {MAX_SLOTS} slots of journal {self.base} are in use by other recorders")

    def _open(self) -> IO[bytes]:
        self._own()
        if self._fh is None:
            fh = open(self.path, "ab")  # noqa: SIM115 - kept open for appends
            if _ends_torn(self.path):  # a crash cut the last line: end it, or the next entry joins it
                fh.write(b"\n")
            self._fh = fh
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
        """Rotated files of this process's slot waiting for replay, oldest first."""
        return _replay_files(self.path)

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
        """Close the active file and move it aside for replay, after adopting what processes that are
        gone left in other slots; returns every replay file, oldest first."""
        with self._lock:
            self._own()
            if self._fh is not None:
                self._sync_locked()
                self._fh.close()
                self._fh = None
            moved = self._adopt_orphans()
            if self._active_size() > 0:
                self._move_to_replay(self.path)
                moved = True
            if moved:
                self._fsync_dir()
        return self.replay_files()

    def _move_to_replay(self, source: Path) -> None:
        existing = self.replay_files()
        last = int(_REPLAY_RE.search(existing[-1].name).group(1)) if existing else 0  # type: ignore[union-attr]
        os.replace(source, self.path.with_name(f"{self.path.name}.replay-{last + 1:06d}"))

    def _slots_with_files(self) -> set[int]:
        """The slots that have an active or a replay file (read from one directory listing)."""
        base = self.base.name
        found: set[int] = set()
        try:
            names = os.listdir(self.base.parent)
        except OSError:
            return found
        for name in names:
            if name == base or name.startswith(base + ".replay-"):
                found.add(0)
            elif name.startswith(base + "."):
                head = name[len(base) + 1:].split(".", 1)[0]
                if head.isdigit() and 0 < int(head) < MAX_SLOTS and not name.endswith((".lock", ".rejected")):
                    found.add(int(head))
        return found

    def _adopt_orphans(self) -> bool:
        """Move the active and replay files of every other slot whose lock is free (its process is gone)
        into this slot's replay sequence. Returns whether anything moved."""
        moved = False
        for k in sorted(self._slots_with_files()):
            slot = self._slot(k)
            if slot == self.path:
                continue
            fh = self._try_lock(slot)
            if fh is None:  # a live process owns it and replays it itself
                continue
            try:
                for f in [*_replay_files(slot), *([slot] if slot.exists() and slot.stat().st_size else [])]:
                    self._move_to_replay(f)
                    moved = True
            finally:
                self._release(fh)
            log.info("journal %s: adopted the unreplayed spills of %s (its process is gone)", self.path, slot)
        return moved

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
                self._release(self._lock_fh)
                self._lock_fh = None
            self._closed = True

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"


def _replay_files(path: Path) -> list[Path]:
    found = []
    for p in path.parent.glob(path.name + ".replay-*"):
        m = _REPLAY_RE.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


__all__ = ["MAX_SLOTS", "Entry", "Journal", "JournalLockedError", "decode", "encode"]
