"""Fake client sessions and helpers shared by the dispatch tests (test_dispatch*.py)."""

from __future__ import annotations

import asyncio
import time

import msgspec

from arenahub.platform.accounting.limits import Limits
from arenahub.platform.dispatch import Attempt, Dispatcher
from arenahub.platform.exchange import Exchange
from arenahub.platform.registry import LocalClientRegistry
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.protocol import frames
from arenahub.protocol.openai import parse_chat_request


class FakeSession:
    """Answers each request it is given with a scripted list of frames.

    Like a real session, a request holds a slot (counts in ``active``) until its End or Error
    arrives or it is finished or cancelled; ``deliver`` sends more frames later.
    """

    def __init__(self, client_id, script, max_concurrent=4, rpm=None, delay=0.0):
        self.client_id, self.script, self.max_concurrent = client_id, script, max_concurrent
        self.hello_max_concurrent = max_concurrent
        self.rpm, self.limits, self.limit_subject = rpm, Limits(rpm=rpm), f"client:{client_id}"
        self.delay = delay  # seconds before the scripted frames arrive
        self.models, self.available = {"m"}, True
        self.priority, self.weight, self.preferred_strategy = 0, 1, None
        self.admin_draining, self.self_draining, self.drain_reason = False, False, ""
        self.opened, self.cancelled, self.finished = [], [], []
        self.inflight = {}  # request id -> its queue
        self.limited_until = 0.0  # its upstream's 429, as ClientSession keeps it
        self.busy_until = 0.0  # another instance would not place work on it until then
        self.closed = False
        self.moving = False

    @property
    def active(self):
        return len(self.inflight)

    @property
    def draining(self):
        return self.admin_draining or self.self_draining

    def serves(self, model):
        return model in self.models

    def upstream_rate_limited(self, seconds):
        self.limited_until = max(self.limited_until, time.monotonic() + min(seconds, 3600))

    def upstream_wait(self):
        return max(0.0, self.limited_until - time.monotonic())

    def routed_around(self, seconds):
        self.busy_until = max(self.busy_until, time.monotonic() + seconds)

    def busy_wait(self):
        return max(0.0, self.busy_until - time.monotonic())

    def open(self, request_id, body, kind="chat.completions"):
        self.opened.append(request_id)
        self.inflight[request_id] = queue = asyncio.Queue()

        def answer():
            for item in self.script:
                self.deliver(request_id, item)

        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, answer)
        else:
            answer()
        return queue

    def deliver(self, request_id, item):
        queue = self.inflight.get(request_id)
        if queue is None:
            return
        frame = item(request_id) if callable(item) else item
        queue.put_nowait(frame)
        if not isinstance(frame, frames.Chunk):
            del self.inflight[request_id]

    def cancel(self, request_id, reason):
        self.cancelled.append(reason)
        self.inflight.pop(request_id, None)

    def finish(self, request_id):
        self.finished.append(request_id)
        self.inflight.pop(request_id, None)


def chunk(text):
    return lambda rid: frames.Chunk(id=rid, events=[[{"index": 0, "delta": {"content": text}}]])


def end(rid):
    return frames.End(id=rid)


def exchange(stream=True, model="m", id="r1"):
    key = ConsumerKey(id="key_1", name="k", key_hash="h", rpm=None, disabled=False, updated_at=None)
    body = msgspec.json.encode({"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]})
    return Exchange(id=id, key=key, request=parse_chat_request(body), body=body)


def dispatcher(*sessions, **settings):
    registry = LocalClientRegistry()
    for s in sessions:
        registry._sessions[s.client_id] = s
    return Dispatcher(registry, PlatformSettings(**settings))


async def collect(attempt: Attempt):
    out = []
    async for batch in attempt.batches():
        out.append([type(f).__name__ for f in batch])
    return out



class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def in_window(d, session):
    status = d.client_limits.status(session.limit_subject, session.limits, now=d.clock())
    return status.limit_requests - status.remaining_requests


async def serve(d, ex=None):
    """One request read to its end, as the consumer API does it."""
    attempt = await d.start(ex or exchange())
    try:
        await collect(attempt)
    finally:
        attempt.abandon("done")
    return attempt.session.client_id



def error(status, retryable=False, code="upstream_error"):
    return lambda rid: frames.Error(id=rid, code=code, message=f"status {status}", status=status,
                                    retryable=retryable)


async def settle():
    """Lets every task that can run, run (requests reach the queue, freed slots are offered)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def finish(attempt, request_id):
    """The client ends the answer, the consumer reads it all: the slot frees."""
    attempt.session.deliver(request_id, end)
    await collect(attempt)
    attempt.abandon("done")


