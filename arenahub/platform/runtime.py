"""The platform's one application state, built at start-up and passed around (never a global)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections import deque
from dataclasses import replace

import msgspec
from starlette.websockets import WebSocketDisconnect

from arenahub import __version__
from arenahub.background import watched
from arenahub.platform.accounting.credit import Accounting
from arenahub.platform.accounting.keys import KeyCache
from arenahub.platform.admin.token import AdminAuth, load_admin_auth
from arenahub.platform.catalogue import ModelCatalogue
from arenahub.platform.claims import UsageClaims
from arenahub.platform.cluster.changes import ChangeFeed, PostgresListener, asyncpg_dsn, pause
from arenahub.platform.cluster.instances import InstanceCard, new_instance_id
from arenahub.platform.cluster.live import build as build_live_state
from arenahub.platform.cluster.peers import RemoteClients
from arenahub.platform.cluster.presence import Presence
from arenahub.platform.dashboard.auth import DashboardAuth
from arenahub.platform.dispatch import Dispatcher
from arenahub.platform.exchange import Exchange
from arenahub.platform.journal import Journal
from arenahub.platform.live_settings import LiveSettings, follow
from arenahub.platform.metrics import PlatformMetrics
from arenahub.platform.records import RecordWriter, keep_records_for
from arenahub.platform.refusals import STORED_KEY, RefusalBook
from arenahub.platform.registry import ClusterView, LocalClientRegistry
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.settlement import Settlement
from arenahub.platform.storage import accounts, catalogue_store, settings_store
from arenahub.platform.storage.db import DATABASE_ERRORS, create_engine, migrate
from arenahub.platform.throttle import CREDENTIALS, SIGN_INS, CredentialThrottle
from arenahub.platform.throttle_redis import throttle_store
from arenahub.platform.tunnel import heartbeat_watchdog
from arenahub.platform.tunnel_session import ClientSession
from arenahub.protocol import frames
from arenahub.protocol.errors import ShuttingDown

log = logging.getLogger("arenahub.platform")

CLUSTER_SECRET = "cluster_secret"  # platform_settings row: what instances show each other (cluster/peer_endpoint.py)



class Platform:
    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings  # replaced when live settings change (apply_settings): read it when needed
        self.live = LiveSettings(settings)
        self.instance_id = str(settings.instance_id) or new_instance_id()
        self.engine = create_engine(settings.resolved_database_url)
        self.registry = LocalClientRegistry()
        self.started_at = time.time()
        self.shutting_down = False
        # Consumers are refused (503) once this is set: at once on one instance, after the notice in a cluster.
        self.refusing = False
        self._inflight: set[str] = set()
        self._settling: set[asyncio.Task[None]] = set()  # exchanges being settled after their response
        self._deleted: deque[str] = deque(maxlen=1000)  # clients deleted lately (the client follower skips them)
        # The live state shared with the other instances (cluster/): in this process without a Redis URL.
        self.cluster = build_live_state(settings.redis_url, self.instance_card, self.engine, self._flush_books)
        # What the admin changed, heard at once on PostgreSQL (cluster/changes.py); else read every second.
        self.changes = ChangeFeed()
        dsn = asyncpg_dsn(settings.resolved_database_url)
        self._listener = PostgresListener(dsn, self.changes) if dsn else None
        self.accounting = Accounting(self.engine, self.cluster.credit, rebuild=self.cluster.rebuild, feed=self.changes)
        self.keys = KeyCache(self.engine, on_new_key=self.accounting.load_key, feed=self.changes)
        self.journal = Journal(settings.resolved_journal_dir, fsync=settings.journal_fsync)
        self.writer = RecordWriter(self.engine, flush_seconds=settings.record_flush_seconds,
                                   batch_size=settings.record_batch_size, ledger_entries=self.accounting.drain,
                                   journal=self.journal)
        # The other instances' clients, routed to over peer links (cluster/peers.py); none without Redis.
        self.cluster_secret = ""
        self.remote = RemoteClients(self.instance_id, lambda: self.cluster_secret, self._instance_url,
                                    window=lambda: self.settings.answer_window_bytes,
                                    slow_consumer_seconds=lambda: self.settings.slow_consumer_seconds)
        self.routable = ClusterView(self.registry, self.remote.sessions)
        self.dispatcher = Dispatcher(self.routable, settings)
        self.dispatcher.on_routing_change = self.client_routing_changed
        self.metrics = PlatformMetrics(self)
        self.presence = Presence(self.cluster, self.registry, self.instance_card, self._let_client_go,
                                 on_cards=self.remote.sync, kept_out=lambda s: self.dispatcher.blocked(s) is not None)
        # Wrong admin tokens, client keys and consumer keys, throttled per address (throttle.py); with Redis,
        # counted for the whole cluster (throttle_redis.py).
        credentials = replace(CREDENTIALS, per_address=settings.credential_failures_per_minute)
        self.credential_throttle = CredentialThrottle(throttle_store(self.cluster.redis, credentials, "credentials"),
                                                      on_refusal=self.metrics.refused_credentials)
        self.catalog: set[str] = set()  # every model a client has served here: unknown ones are 404s
        self.catalogue = ModelCatalogue()  # the operator's (catalogue.py); off unless turned on
        self._catalogue_version: object = None
        self.key_limits = self.cluster.key_limits
        self.admin: AdminAuth
        self.dashboard: DashboardAuth  # sessions, sign-in and the admin API gate
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._maintenance_saved: set[str] = set()  # clients whose maintenance is in the database
        self.refusals = RefusalBook()  # why each client was last refused or disconnected (refusals.py)
        self.usage_claims = UsageClaims()  # clients whose usage claims differ from the platform's count
        # What an exchange's end gives back and records, once (admission.py took it).
        self.settlement = Settlement(self.accounting, self.writer, self.key_limits, self.metrics, self.usage_claims,
                                     lambda: self.settings)

    async def start(self) -> None:
        await migrate(self.engine)
        if await self.live.load(self.engine):  # overrides stored from the dashboard win over flags and env
            log.info("settings changed from the dashboard (they win over flags and environment): %s",
                     self.live.overrides)
            self.apply_settings(self.live.current)
        await self.cluster.start()
        if self.cluster.shared:
            await settings_store.put_setting(self.engine, CLUSTER_SECRET, secrets.token_urlsafe(32),
                                             only_if_absent=True)
            self.cluster_secret = str(await settings_store.get_setting(self.engine, CLUSTER_SECRET))
        if self._listener is not None:
            await self._listener.start()
        self.admin = await load_admin_auth(self.engine, self.settings.admin_token)
        self.dashboard = DashboardAuth(self.engine, self.admin, credentials=self.credential_throttle,
                                       throttle=throttle_store(self.cluster.redis, SIGN_INS, "sign-ins"))
        await self.dashboard.start()
        await self.keys.start()
        # The books a killed platform left in its journal, into the database before the ledger is loaded
        # (else a request it settled would be released as an orphan).
        await self.writer.recover()
        await self.accounting.start()
        self.catalog = await accounts.known_models(self.engine)
        await self.refresh_catalogue()
        self.writer.start()
        self._tasks.append(watched(heartbeat_watchdog(self), "heartbeat-watchdog"))
        if self.cluster.shared:
            self._tasks.append(watched(self.presence.publish_loop(), "client-cards"))
            if self.cluster.orphans is not None:
                self._tasks.append(watched(self.cluster.orphans(), "credit-orphans"))
        self._tasks.append(watched(self._follow_client_changes(), "client-changes"))
        self._tasks.append(self._retention())
        self._tasks.append(watched(follow(self.engine, self.live, self.apply_settings, feed=self.changes),
                                   "settings-changes"))

    def _retention(self) -> asyncio.Task[None]:
        return watched(keep_records_for(self.engine, self.settings.record_retention_days), "record-retention")

    def apply_settings(self, settings: PlatformSettings) -> None:
        """Use changed live settings (live_settings.py) from now on: routing, the queue, timeouts and
        attempts for the next request, store_prompts for the next record; retention starts over."""
        old, self.settings = self.settings, settings
        self.dispatcher.settings_changed(settings)
        if settings.model_catalogue != old.model_catalogue:
            self.catalogue_changed(replace(self.catalogue, enabled=settings.model_catalogue))
        if settings.record_retention_days != old.record_retention_days:
            retention = [task for task in self._tasks if task.get_name() == "record-retention"]
            for task in retention:
                task.cancel()
                self._tasks.remove(task)
            if retention:  # else start() has yet to begin it
                self._tasks.append(self._retention())

    def begin_shutdown(self) -> None:
        """Take no new work: consumers get 503 (a load balancer sees /api/health answer 503 and sends them
        elsewhere), and a new tunnel is told to come back later. In a cluster, the clients connected here are
        asked to move to another instance (their answers in flight finish here), and the requests already
        waiting here may still be served by a client anywhere in the cluster during the grace."""
        if self.shutting_down:
            return
        self.shutting_down = True
        if not self.cluster.shared:
            self.refusing = True
            self._fail_waiters()
            return
        grace = self.settings.shutdown_grace_seconds
        for session in self.registry.sessions():
            if not session.closed and not session.moving:
                self.dispatcher.client_moving(session)
                session.send_nowait(frames.Move(reason=f"platform instance {self.instance_id} is shutting down",
                                                grace_seconds=grace))
        log.info("shutting down: %d client(s) asked to move to another instance", len(self.registry))

    def _fail_waiters(self) -> None:
        self.dispatcher.fail_waiters(ShuttingDown("The platform is shutting down; retry in a moment.",
                                                  headers={"Retry-After": "5"}))

    def _busy(self) -> bool:
        """Answers in flight here (of this instance's consumers, or relayed for another instance's), or a client
        still moving to another instance (it leaves once connected there)."""
        return bool(self._inflight) or any(s.active or s.moving for s in self.registry.sessions() if not s.closed)

    async def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._busy():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), min(left, 0.05))
            except TimeoutError:
                pass
            if not self._inflight:
                await asyncio.sleep(min(max(0.0, deadline - time.monotonic()), 0.05))
        return True

    async def drain(self) -> None:
        """Take no new work, let the answers in flight finish within the shutdown grace, then cut what is left
        (each cut stream is logged, and ends with a ``platform_shutting_down`` error) and close the tunnels."""
        self.begin_shutdown()
        grace = self.settings.shutdown_grace_seconds
        if not self.refusing:  # a cluster: the load balancer notices the 503s while this instance still serves
            notice = min(self.settings.shutdown_notice_seconds, grace)
            await asyncio.sleep(notice)
            self.refusing = True
            grace -= notice
        if not await self.wait_idle(grace):
            self._fail_waiters()  # requests still waiting for a client (in a cluster)
            log.warning("%d request(s) still in flight at shutdown", len(self._inflight))
            for session in self.registry.sessions():
                for request_id in session.request_ids():
                    log.warning("request %s cut: its answer (from client %s) outlasted the shutdown grace of %g s",
                                request_id, session.client_id, grace)
        for session in self.registry.sessions():
            await session.close(frames.CLOSE_SHUTDOWN, f"the platform instance is shutting down (grace {grace:g} s)",
                                by_platform=True)

    async def stop(self) -> None:
        await self.drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.keys.stop()
        await self.accounting.stop()
        await self.writer.close()
        await self.remote.close()
        if self._listener is not None:
            await self._listener.stop()
        await self.cluster.stop()
        await self.engine.dispose()

    def _instance_url(self, instance: str) -> str | None:
        return self.presence.instance_urls.get(instance)

    def instance_card(self) -> InstanceCard:
        """What this instance says about itself to the others (cluster/instances.py)."""
        return InstanceCard(self.instance_id, address=f"{self.settings.host}:{self.settings.port}",
                            url=self.settings.resolved_advertise_url,
                            version=__version__, started_at=self.started_at,
                            clients=sum(1 for s in self.registry.sessions() if not s.closed),
                            in_flight=len(self._inflight), draining=self.shutting_down)

    def models_offered(self) -> set[str]:
        """Models served now by the available clients: of the whole cluster."""
        return self.presence.models_offered()

    async def cluster_health(self) -> dict[str, object]:
        return await self.presence.health(changes="notified" if self.changes.live else "polled")

    async def _flush_books(self) -> None:
        await self.writer.flush()

    # -- requests -----------------------------------------------------------------------------
    def model_known(self, model: str) -> bool:
        if self.catalogue.enabled:
            return self.catalogue.offered_to_consumers(model)
        if model in self.catalog:
            return True
        return any(s.serves(model) for s in self.routable.sessions())

    def exchange_started(self, ex: Exchange) -> None:
        self._inflight.add(ex.id)
        self._idle.clear()

    def finish_later(self, ex: Exchange) -> None:
        """Settle and record the exchange in a task of its own (its response's task is ending); the
        platform is idle only once it has."""
        task = asyncio.create_task(self.exchange_finished(ex), name=f"settle-{ex.id}")
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def exchange_finished(self, ex: Exchange) -> None:
        """Settle, record and count the exchange (settlement.py); once (later calls do nothing). It is in
        flight until the call that settles it is done."""
        if ex.booked:  # settled, or being settled by an earlier call
            return
        try:
            await self.settlement.settle(ex)
        finally:
            self._inflight.discard(ex.id)
            if not self._inflight:
                self._idle.set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # -- clients ------------------------------------------------------------------------------
    async def _follow_client_changes(self, period: float = 1.0, prune_every: int = 60) -> None:
        """Apply what `arenahub admin` changed about clients (drain, limits, maintenance, deletion) within a second."""
        since = dt.datetime.now(dt.UTC)
        seen: dict[str, dt.datetime | None] = {}
        ticks = 0
        while True:
            await pause(self.changes, ["clients", "catalogue"], period)
            ticks += 1
            started = dt.datetime.now(dt.UTC)
            try:
                changed = await accounts.clients_changed_since(self.engine, since - dt.timedelta(seconds=5))
                await self.refresh_catalogue()
                # A deleted row leaves no change to read: check that the connected clients still exist
                # (a primary-key lookup each), and now and then that the remembered ones do.
                await self._forget_deleted_clients(everyone=ticks % prune_every == 0)
            except DATABASE_ERRORS as exc:
                log.warning("reading client changes failed: %s", exc)
                continue
            for account in changed:
                stamp = account.updated_at
                if account.id in self._deleted:
                    continue  # deleted while this read was under way: it must not come back
                if seen.get(account.id) != stamp:
                    seen[account.id] = stamp
                    self.dispatcher.apply_account(account)
                    self._end_revoked_session(account)
            since = started


    async def _forget_deleted_clients(self, everyone: bool = False) -> None:
        """Disconnect the clients whose registration another process deleted, and forget them."""
        ids = {s.client_id for s in self.registry.sessions() if not s.closed}
        if everyone:
            ids |= set(self.dispatcher.health) | self.refusals.client_ids()
        if ids:
            for client_id in ids - await accounts.registered_client_ids(self.engine, ids):
                self.client_removed(client_id)

    async def delete_client(self, client_id: str) -> asyncio.Task[None] | None:
        """Delete the client's registration (its records and ledger stay) and disconnect it with the
        reason. Returns the task closing its connection (None when it was not connected here).
        Raises KeyError when there is no such client."""
        if not await accounts.delete_client(self.engine, client_id):
            raise KeyError(client_id)
        log.info("client %s deleted by an administrator", client_id)
        return self.client_removed(client_id)

    def client_removed(self, client_id: str) -> asyncio.Task[None] | None:
        """The client is no longer registered: close its connection, telling it why, and forget it."""
        session = self.registry.get(client_id)
        closing = None
        if session is not None and not session.closed:
            closing = self._close_with_refusal(session, frames.CLOSE_FORBIDDEN, "client_deleted",
                                               "this client was deleted by an administrator")
        self.dispatcher.health.pop(client_id, None)
        self._deleted.append(client_id)
        self.refusals.forget(client_id)
        self.usage_claims.forget(client_id)
        self._maintenance_saved.discard(client_id)
        return closing

    def client_refused(self, client_id: str, code: str, message: str) -> None:
        """Remember why a registered client was refused or disconnected: here at once, and in its row
        (``last_stats``) with the writer's next flush, for a restart or another process to show."""
        refusal = self.refusals.record(client_id, code, message)
        self.writer.client_state(client_id, last_stats={STORED_KEY: refusal.as_dict()})

    def _close_with_refusal(self, session: ClientSession, close: int, code: str, reason: str,
                            retry: bool = False) -> asyncio.Task[None]:
        """Stop routing to the session now; then send it a ``refused`` frame (final unless ``retry``) and
        close the socket."""
        log.info("client %s: closing its connection (%s)", session.client_id, reason)
        session.mark_closed(reason)  # no new work from now on; its requests in flight fail over

        async def refuse() -> None:
            try:  # tell the client why, as at connect time, so it stops retrying with a dead key
                await session.ws.send_bytes(frames.encode(frames.Refused(code=code, message=reason, retry=retry)))
            except (RuntimeError, OSError, WebSocketDisconnect):
                pass  # the socket is already gone: closing below is all that is left
            await session.close(close, reason)
        return asyncio.create_task(refuse())

    def _let_client_go(self, session: ClientSession, reason: str) -> None:
        """Its client connected again to another instance: close this connection, telling it why."""
        self._close_with_refusal(session, frames.CLOSE_REPLACED, "connection_replaced", reason, retry=True)

    async def client_connected(self, session: ClientSession, hello: frames.Hello) -> None:
        old = self.registry.add(session)
        if old is not None and old is not session:
            log.info("client %s connected again from %s; closing its previous connection (from %s)",
                     session.client_id, session.where, old.where)
            if not old.closed:  # a reconnect whose old connection still looked open, or a second copy
                self.client_refused(session.client_id, "connection_replaced",
                                    f"a new connection with this client id came from {session.where} while the "
                                    f"one from {old.where} was open; that one was closed")
                # Told why and by whom: a second copy of the client stands by instead of fighting back.
                self._close_with_refusal(old, frames.CLOSE_REPLACED, "connection_replaced",
                                         f"another instance with this client id connected from {session.where}; "
                                         "this one stands by and connects when that one leaves", retry=True)
            else:
                asyncio.create_task(old.close(frames.CLOSE_REPLACED, "replaced by a new connection"))
        self.catalog |= session.models
        self.dispatcher.sessions_changed()
        await self.presence.claimed(session)
        await accounts.record_client_hello(self.engine, session.client_id, sorted(session.offered),
                                           hello.client_version)

    async def refresh_catalogue(self) -> bool:
        """Read the catalogue again when it changed in the database (the admin API or CLI of any
        process); True when it did."""
        version = await catalogue_store.version(self.engine)
        if version == self._catalogue_version:
            return False
        listings, refused = await catalogue_store.load(self.engine)
        self._catalogue_version = version
        self.catalogue_changed(ModelCatalogue(self.settings.model_catalogue, listings, refused))
        return True

    def catalogue_changed(self, catalogue: ModelCatalogue) -> None:
        """The operator changed the model catalogue (or turned it on or off): every client serves
        what it allows from now on."""
        self.catalogue = catalogue
        for session in self.registry.sessions():
            session.catalogue_changed(catalogue)
            self.catalog |= session.models
        self.dispatcher.sessions_changed()

    def client_settings_changed(self, account: accounts.ClientAccount) -> None:
        """An admin changed a client's registration or routing state: apply it to its live session now."""
        self.dispatcher.apply_account(account)
        self._end_revoked_session(account)

    def _end_revoked_session(self, account: accounts.ClientAccount) -> None:
        """A disabled client, or one whose key was regenerated, is disconnected with the reason."""
        session = self.registry.get(account.id)
        if session is None or session.closed:
            return
        if account.disabled:
            close, code, reason = (frames.CLOSE_FORBIDDEN, "client_disabled",
                                   "this client is disabled by an administrator")
        elif session.key_hash and session.key_hash != account.api_key_hash:
            close, code, reason = (frames.CLOSE_INVALID_CREDENTIALS, "invalid_credentials",
                                   "the client's API key was regenerated: download the client package again")
        else:
            return
        self.client_refused(account.id, code, reason)
        self._close_with_refusal(session, close, code, reason)

    def client_routing_changed(self, client_id: str) -> None:
        """Tell the client how it is routed now, and keep a maintenance state in the database."""
        health = self.dispatcher.health_of(client_id)
        session = self.registry.get(client_id)
        if session is not None:
            session.send_nowait(frames.Routing(
                draining=session.draining, drain_reason=session.drain_reason or
                ("drained by an administrator" if session.admin_draining else ""),
                maintenance=health.maintenance, breaker=health.breaker(self.dispatcher.clock()).value))
        if health.maintenance is not None and client_id not in self._maintenance_saved:
            self._maintenance_saved.add(client_id)
            self.writer.client_state(client_id, maintenance_reason=health.maintenance[:500],
                                     maintenance_since=dt.datetime.now(dt.UTC))
        elif health.maintenance is None:
            self._maintenance_saved.discard(client_id)

    def client_disconnected(self, session: ClientSession) -> None:
        self.registry.remove(session)
        release = asyncio.create_task(self.presence.released(session))
        self._settling.add(release)
        release.add_done_callback(self._settling.discard)
        self.dispatcher.sessions_changed()
        self.writer.client_state(session.client_id, last_seen_at=dt.datetime.now(dt.UTC))

    def client_heartbeat(self, session: ClientSession, hb: frames.Heartbeat) -> None:
        if hb.models is not None:
            self.catalog |= session.models
        self.dispatcher.notify()  # it may have become healthy, or serve more models
        self.record_heartbeat(session.client_id, hb)

    def record_heartbeat(self, client_id: str, hb: frames.Heartbeat) -> None:
        state: dict[str, object] = {
            "last_seen_at": dt.datetime.now(dt.UTC),
            "last_stats": {"stats": msgspec.to_builtins(hb.stats),  # merged with what is stored (refusals.py)
                           "session": msgspec.to_builtins(hb.session) if hb.session else None},
        }
        if hb.models is not None:
            state["models"] = sorted(hb.models)
        if hb.client_version:  # older clients send it in hello only
            state["client_version"] = hb.client_version[:64]
        self.writer.client_state(client_id, **state)
