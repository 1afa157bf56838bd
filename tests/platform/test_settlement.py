"""Settlement (settlement.py) gives back what admission took, once: the credit reservation, the rate-limit
ticket and the record, whoever calls and however often, and whatever fails on the way."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from arenahub.platform.accounting.credit import Accounting
from arenahub.platform.accounting.limits import Admitted, Limits, LocalLimitStore, Ticket
from arenahub.platform.billing import Kind, Ledger
from arenahub.platform.claims import UsageClaims
from arenahub.platform.exchange import Exchange
from arenahub.platform.records import RecordWriter, RequestRecord
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.settlement import Settlement
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.platform.storage.db import create_engine
from arenahub.protocol.errors import ApiError
from arenahub.protocol.openai import parse_chat_request


class Metrics:
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.gaps: list[str] = []

    def request_finished(self, record: RequestRecord) -> None:
        self.records.append(record)

    def usage_claim_gap(self, client_id: str) -> None:
        self.gaps.append(client_id)


class CountingLimits(LocalLimitStore):
    def __init__(self) -> None:
        super().__init__()
        self.finished: list[tuple[Ticket, int]] = []

    async def finish(self, ticket: Ticket, actual_tokens: int) -> None:
        self.finished.append((ticket, actual_tokens))
        await super().finish(ticket, actual_tokens)


class Books:
    """A settlement over the real accounting, writer and limits (nothing is written to the database)."""

    def __init__(self, tmp_path: Path, settings: PlatformSettings) -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
        self.accounting = Accounting(engine)
        self.writer = RecordWriter(engine, ledger_entries=self.accounting.drain)
        self.limits = CountingLimits()
        self.metrics = Metrics()
        self.claims = UsageClaims()
        self.settings = settings
        self.settlement = Settlement(self.accounting, self.writer, self.limits, self.metrics, self.claims,
                                     lambda: self.settings)
        self.ledger: Ledger = self.accounting.ledger
        self.ledger.topup("key_1", 10_000_000)

    async def admitted(self, id: str = "r1", *, answer: str = "an answer") -> Exchange:
        """An exchange as admission leaves it (a ticket and a reservation), and answered."""
        key = ConsumerKey(id="key_1", name="k", key_hash="h", rpm=None, disabled=False,
                          updated_at=None)  # type: ignore[arg-type]
        body = msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        ex = Exchange(id=id, key=key, request=parse_chat_request(body), body=body, client_id="cl_1")
        admission = await self.limits.admit("key_1", Limits(max_concurrent=1))
        assert isinstance(admission, Admitted)
        ex.ticket = admission.ticket
        ex.reservation = self.ledger.reserve("key_1", ex.id, 1_000_000)
        ex.completion_parts = [answer]
        ex.completed = True
        return ex

    def entries(self) -> list[Kind]:
        return [e.kind for e in self.writer._entries + self.ledger.drain_new_entries()]

    def records(self) -> list[str]:
        return [r["id"] for r in self.writer._pending]


@pytest.fixture
def books(tmp_path: Path) -> Books:
    return Books(tmp_path, PlatformSettings())


async def test_concurrent_calls_settle_once(books: Books, monkeypatch: pytest.MonkeyPatch) -> None:
    ex = await books.admitted()
    close = books.accounting.close
    closes = 0

    async def slow_close(ex: Exchange, prompt_tokens: int, completion_tokens: int) -> int | None:
        nonlocal closes
        closes += 1
        await asyncio.sleep(0.01)  # the other calls come in while the first one is settling
        return await close(ex, prompt_tokens, completion_tokens)
    monkeypatch.setattr(books.accounting, "close", slow_close)

    settled = await asyncio.gather(*(books.settlement.settle(ex) for _ in range(5)))
    assert sorted(settled) == [False, False, False, False, True]
    assert closes == 1
    assert books.entries().count(Kind.SETTLE) == 1
    assert books.ledger.account("key_1").held == 0
    assert books.records() == ["r1"]
    assert [r.id for r in books.metrics.records] == ["r1"]
    assert len(books.limits.finished) == 1 and ex.ticket is not None and ex.ticket.closed
    assert await books.settlement.settle(ex) is False  # and later calls do nothing either
    assert len(books.writer._pending) == 1


async def test_a_failing_accounting_close_still_records_and_releases(books: Books,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ex = await books.admitted()

    async def broken(*args: object) -> int:
        raise RuntimeError("a bug in the book")
    monkeypatch.setattr(books.accounting, "close", broken)

    assert await books.settlement.settle(ex) is True
    assert books.records() == ["r1"]  # the record is with the writer
    assert books.ledger.account("key_1").held == 0  # nothing is held until a restart
    assert books.entries()[-1] is Kind.RELEASE
    assert ex.cost is None  # nothing was charged
    assert len(books.limits.finished) == 1  # and the key's concurrency slot is free again
    assert isinstance(await books.limits.admit("key_1", Limits(max_concurrent=1)), Admitted)


async def test_the_ticket_is_finished_with_the_tokens_counted_and_prompts_kept_only_when_stored(
        tmp_path: Path) -> None:
    books = Books(tmp_path, PlatformSettings())
    ex = await books.admitted()
    await books.settlement.settle(ex)
    usage = ex.usage()
    assert books.limits.finished == [(ex.ticket, usage["prompt_tokens"] + usage["completion_tokens"])]
    assert books.writer._contents == []

    books.settings = replace(books.settings, store_prompts=True)  # a live setting: read at each settle
    again = await books.admitted("r2", answer="kept")
    await books.settlement.settle(again)
    assert [c["answer"] for c in books.writer._contents] == ["kept"]


async def test_a_usage_claim_far_from_the_count_is_noted(books: Books) -> None:
    ex = await books.admitted()
    ex.claimed_usage = {"prompt_tokens": 5_000, "completion_tokens": 5_000}
    await books.settlement.settle(ex)
    assert books.metrics.gaps == ["cl_1"]
    view = books.claims.view("cl_1")
    assert view is not None and view["gaps"] == 1


def test_a_refused_request_is_recorded_and_counted(books: Books) -> None:
    key = ConsumerKey(id="key_1", name="k", key_hash="h", rpm=None, disabled=False,
                      updated_at=None)  # type: ignore[arg-type]
    err = ApiError("no such model", status=404, code="model_not_found")
    books.settlement.refused(key, err, 0.0, model="m" * 300, stream=True)
    (record,) = books.writer._pending
    assert (record["status"], record["error_code"], record["model"], record["stream"]) == (
        404, "model_not_found", "m" * 200, True)
    assert [r.status for r in books.metrics.records] == [404]
