"""Helpers of the admin API tests: the app's state, its event loop, and real client sessions over the
in-process tunnel (the helpers every platform test shares are in ``tests/platform/support.py``)."""

from contextlib import AbstractContextManager
from typing import Any

from arenahub.platform.billing import Entry, Kind, Usage
from arenahub.platform.storage import billing_store
from arenahub.protocol import frames
from tests.platform import support
from tests.platform.support import call, platform_of

TOKEN = "adm-test-token"


def stop_following_client_changes(http):
    """The platform also applies stored client changes within a second; stop that, so that only the
    admin API's own immediate apply can make a live session change."""
    for task in platform_of(http)._tasks:
        if task.get_name() == "client-changes":
            http.portal.call(task.cancel)


def connected(http, client_id, api_key, models=("m1",)) -> AbstractContextManager[Any]:
    """A real client session over the in-process tunnel, with room for 10 requests."""
    return support.connected(http, client_id, api_key, models, max_concurrent=10)


def next_routing(ws):
    while not isinstance(frame := frames.decode(ws.receive_bytes()), frames.Routing):
        pass
    return frame


def chat(http, key):
    return http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                     json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]})


def serve(http, key_id, request_id, *, client_id, model, prompt, completion, charge):
    """A request served through the live ledger, as the request path records it."""
    ledger = platform_of(http).accounting.ledger
    reservation = ledger.reserve(key_id, request_id, charge, unlimited=False)
    ledger.settle(reservation, charge, client_id=client_id, model=model, usage=Usage(prompt, completion))


def served_earlier(http, key_id, request_id, at, *, client_id, model, prompt, completion, charge):
    """A request served on an earlier day, written straight to the book."""
    entries = [Entry(f"le_{request_id}_r", key_id, Kind.RESERVE, 0, charge, at, request_id=request_id),
               Entry(f"le_{request_id}_s", key_id, Kind.SETTLE, -charge, -charge, at, request_id=request_id,
                     client_id=client_id, model=model, prompt_tokens=prompt, completion_tokens=completion)]
    call(http, billing_store.insert_entries, platform_of(http).engine, entries)
