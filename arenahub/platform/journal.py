"""A local write-ahead journal: lines appended in order, written and synced to disk by one thread,
with the appends that arrive together sharing one fsync (group commit).

The record writer (records.py) puts the books in it, the ledger's entries and the request records,
and the request path awaits ``synced()`` before the last bytes of an answer, so an answer the
consumer saw complete is on disk even when the process is killed the next moment. The database
gets the same lines in batches, off the request path; once it has them (``checkpoint``), the
journal's files that hold only those lines are deleted. At start, the journals a stopped process
left behind (``leftovers``) are replayed into the database and then deleted.

Each process writes files of its own, ``<id>.<n>.jsonl``, and holds an exclusive lock on
``<id>.lock`` while it runs: a starting platform takes only the journals whose lock is free (their
process is gone), so several platforms may share a data folder.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("arenahub.platform.journal")

# A segment that reaches this size is closed and a new one begun, so the database's progress can
# delete the old one while requests keep appending.
SEGMENT_BYTES = 4 * 1024 * 1024
# While answers overlap (a round lately had company: lines that came while it wrote, or more than
# one line), rounds begin at least this far apart, so more answers share each fsync. A lone
# request (one at a time) never waits for it.
GATHER_SECONDS = 0.002
COMPANY_SECONDS = 0.05  # how long a round with company counts as "lately"
# Lines nobody waits for (a failed request's record, say) are written at least this often.
IDLE_SECONDS = 0.1
_sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class Progress:
    """A counter that only grows, and the futures waiting for it to reach their number."""

    def __init__(self) -> None:
        self.value = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()  # targets in the order they grew

    async def reach(self, target: int) -> None:
        if target <= self.value:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((target, future))
        await future

    def advance(self, value: int) -> None:
        self.value = max(self.value, value)
        while self._waiting and self._waiting[0][0] <= self.value:
            _, future = self._waiting.popleft()
            if not future.done():  # its waiter may have been cancelled (the consumer left)
                future.set_result(None)


class Journal:
    """Append-only lines on local disk; see the module docstring.

    ``append`` is synchronous and cheap (the line joins a buffer); ``synced()`` returns once every
    line appended before the call is written and fsynced. One thread of its own writes: a round
    takes everything appended so far, writes it and fsyncs once (group commit). It is woken by
    ``synced()`` (lines nobody waits for go within IDLE_SECONDS). While requests overlap, rounds
    start at least ``gather_seconds`` apart (see GATHER_SECONDS): an fsync costs the machine about
    0.1 ms of CPU, which many answers then share.
    """

    def __init__(self, directory: Path, *, fsync: bool = True, segment_bytes: int = SEGMENT_BYTES,
                 gather_seconds: float = GATHER_SECONDS) -> None:
        self.directory = directory
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._gather = gather_seconds if fsync else 0.0  # without fsyncs a round is cheap: no need to wait
        self._name = f"{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(3)}"
        self.synced_lines = Progress()  # number of the last line on disk (read and advanced on the loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Shared with the writing thread, under the lock:
        self._lock = threading.Lock()
        self._buffer: list[bytes] = []
        self.appended = 0  # number of the last line appended
        self._safe = 0  # lines up to this number are in the database: their segments may go
        self._closing = False
        self._wake = threading.Event()
        self._idle = False  # the thread is waiting for _wake (or about to): set it to start a round
        # The writing thread's own:
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment = 0
        self._size = 0  # bytes in the current segment
        self._last = 0  # number of the last line in the current segment
        self._closed_segments: list[tuple[Path, int]] = []  # (path, number of its last line)
        self._broken = False  # a write failed part way: the next one starts a new segment
        self._deleted_to = 0  # the checkpoint the last round acted on
        self.syncs = 0  # rounds that wrote, for the bench and the tests

    # -- the loop's side ------------------------------------------------------------------------
    def start(self) -> None:
        """Take this process's lock and start the writing thread (call it on the event loop)."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._take_lock()
            self._thread = threading.Thread(target=self._run, name="journal", daemon=True)
            self._thread.start()

    def append(self, line: bytes) -> int:
        """Queue one line (without a newline of its own); returns its number."""
        with self._lock:
            self._buffer.append(line + b"\n")
            self.appended += 1
            return self.appended

    async def synced(self) -> None:
        """Wait until every line appended before this call is on disk."""
        target = self.appended
        if self.synced_lines.value < target:
            self._kick()
            await self.synced_lines.reach(target)

    def checkpoint(self, line: int) -> None:
        """The lines up to ``line`` are in the database now: segments holding only those may be deleted."""
        with self._lock:
            if line <= self._safe:
                return
            self._safe = line
        self._kick()

    def _kick(self) -> None:
        if self._idle:  # a busy thread takes the new lines with its next round anyway
            self._wake.set()

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is left (for up to ``timeout`` s), stop, and delete the files when the database
        has every line; else keep them for the next start to replay."""
        if self._thread is None:
            return
        try:
            await asyncio.wait_for(self.synced(), timeout)
        except TimeoutError:
            log.error("the journal in %s could not be written at shutdown", self.directory)
        with self._lock:
            self._closing = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join, timeout)
        self._thread = None

    def _take_lock(self) -> None:
        """Create this process's lock file, locked (a quick open, on the loop at start)."""
        hidden = self.directory / f".{self._name}.lock"
        for attempt in range(3):
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(hidden, os.O_RDWR | os.O_CREAT, 0o600)
                break
            except FileNotFoundError:  # another platform's clean stop removed the empty folder just now
                if attempt == 2:
                    raise
        # Locked before it has its name, so no starting platform ever sees it unlocked.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(hidden, self.directory / f"{self._name}.lock")
        self._lock_fd = fd
        self._sync_directory()  # a start after a power cut must find the lock that names the segments

    # -- the I/O thread's side ------------------------------------------------------------------
    def _path(self, segment: int) -> Path:
        return self.directory / f"{self._name}.{segment:06d}.jsonl"

    def _rotate(self) -> None:
        """Close the current segment (kept until the database has its lines) and begin the next."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._closed_segments.append((self._path(self._segment), self._last))
        self._segment += 1
        self._fd = os.open(self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0
        self._broken = False
        self._sync_directory()  # the new file's name must survive a power cut too

    def _sync_directory(self) -> None:
        if self._fsync:
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def _run(self) -> None:
        assert self._loop is not None
        began = company = -COMPANY_SECONDS  # when the last round began, and the last one with company
        while True:
            self._idle = True  # before looking: an append after the look then sees it, and wakes us
            with self._lock:
                work = bool(self._buffer) or self._safe != self._deleted_to or self._closing
            if not work:
                self._wake.wait(IDLE_SECONDS)
            self._idle = False
            self._wake.clear()
            with self._lock:
                if self._closing and not self._buffer:
                    everything = self._safe >= self.appended
                    break
                if not self._buffer and self._safe == self._deleted_to:
                    continue
            now = time.monotonic()
            if now - company < COMPANY_SECONDS and now < began + self._gather:
                time.sleep(began + self._gather - now)  # let the answers ending about now join this round
            began = time.monotonic()
            with self._lock:
                lines = len(self._buffer)
                data, upto, safe = b"".join(self._buffer), self.appended, self._safe
                self._buffer.clear()
            self._write_until_done(data, upto, safe)
            if data:
                try:
                    self._loop.call_soon_threadsafe(self.synced_lines.advance, upto)
                except RuntimeError:  # the loop is closed: no one is waiting any more
                    pass
            if lines > 1 or self._buffer:
                company = time.monotonic()
        self._finish(everything)

    def _write_until_done(self, data: bytes, upto: int, safe: int) -> None:
        pause = 0.05
        while True:
            try:
                self._write(data, upto, safe)
                return
            except OSError as exc:  # a full or failing disk: answers wait until it can be written
                log.error("writing the journal in %s failed (%s); trying again in %.2f s", self.directory, exc, pause)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _write(self, data: bytes, upto: int, safe: int) -> None:
        full = self._size >= self._segment_bytes
        in_database = 0 < self._size and self._last <= safe  # then its lines need not be kept
        if self._fd is None or self._broken or full or in_database:
            self._rotate()
        assert self._fd is not None
        if data:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
                if self._fsync:
                    _sync(self._fd)
            except OSError:
                self._broken = True  # part of a line may be written: never append after it
                raise
            self._size += len(data)
            self._last = upto
            self.syncs += 1
        while self._closed_segments and self._closed_segments[0][1] <= safe:
            self._closed_segments.pop(0)[0].unlink(missing_ok=True)
        self._deleted_to = safe

    def _finish(self, everything: bool) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if everything:
            for path in [p for p, _ in self._closed_segments] + [self._path(self._segment)]:
                path.unlink(missing_ok=True)
            (self.directory / f"{self._name}.lock").unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if everything:
            _remove_if_empty(self.directory)

    # -- what stopped processes left ------------------------------------------------------------
    def leftovers(self) -> list[Leftover]:
        """The journals of processes that are gone, each locked by this one until discarded or released."""
        found = []
        for lock_path in sorted(self.directory.glob("*.lock")):
            if lock_path.name.startswith("."):
                continue
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except FileNotFoundError:  # another platform just replayed it
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino != os.stat(lock_path).st_ino:
                    raise FileNotFoundError(lock_path)
            except OSError:  # its process is alive (BlockingIOError), or the file went away meanwhile
                os.close(fd)
                continue
            found.append(Leftover(lock_path, fd))
        return found


class Leftover:
    """The journal of a process that stopped: its lines, oldest first, then ``discard()``."""

    def __init__(self, lock_path: Path, lock_fd: int) -> None:
        self.lock_path = lock_path
        self._lock_fd: int | None = lock_fd
        name = lock_path.name.removesuffix(".lock")
        self.segments = sorted(lock_path.parent.glob(f"{name}.*.jsonl"))

    def lines(self) -> Iterator[bytes]:
        """Every complete line; a last line cut short by the crash (never acknowledged) is left out."""
        for path in self.segments:
            with open(path, "rb") as f:
                for line in f:
                    if line.endswith(b"\n"):
                        yield line[:-1]

    def discard(self) -> None:
        """Its lines are in the database: delete its files."""
        for path in self.segments:
            path.unlink(missing_ok=True)
        self.lock_path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """Leave the files for the next start (the replay failed)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _remove_if_empty(directory: Path) -> None:
    """A clean stop leaves no folder behind (there is one per database)."""
    try:
        directory.rmdir()
    except OSError:  # another process's files are in it
        pass
