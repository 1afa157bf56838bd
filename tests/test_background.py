"""A background loop that crashes says so at once, with its traceback."""

import asyncio
import logging

from arenahub.background import watched


async def test_a_crash_is_logged_with_the_task_name_and_a_cancel_is_not(caplog):
    caplog.set_level(logging.ERROR, "arenahub.background")

    async def broken() -> None:
        raise KeyError("a bug")

    task = watched(broken(), "record-writer")
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    (record,) = caplog.records
    assert "record-writer" in record.getMessage() and "a bug" in record.getMessage() and record.exc_info
    caplog.clear()
    idle = watched(asyncio.sleep(10), "idle")
    idle.cancel()
    await asyncio.gather(idle, return_exceptions=True)
    await asyncio.sleep(0)
    assert caplog.records == []
