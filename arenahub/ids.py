"""Random ids (request ids, ledger entry ids): 128 bits from the OS's random source, like
``uuid.uuid4().hex``, at a fraction of its cost.

``uuid4`` makes one ``getrandom`` system call per id; the request path makes three ids a request,
which took about 5% of the platform's CPU a request (bench/). Here one call fetches the bits of
``BATCH`` ids at once. A forked child starts with a fresh buffer, so parent and child never share ids.
"""

from __future__ import annotations

import os
import threading

BATCH = 256
_ID_BYTES = 16
_buffer = b""
_at = 0
_lock = threading.Lock()  # the event loop is one thread, but a helper thread must not get the same bits


def new_id() -> str:
    """32 lowercase hex digits: 128 random bits, fresh from ``os.urandom``."""
    global _buffer, _at
    with _lock:
        if _at >= len(_buffer):
            _buffer, _at = os.urandom(_ID_BYTES * BATCH), 0
        start, _at = _at, _at + _ID_BYTES
        return _buffer[start:_at].hex()


def _forget() -> None:
    global _buffer, _at, _lock
    _buffer, _at, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget)
