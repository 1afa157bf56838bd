"""Requests multiplexed over one connection (protocol/mux.py): open, deliver in order, end, cancel,
unknown ids, and every open request failed when the connection goes."""

from __future__ import annotations

from typing import Any

from arenahub.protocol.mux import Mux, Queue


class Recorded:
    """A stream that writes down what is done to it."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def put_nowait(self, item: str) -> None:
        self.log.append(item)

    def close(self) -> None:
        self.log.append("closed")


def drain(queue: Queue[str]) -> list[str]:
    return [queue.get_nowait() for _ in range(queue.qsize())]


def test_each_request_gets_its_own_messages_in_order() -> None:
    mux: Mux[Queue[str], str] = Mux()
    a, b = mux.open("a", Queue()), mux.open("b", Queue())
    for request_id, item in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("b", "b2")]:
        assert mux.deliver(request_id, item) is (a if request_id == "a" else b)
    assert drain(a) == ["a1", "a2", "a3"] and drain(b) == ["b1", "b2"]
    assert len(mux) == 2 and "a" in mux and mux.ids() == ["a", "b"] and mux.unknown == 0


def test_a_message_for_a_request_not_open_is_counted_and_dropped() -> None:
    mux: Mux[Queue[str], str] = Mux()
    assert mux.deliver("never", "x") is None and mux.route("never") is None
    assert mux.unknown == 2 and len(mux) == 0 and "never" not in mux


def test_an_ended_request_leaves_closed_and_what_came_before_stays_readable() -> None:
    mux: Mux[Recorded, str] = Mux()
    stream = mux.open("r", Recorded())
    mux.deliver("r", "chunk")
    assert mux.end("r") is stream and stream.log == ["chunk", "closed"]
    assert "r" not in mux and mux.deliver("r", "late") is None and mux.unknown == 1
    assert stream.log == ["chunk", "closed"]


def test_ending_twice_says_the_second_time_that_it_was_not_open() -> None:
    # A cancel is sent to the other side only for a request still running: not after its answer ended it.
    mux: Mux[Recorded, str] = Mux()
    stream = mux.open("r", Recorded())
    assert mux.end("r") is stream
    assert mux.end("r") is None and mux.fail("r", "gone") is None
    assert stream.log == ["closed"]


def test_a_failed_request_gets_the_failure_last_after_its_stream_is_closed() -> None:
    mux: Mux[Recorded, str] = Mux()
    stream, other = mux.open("r", Recorded()), mux.open("s", Recorded())
    mux.deliver("r", "chunk")
    assert mux.fail("r", "gone") is stream
    assert stream.log == ["chunk", "closed", "gone"] and other.log == [] and mux.ids() == ["s"]


def test_when_the_connection_goes_every_open_request_fails_once() -> None:
    mux: Mux[Recorded, str] = Mux()
    ended = mux.open("ended", Recorded())
    mux.end("ended")
    open_ = [mux.open(str(n), Recorded()) for n in range(3)]
    mux.deliver("1", "chunk")
    mux.fail_all("gone")
    assert [s.log for s in open_] == [["closed", "gone"], ["chunk", "closed", "gone"], ["closed", "gone"]]
    assert ended.log == ["closed"] and len(mux) == 0
    mux.fail_all("again")  # nothing is open any more: nobody is failed twice
    assert [s.log[-1] for s in open_] == ["gone"] * 3


def test_a_stream_opened_during_the_failure_is_not_failed_with_it() -> None:
    # The table is taken before the streams are failed: a reader that opens a new request on being failed
    # (a retry on the same connection) keeps it.
    mux: Mux[Recorded, str] = Mux()

    class Retrying(Recorded):
        def put_nowait(self, item: str) -> None:
            super().put_nowait(item)
            mux.open("retry", Recorded())

    mux.open("r", Retrying())
    mux.fail_all("gone")
    assert mux.ids() == ["retry"]


def test_an_id_opened_again_is_taken_by_the_new_stream() -> None:
    mux: Mux[Queue[str], str] = Mux()
    mux.open("r", Queue())
    second = mux.open("r", Queue())
    assert mux.deliver("r", "x") is second and len(mux) == 1


def test_only_open_requests_are_kept() -> None:
    mux: Mux[Queue[str], str] = Mux()
    for n in range(1000):
        mux.open(str(n), Queue())
        mux.deliver(str(n), "end")
        mux.end(str(n))
        mux.deliver(str(n), "late")
    assert len(mux) == 0 and mux.ids() == [] and mux.unknown == 1000


async def test_a_plain_queue_is_read_as_usual_and_closing_it_keeps_what_it_holds() -> None:
    queue: Queue[str] = Queue()
    queue.put_nowait("a")
    queue.close()
    queue.put_nowait("gone")
    assert [await queue.get(), await queue.get()] == ["a", "gone"]
