"""Long-lived background loops (the record writer, the key cache, ...) that say so when they crash.

Their loops catch only the failures they expect (a database that is away); anything else is a bug,
which ends the loop. ``watched`` makes that loud: the crash is logged with its traceback at once,
instead of waiting unseen in the task until shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("arenahub.background")
T = TypeVar("T")


def watched(work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """``asyncio.create_task(work, name=name)``, with a crash logged as an error."""
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_report)
    return task


def _report(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("background task %s stopped on an unexpected error: %r", task.get_name(), error, exc_info=error)
