"""The tab pool's requests (bridge/tabs.py): each on the tab that runs it, its messages in its own queue,
a cancel told to the tab only while it runs, and every open request failed when its tab goes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from arenahub.bridge.tabs import Tab, TabClosed, TabPool
from arenahub.protocol import tab


class Socket:
    """What a tab's socket is sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, data: str) -> None:
        self.sent.append(json.loads(data))


async def connected(pool: TabPool, tab_id: str) -> tuple[Tab, Socket]:
    ws = Socket()
    new = Tab(ws, tab_id)  # type: ignore[arg-type]
    new.protocol, new.facts = tab.TAB_PROTOCOL_VERSION, tab.PageFacts(page="arena")
    pool.add(new)
    return new, ws


def drain(queue: asyncio.Queue[Any]) -> list[Any]:
    return [queue.get_nowait() for _ in range(queue.qsize())]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_request_runs_on_its_tab_and_gets_its_own_messages_in_order() -> None:
    pool = TabPool()
    one, ws = await connected(pool, "one")
    a = pool.open(one, "a", tab.Task(call="create"))
    b = pool.open(one, "b", tab.Task(call="create"))
    for message in (tab.Started(id="a", status=200), tab.Chunk(id="b", data="b1"), tab.Chunk(id="a", data="a1"),
                    tab.Done(id="a")):
        assert pool.deliver(message.id, message)
    assert [type(m).__name__ for m in drain(a)] == ["Started", "Chunk", "Done"] and drain(b) == [tab.Chunk("b", "b1")]
    assert not pool.deliver("never", tab.Done(id="never"))
    await settle()
    assert [(m["type"], m["id"]) for m in ws.sent] == [("run", "a"), ("run", "b")]
    assert one.snapshot()["active_requests"] == 2


async def test_a_cancel_reaches_the_tab_only_while_the_request_runs() -> None:
    pool = TabPool()
    one, ws = await connected(pool, "one")
    pool.open(one, "done", tab.Task(call="create"))
    pool.open(one, "stopped", tab.Task(call="create"))
    pool.finish("done")
    pool.cancel("done")  # already over: nothing to stop
    pool.cancel("stopped")
    pool.cancel("stopped")
    await settle()
    assert [(m["type"], m["id"]) for m in ws.sent if m["type"] == "cancel"] == [("cancel", "stopped")]
    assert len(one.requests) == 0 and not pool.deliver("stopped", tab.Chunk(id="stopped", data="late"))


async def test_a_tab_that_goes_fails_its_open_requests_and_only_its_own() -> None:
    pool = TabPool()
    one, _ = await connected(pool, "one")
    two, _ = await connected(pool, "two")
    a, b = pool.open(one, "a", tab.Task(call="create")), pool.open(one, "b", tab.Task(call="create"))
    other = pool.open(two, "c", tab.Task(call="create"))
    pool.deliver("a", tab.Chunk(id="a", data="a1"))
    pool.remove(one, "the tab closed its connection")
    first, gone = drain(a)
    assert first == tab.Chunk("a", "a1") and isinstance(gone, TabClosed) and gone.reason.startswith("the tab")
    assert [type(m) for m in drain(b)] == [TabClosed] and drain(other) == []
    assert not pool.deliver("a", tab.Done(id="a")) and pool.deliver("c", tab.Done(id="c"))
    assert pool.tabs() == [two] and pool.pick() is two


async def test_new_work_goes_to_the_tab_with_the_fewest_requests_in_flight() -> None:
    pool = TabPool()
    one, _ = await connected(pool, "one")
    two, _ = await connected(pool, "two")
    pool.open(one, "a", tab.Task(call="create"))
    assert pool.pick() is two and pool.pick(prefer="one") is one
    pool.finish("a")
    assert pool.pick() is one
