"""Flow control of one answer (flow.Inbox): the window, its grants, the bound, and the slow consumer."""

import asyncio

from arenahub.platform.flow import Inbox
from arenahub.protocol import frames


def chunk(n: int = 0) -> frames.Chunk:
    return frames.Chunk(id="r", events=[[{"index": 0, "delta": {"content": "x" * n}}]])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_window_is_granted_back_as_the_consumer_takes_half_of_it():
    grants: list[int] = []
    inbox = Inbox(1000, grants.append, slow_consumer_seconds=60)
    for _ in range(4):
        inbox.put_frame(chunk(), 200)
    assert inbox.credit == 200 and inbox.buffered == 800
    inbox.get_nowait()
    inbox.get_nowait()
    assert grants == []  # 400 taken: not yet half the window
    inbox.get_nowait()
    assert grants == [600] and inbox.credit == 800 and inbox.buffered == 200


async def test_a_client_past_its_window_fills_the_inbox_until_the_consumer_takes():
    inbox = Inbox(1000, lambda n: None, slow_consumer_seconds=60)
    assert inbox.bound == 1000 + frames.MAX_FRAME_BYTES  # the window, and the one frame that may cross it
    inbox.put_frame(chunk(), inbox.bound)
    assert not inbox.over_bound
    inbox.put_frame(chunk(), 200)
    assert inbox.over_bound
    waiter = asyncio.ensure_future(inbox.room())
    await asyncio.sleep(0)
    assert not waiter.done()
    inbox.get_nowait()
    await asyncio.sleep(0)
    assert waiter.done() and not inbox.over_bound


async def test_end_and_error_frames_do_not_count_against_the_window():
    inbox = Inbox(1000, lambda n: None, slow_consumer_seconds=60)
    inbox.put_frame(frames.End(id="r"), 5000)
    assert inbox.credit == 1000 and inbox.buffered == 0 and not inbox.over_bound
    assert isinstance(inbox.get_nowait(), frames.End)


async def test_a_consumer_that_holds_its_client_back_too_long_in_all_is_stalled():
    clock = Clock()
    inbox = Inbox(1000, lambda n: None, slow_consumer_seconds=0.2, clock=clock)
    stalled: list[bool] = []
    inbox.on_stalled = lambda: stalled.append(True)
    for _ in range(5):
        inbox.put_frame(chunk(), 200)  # the window is used up: the client is held back
    clock.now = 0.1
    for _ in range(5):
        inbox.get_nowait()  # the consumer catches up: released after 0.1 s
    assert inbox.held_seconds == 0.1 and inbox.credit > 0
    await asyncio.sleep(0.25)
    assert stalled == []  # the timer was disarmed on release
    for _ in range(5):
        inbox.put_frame(chunk(), 200)  # held again: 0.1 s of its 0.2 s is left
    await asyncio.sleep(0.05)
    assert stalled == []
    await asyncio.sleep(0.1)
    assert stalled == [True] and inbox.stalled


async def test_a_closed_inbox_grants_nothing_holds_nothing_and_frees_the_tunnel():
    grants: list[int] = []
    inbox = Inbox(1000, grants.append, slow_consumer_seconds=0.05)
    inbox.on_stalled = lambda: grants.append(-1)
    for _ in range(2):
        inbox.put_frame(chunk(), inbox.bound)
    assert inbox.over_bound
    inbox.close()
    assert not inbox.over_bound
    while not inbox.empty():
        inbox.get_nowait()
    await asyncio.sleep(0.1)
    assert grants == []
