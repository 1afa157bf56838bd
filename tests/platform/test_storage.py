"""Storage on both backends: migrations, clients, consumer keys, the key cache and the record writer."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from arenahub.platform.accounting import credentials
from arenahub.platform.accounting.keys import KeyCache
from arenahub.platform.records import RecordWriter, RequestRecord
from arenahub.platform.storage import accounts, db, schema
from arenahub.protocol.errors import InvalidApiKey


async def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``check()`` (sync or async) is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


def make_record(n: int, *, model: str = "gpt-test") -> RequestRecord:
    return RequestRecord(id=f"req_{n:06d}", created_at=accounts.utcnow(), key_id="key_1", client_id=None,
                         model=model, stream=n % 2 == 0, status=200, error_code=None, latency_ms=12.5,
                         ttft_ms=None, prompt_tokens=n, completion_tokens=2 * n, attempts=1)


async def record_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(schema.request_records.c.id).order_by(schema.request_records.c.id))
        return [r for (r,) in rows]


def count_commits(engine: AsyncEngine) -> list[int]:
    """A one-item list holding the number of transactions committed on ``engine`` from now on."""
    commits = [0]

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(_conn: Any) -> None:
        commits[0] += 1

    return commits


# --- migrations -------------------------------------------------------------------------------

def _describe(sync_conn: sa.Connection) -> dict[str, tuple[set[tuple[str, bool]], set[str]]]:
    inspector = sa.inspect(sync_conn)
    return {table: ({(c["name"], bool(c["nullable"])) for c in inspector.get_columns(table)},
                    {i["name"] for i in inspector.get_indexes(table) if i["name"]})
            for table in inspector.get_table_names()}


async def _versions(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [v for (v,) in await conn.execute(sa.text("SELECT version_num FROM alembic_version"))]


async def test_migrations_build_the_schema_on_a_fresh_database_and_can_run_again(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_describe) == {}, "the database should start empty"

        await db.migrate(engine)

        async with engine.connect() as conn:
            tables = await conn.run_sync(_describe)
        assert set(tables) == set(schema.metadata.tables) | {"alembic_version"}
        for name, table in schema.metadata.tables.items():
            columns, indexes = tables[name]
            # The migrations must build what schema.py describes: a change to one needs the other.
            assert columns == {(c.name, bool(c.nullable)) for c in table.columns}, name
            assert {i.name for i in table.indexes} <= indexes, name
        head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
        assert await _versions(engine) == [head]

        key_id, _ = await accounts.create_key(engine, name="kept")
        await db.migrate(engine)  # what every start of the platform does
        assert await _versions(engine) == [head]
        assert [k.id for k in await accounts.keys_changed_since(engine, None)] == [key_id]
    finally:
        await engine.dispose()


# --- clients ----------------------------------------------------------------------------------

async def test_a_client_authenticates_with_its_own_key_only(engine: AsyncEngine) -> None:
    client_id, api_key = await accounts.create_client(engine, name="alice's box", email="alice@example.org",
                                                      rpm=30, max_concurrent=2)
    other_id, other_key = await accounts.create_client(engine, name="bob's box")

    account = await accounts.authenticate_client(engine, client_id, api_key)
    assert account is not None
    assert (account.id, account.name, account.email) == (client_id, "alice's box", "alice@example.org")
    assert (account.rpm, account.max_concurrent, account.disabled, account.models) == (30, 2, False, [])

    assert await accounts.authenticate_client(engine, client_id, api_key + "x") is None
    assert await accounts.authenticate_client(engine, client_id, credentials.new_client_api_key()) is None
    assert await accounts.authenticate_client(engine, client_id, other_key) is None
    assert await accounts.authenticate_client(engine, "cl_0000000000000000", api_key) is None
    assert (await accounts.authenticate_client(engine, other_id, other_key)) is not None

    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(schema.clients).where(schema.clients.c.id == client_id))).one()
    assert api_key not in repr(tuple(row)), "the plain key must never be stored"
    assert row.api_key_hash == credentials.hash_secret(api_key)


# --- consumer keys ----------------------------------------------------------------------------

async def test_keys_are_found_by_hash_and_listed_when_changed(engine: AsyncEngine) -> None:
    before = accounts.utcnow()
    key_id, key = await accounts.create_key(engine, name="team-a", rpm=60)

    found = await accounts.find_key(engine, credentials.hash_secret(key))
    assert found is not None
    assert (found.id, found.name, found.rpm, found.disabled) == (key_id, "team-a", 60, False)
    assert found.updated_at.tzinfo is not None
    assert before - dt.timedelta(seconds=1) <= found.updated_at <= accounts.utcnow() + dt.timedelta(seconds=1)
    assert await accounts.find_key(engine, credentials.hash_secret(key + "x")) is None
    assert await accounts.find_key(engine, key) is None, "the plain key is not what is looked up"

    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(schema.consumer_keys))).one()
    assert key not in repr(tuple(row)), "the plain key must never be stored"
    assert row.key_prefix == key[:7]

    other_id, _ = await accounts.create_key(engine, name="team-b")
    assert {k.id for k in await accounts.keys_changed_since(engine, None)} == {key_id, other_id}
    assert await accounts.keys_changed_since(engine, accounts.utcnow() + dt.timedelta(hours=1)) == []

    await asyncio.sleep(0.01)
    mark = accounts.utcnow()
    assert await accounts.set_key_disabled(engine, key_id, True)
    changed = await accounts.keys_changed_since(engine, mark)
    assert [(k.id, k.disabled) for k in changed] == [(key_id, True)]
    assert not await accounts.set_key_disabled(engine, "key_0000000000000000", True)


# --- the key cache ----------------------------------------------------------------------------

@pytest.fixture
async def key_cache(engine: AsyncEngine) -> AsyncIterator[KeyCache]:
    cache = KeyCache(engine, refresh_seconds=60)  # only lookups on a miss, no refresh during a test
    await cache.start()
    yield cache
    await cache.stop()


@pytest.mark.parametrize("header", [None, ""])
async def test_key_cache_rejects_a_missing_key(key_cache: KeyCache, header: str | None) -> None:
    with pytest.raises(InvalidApiKey, match="Missing API key") as caught:
        await key_cache.authenticate(header)
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")


@pytest.mark.parametrize("header", ["Basic c2stYWJj", "Bearer", "Bearer    ", "sk-abc", "Token sk-abc"])
async def test_key_cache_rejects_a_malformed_header(key_cache: KeyCache, header: str) -> None:
    with pytest.raises(InvalidApiKey, match="Malformed Authorization header") as caught:
        await key_cache.authenticate(header)
    assert caught.value.code == "invalid_api_key"


async def test_key_cache_rejects_a_wrong_key(engine: AsyncEngine, key_cache: KeyCache) -> None:
    _, key = await accounts.create_key(engine, name="real")
    for wrong in (key + "x", key[:-1], credentials.new_consumer_key()):
        with pytest.raises(InvalidApiKey, match="Incorrect API key") as caught:
            await key_cache.authenticate(f"Bearer {wrong}")
        assert caught.value.code == "invalid_api_key"


async def test_key_cache_knows_keys_made_before_and_after_it_started(engine: AsyncEngine) -> None:
    early_id, early = await accounts.create_key(engine, name="early")
    cache = KeyCache(engine, refresh_seconds=60)
    await cache.start()
    try:
        assert (await cache.authenticate(f"Bearer {early}")).id == early_id
        late_id, late = await accounts.create_key(engine, name="late")  # as `arenahub admin create-key` does
        assert (await cache.authenticate(f"Bearer {late}")).id == late_id
        assert (await cache.authenticate(f"bearer  {late} ")).id == late_id
    finally:
        await cache.stop()


async def test_key_cache_picks_up_a_disabled_key_within_two_seconds(engine: AsyncEngine) -> None:
    key_id, key = await accounts.create_key(engine, name="soon disabled")
    cache = KeyCache(engine)  # the platform's own refresh interval
    await cache.start()
    try:
        assert (await cache.authenticate(f"Bearer {key}")).id == key_id  # now served from memory

        async def rejected_as_disabled() -> bool:
            try:
                await cache.authenticate(f"Bearer {key}")
            except InvalidApiKey as exc:
                assert exc.code == "api_key_disabled"
                return True
            return False

        async def accepted() -> bool:
            return not await rejected_as_disabled()

        assert await accounts.set_key_disabled(engine, key_id, True)
        await eventually(rejected_as_disabled, timeout=2.5, what="the cache seeing the key disabled")
        assert await accounts.set_key_disabled(engine, key_id, False)
        await eventually(accepted, timeout=2.5, what="the cache seeing the key enabled again")
    finally:
        await cache.stop()


# --- the record writer ------------------------------------------------------------------------

async def test_record_writer_writes_every_record_by_close(engine: AsyncEngine) -> None:
    writer = RecordWriter(engine, flush_seconds=30)  # nothing is due before close()
    writer.start()
    records = [make_record(n) for n in range(250)]
    for record in records:
        writer.add(record)
    await writer.close()

    assert await record_ids(engine) == [r.id for r in records]
    assert (writer.written, writer.backlog) == (250, 0)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(schema.request_records)
                                  .where(schema.request_records.c.id == "req_000007"))).one()
    assert (row.model, row.stream, row.status, row.prompt_tokens, row.completion_tokens) == (
        "gpt-test", False, 200, 7, 14)
    assert (row.ttft_ms, row.error_code, row.client_id) == (None, None, None)


async def test_record_writer_inserts_in_batches(engine: AsyncEngine) -> None:
    writer = RecordWriter(engine, batch_size=100)
    for n in range(250):
        writer.add(make_record(n))
    commits = count_commits(engine)
    await writer.flush()
    assert commits[0] == 3, "250 records in batches of 100 are three inserts"
    assert len(await record_ids(engine)) == 250


async def test_record_writer_batches_what_arrives_between_flushes(engine: AsyncEngine) -> None:
    writer = RecordWriter(engine, flush_seconds=0.1)
    commits = count_commits(engine)
    writer.start()
    try:
        for n in range(500):
            writer.add(make_record(n))
        await eventually(lambda: writer.written == 500, what="500 records written")
        assert commits[0] <= 2, f"500 records took {commits[0]} transactions"
    finally:
        await writer.close()
    assert len(await record_ids(engine)) == 500


async def test_record_writer_flushes_a_full_batch_without_waiting(engine: AsyncEngine) -> None:
    writer = RecordWriter(engine, flush_seconds=30, batch_size=50)
    writer.start()
    try:
        for n in range(50):
            writer.add(make_record(n))
        await eventually(lambda: writer.written == 50, timeout=3, what="a full batch written early")
        assert len(await record_ids(engine)) == 50
    finally:
        await writer.close()


class FlakyEngine:
    """Stands in for the engine; a transaction fails to begin while ``down`` or on the calls in ``fail_calls``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.down = False
        self.fail_calls: set[int] = set()
        self.calls = 0

    def begin(self) -> Any:
        self.calls += 1
        if self.down or self.calls in self.fail_calls:
            raise ConnectionRefusedError("the database is away (test)")
        return self.engine.begin()


async def test_record_writer_keeps_records_while_the_database_is_away(engine: AsyncEngine) -> None:
    flaky = FlakyEngine(engine)
    writer = RecordWriter(flaky, flush_seconds=0.05)  # type: ignore[arg-type]
    writer.start()
    try:
        flaky.down = True
        for n in range(30):
            writer.add(make_record(n))
        await eventually(lambda: flaky.calls >= 2, what="two failed attempts")
        assert (writer.written, writer.backlog) == (0, 30)
        assert await record_ids(engine) == []

        flaky.down = False
        for n in range(30, 50):
            writer.add(make_record(n))
        await eventually(lambda: writer.written == 50, timeout=10, what="the backlog written")
    finally:
        await writer.close()
    assert await record_ids(engine) == [make_record(n).id for n in range(50)]


async def test_a_batch_whose_commit_was_not_acknowledged_is_not_inserted_twice(engine: AsyncEngine) -> None:
    # The batch reached the database, but the writer never heard back: it retries the same rows.
    async with engine.begin() as conn:
        await conn.execute(schema.request_records.insert(), [vars(make_record(1))])
    writer = RecordWriter(engine)
    writer.add(make_record(1))
    writer.add(make_record(2))
    await writer.flush()
    assert await record_ids(engine) == ["req_000001", "req_000002"]
    assert writer.backlog == 0


async def test_record_writer_survives_a_failed_client_state_write(engine: AsyncEngine) -> None:
    client_id, _ = await accounts.create_client(engine, name="box")
    flaky = FlakyEngine(engine)
    writer = RecordWriter(flaky)  # type: ignore[arg-type]
    writer.add(make_record(1))
    writer.client_state(client_id, last_stats={"in_flight": 1})
    flaky.fail_calls = {2}  # the records' transaction commits, the client state's fails

    with pytest.raises(ConnectionRefusedError):
        await writer.flush()
    writer.client_state(client_id, last_stats={"in_flight": 3})
    await writer.flush()  # must not insert the committed record a second time

    assert await record_ids(engine) == ["req_000001"]
    assert (writer.written, writer.backlog) == (1, 0)
    async with engine.connect() as conn:
        stats = (await conn.execute(sa.select(schema.clients.c.last_stats)
                                    .where(schema.clients.c.id == client_id))).scalar_one()
    assert stats == {"in_flight": 3}


class Relay:
    """A TCP relay in front of the database server; ``cut()`` is a network outage, ``open()`` ends it."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for stream in list(self._streams):
            stream.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, upstream_writer}
        self._streams |= pair
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        finally:
            self._streams -= pair

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            return  # the other direction was cut: cut() or the peer closed it
        finally:
            sink.transport.abort()


@pytest.mark.postgres
async def test_record_writer_keeps_records_through_a_postgres_outage(databases: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    url = make_url(databases.new("postgres"))
    direct = db.create_engine(url.render_as_string(hide_password=False))
    await db.migrate(direct)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    await relay.open()
    relayed = db.create_engine(url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False))
    writer = RecordWriter(relayed, flush_seconds=0.05)
    writer.start()
    try:
        for n in range(10):
            writer.add(make_record(n))
        await eventually(lambda: writer.written == 10, what="records written before the outage")

        await relay.cut()
        for n in range(10, 40):
            writer.add(make_record(n))
        await eventually(lambda: any("retrying" in r.getMessage() for r in caplog.records),
                         what="a failed write during the outage")
        assert (writer.written, writer.backlog) == (10, 30)

        await relay.open()
        await eventually(lambda: writer.written == 40, timeout=15, what="the backlog written after the outage")
    finally:
        await writer.close()
        await relayed.dispose()
    assert await record_ids(direct) == [make_record(n).id for n in range(40)]
    await direct.dispose()


# --- key lifecycle ------------------------------------------------------------------------------

async def test_key_lifecycle_update_rotate_delete(engine: AsyncEngine) -> None:
    key_id, secret = await accounts.create_key(engine, name="life")
    cache = KeyCache(engine, refresh_seconds=0.05)
    await cache.start()
    try:
        assert (await cache.authenticate(f"Bearer {secret}")).id == key_id
        assert await accounts.update_key(engine, key_id, tpm=1000, allowed_models=["m1"], email="o@x.org",
                                         meta={"team": "a"})
        got = await accounts.get_key(engine, key_id)
        assert got is not None and got.tpm == 1000 and got.allowed_models == ("m1",) and got.meta == {"team": "a"}
        assert got.allows("m1") and not got.allows("m2")
        assert "secret" not in str(got.public()) and secret not in str(got.public())
        with pytest.raises(ValueError, match="not a key setting"):
            await accounts.update_key(engine, key_id, key_hash="x")

        new_secret = await accounts.rotate_key(engine, key_id)
        assert new_secret and new_secret != secret
        await eventually_async(lambda: _rejects(cache, secret), what="the old secret refused")
        assert (await cache.authenticate(f"Bearer {new_secret}")).id == key_id

        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        await accounts.update_key(engine, key_id, expires_at=past)
        await eventually_async(lambda: _rejects(cache, new_secret, "api_key_expired"), what="expiry seen")

        assert await accounts.delete_key(engine, key_id)
        assert await accounts.get_key(engine, key_id) is None
        assert key_id not in [k.id for k in await accounts.list_keys(engine)]
        assert not await accounts.update_key(engine, key_id, rpm=5)
        assert await accounts.rotate_key(engine, key_id) is None
        fresh = KeyCache(engine)  # a cache that never saw it must not accept it either
        await fresh.start()
        with pytest.raises(InvalidApiKey):
            await fresh.authenticate(f"Bearer {new_secret}")
        await fresh.stop()
    finally:
        await cache.stop()


async def _rejects(cache: KeyCache, secret: str, code: str | None = None) -> bool:
    try:
        await cache.authenticate(f"Bearer {secret}")
    except InvalidApiKey as exc:
        return code is None or exc.code == code
    return False


async def eventually_async(probe, what: str, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
