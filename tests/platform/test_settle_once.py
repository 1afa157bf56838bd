"""Every request that passed authentication is settled and recorded once, whatever fails on its way
(issue 11, item 4): here, the book itself failing to settle."""

from __future__ import annotations

import msgspec
import pytest

from arenahub.platform.billing import Kind, Ledger
from arenahub.platform.exchange import Exchange
from arenahub.platform.runtime import Platform
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.protocol.openai import parse_chat_request


def exchange() -> Exchange:
    key = ConsumerKey(id="key_1", name="k", key_hash="h", rpm=None, disabled=False,
                      updated_at=None)  # type: ignore[arg-type]
    body = msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    ex = Exchange(id="r1", key=key, request=parse_chat_request(body), body=body)
    ex.completion_parts = ["an answer"]
    ex.completed = True
    return ex


@pytest.fixture
def platform(tmp_path) -> Platform:
    return Platform(PlatformSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"))


async def test_a_settle_that_fails_still_leaves_the_record_and_releases_the_credit(platform: Platform, monkeypatch):
    ledger: Ledger = platform.accounting.ledger
    ledger.topup("key_1", 10_000_000)
    ex = exchange()
    ex.reservation = ledger.reserve("key_1", ex.id, 1_000_000)

    async def broken(*args: object) -> int:
        raise RuntimeError("a bug in the book")
    monkeypatch.setattr(platform.accounting, "close", broken)
    platform.exchange_started(ex)
    await platform.exchange_finished(ex)
    writer = platform.writer
    assert [r["id"] for r in writer._pending] == ["r1"]  # the record is with the writer
    assert ledger.account("key_1").held == 0  # nothing is held until a restart
    assert [e.kind for e in writer._entries + ledger.drain_new_entries()][-1] is Kind.RELEASE


async def test_an_absurd_cost_is_bounded_not_an_error(platform: Platform):
    ledger: Ledger = platform.accounting.ledger
    ledger.topup("key_1", 10_000_000)
    ex = exchange()
    ex.reservation = ledger.reserve("key_1", ex.id, 1_000_000)
    charge = await platform.accounting.close(ex, 10**15, 10**15)
    assert charge == 10_000_000  # capped at what the key had: never an InvalidAmount
