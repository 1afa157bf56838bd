"""Many requests over one connection, each by its id: the tunnel to a client (``frames``), the socket to a
browser tab (``tab``).

Each request opened on a connection has a stream, where what the other side sends for it waits for
whoever reads the answer. ``Mux`` keeps the open streams by request id. A message goes to the stream
of its id; one for an id not open here (its request ended already, or was never sent) is counted and
dropped. A request that ends in any way leaves at once, and its stream is closed (it releases what it
held for flow control). When the connection goes, every stream still open gets the failure, so no
reader waits for an answer that cannot come. The messages that open or cancel a request are the
connection's own (``frames.Request``, ``tab.Run``): the mux sends nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Stream(Protocol[T_contra]):
    """Where one request's messages wait for its reader."""

    def put_nowait(self, item: T_contra) -> None: ...

    def close(self) -> None:
        """The request is over: release what the stream holds back. What it holds stays readable."""


class Queue(asyncio.Queue[T]):
    """A stream without flow control: ending it has nothing to release."""

    def close(self) -> None:
        pass


S = TypeVar("S", bound=Stream[Any])


class Mux(Generic[S, T]):
    """The streams (``S``) of the requests open on one connection, by request id; ``T`` is what the
    streams take, the failures given to them included."""

    def __init__(self) -> None:
        self._open: dict[str, S] = {}
        self.unknown = 0  # messages for requests not open here

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._open

    def ids(self) -> list[str]:
        return list(self._open)

    def open(self, request_id: str, stream: S) -> S:
        """Take the request's messages into ``stream`` from now on. Ids are the opener's to keep unique
        on its connection; an id opened again is taken by the new stream."""
        self._open[request_id] = stream
        return stream

    def route(self, request_id: str) -> S | None:
        """The stream a message for ``request_id`` goes to; None (counted in ``unknown``) when none is open."""
        stream = self._open.get(request_id)
        if stream is None:
            self.unknown += 1
        return stream

    def deliver(self, request_id: str, item: T) -> S | None:
        """Queue ``item`` on its request's stream, and return the stream; None as for ``route``."""
        stream = self.route(request_id)
        if stream is not None:
            stream.put_nowait(item)
        return stream

    def end(self, request_id: str) -> S | None:
        """The request is over: its stream leaves, closed. Returns it when it was open (so that a cancel
        is sent to the other side only for a request that was still running)."""
        stream = self._open.pop(request_id, None)
        if stream is not None:
            stream.close()
        return stream

    def fail(self, request_id: str, failure: T) -> S | None:
        """End the request with ``failure`` as the last thing its reader gets."""
        stream = self.end(request_id)
        if stream is not None:
            stream.put_nowait(failure)
        return stream

    def fail_all(self, failure: T) -> None:
        """The connection is gone: end every open request with ``failure``."""
        streams, self._open = self._open, {}
        for stream in streams.values():
            stream.close()
            stream.put_nowait(failure)
