"""Prometheus metrics of one platform, served at ``GET /metrics``.

Counters and histograms are updated once per finished request (``request_finished``); gauges
(requests in flight, client streams, connected clients, queue depth, record backlog) are read from
the live state when Prometheus scrapes. Each platform owns its registry, so several can share a
process. Client and model labels are bounded: the first ``max_clients`` clients and ``max_models``
models seen get a series of their own, later ones share ``other``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from arenahub.platform.records import RecordWriter, RequestRecord

if TYPE_CHECKING:
    from arenahub.platform.dispatch import Dispatcher
    from arenahub.platform.registry import LocalClientRegistry

OTHER = "other"
NO_CLIENT = "none"  # requests no client served (refused, queued out, no route)
SECONDS_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class LabelCap:
    """Lets the first ``limit`` distinct values of a label through and maps every later one to ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value
        return OTHER


class MeteredPlatform(Protocol):
    """What the metrics read of the platform (``runtime.Platform`` is one; a Protocol, as runtime.py imports
    this module)."""

    instance_id: str
    registry: LocalClientRegistry
    dispatcher: Dispatcher
    writer: RecordWriter

    @property
    def inflight(self) -> int: ...


class PlatformMetrics:
    def __init__(self, platform: MeteredPlatform, *, max_clients: int = 50, max_models: int = 50) -> None:
        self.registry = CollectorRegistry()
        self._instance = platform.instance_id
        self._client_label = LabelCap(max_clients)
        self._model_label = LabelCap(max_models)
        r = self.registry
        self._requests = Counter("arenahub_requests", "Finished consumer requests, by HTTP status, model and client.",
                                 ["status", "model", "client"], registry=r)
        self._latency = Histogram("arenahub_request_latency_seconds",
                                  "Latency of answered requests (status 200), to the last byte.",
                                  ["model"], buckets=SECONDS_BUCKETS, registry=r)
        self._ttft = Histogram("arenahub_time_to_first_token_seconds",
                               "Time from a request's arrival to the first byte of its answer.",
                               ["model"], buckets=SECONDS_BUCKETS, registry=r)
        self._tokens = Counter("arenahub_tokens",
                               "Tokens of finished requests, by type (prompt, completion) and model.",
                               ["type", "model"], registry=r)
        self._claim_gaps = Counter("arenahub_client_usage_claim_gaps",
                                   "Answers whose usage the client claimed far from the platform's own count.",
                                   ["client"], registry=r)
        self._client_events = Counter("arenahub_client_protocol_events",
                                      "Frames a client sent that the platform set aside, by kind: unknown_request "
                                      "(for a request not in flight), malformed, too_large, held_back (it sent past "
                                      "its flow-control window).", ["client", "event"], registry=r)
        self._refused_credentials = Counter("arenahub_refused_credentials",
                                            "Wrong credentials offered, by kind (admin_token, client_key, "
                                            "consumer_key), and how many of them were throttled.",
                                            ["kind", "throttled"], registry=r)
        # (status, model label, client label) -> the children to update: one dict lookup per request.
        self._children: dict[tuple[int, str, str], tuple[Counter, Histogram, Histogram, Counter, Counter]] = {}
        r.register(_LiveState(platform))
        ProcessCollector(registry=r)

    def request_finished(self, record: RequestRecord) -> None:
        model = self._model_label(record.model)
        client = self._client_label(record.client_id) if record.client_id else NO_CLIENT
        ident = (record.status, model, client)
        children = self._children.get(ident)
        if children is None:
            children = self._children[ident] = (
                self._requests.labels(str(record.status), model, client), self._latency.labels(model),
                self._ttft.labels(model), self._tokens.labels("prompt", model),
                self._tokens.labels("completion", model))
        requests, latency, ttft, prompt, completion = children
        requests.inc()
        if record.status == 200:
            latency.observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            ttft.observe(record.ttft_ms / 1000)
        if record.prompt_tokens:
            prompt.inc(record.prompt_tokens)
        if record.completion_tokens:
            completion.inc(record.completion_tokens)

    def usage_claim_gap(self, client_id: str) -> None:
        self._claim_gaps.labels(self._client_label(client_id)).inc()

    def client_event(self, client_id: str, event: str) -> None:
        self._client_events.labels(self._client_label(client_id), event).inc()

    def refused_credentials(self, kind: str, throttled: bool) -> None:
        self._refused_credentials.labels(kind, "yes" if throttled else "no").inc()

    def exposition(self) -> bytes:
        return generate_latest(_Labelled(self.registry, self._instance))


class _Labelled:
    """Every sample with the instance's id as ``platform_instance`` (``instance`` is the label Prometheus
    gives the scrape target), so that a cluster's series add up and stay apart."""

    def __init__(self, registry: CollectorRegistry, instance: str) -> None:
        self._registry = registry
        self._instance = instance

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            family.samples = [s._replace(labels={**s.labels, "platform_instance": self._instance})
                              for s in family.samples]
            yield family


class _LiveState:
    """Gauges read from the platform at scrape time, so the request path never touches them."""

    def __init__(self, platform: MeteredPlatform) -> None:
        self._platform = platform

    def collect(self) -> Iterator[Metric]:
        p = self._platform
        sessions = list(p.registry.sessions())
        yield GaugeMetricFamily("arenahub_inflight_requests",
                                "Consumer requests being handled (waiting, streaming or answering).", value=p.inflight)
        yield GaugeMetricFamily("arenahub_active_streams", "Requests open on client tunnels.",
                                value=sum(s.active for s in sessions))
        yield GaugeMetricFamily("arenahub_connected_clients", "Clients connected to this platform.",
                                value=len(sessions))
        yield GaugeMetricFamily("arenahub_available_clients", "Connected clients that take requests now.",
                                value=sum(1 for s in sessions if s.available))
        yield GaugeMetricFamily("arenahub_queue_depth", "Requests waiting for a free client.",
                                value=p.dispatcher.queued)
        yield GaugeMetricFamily("arenahub_record_backlog", "Request records and ledger entries not written yet.",
                                value=p.writer.backlog)


async def metrics_endpoint(request: Request) -> Response:
    metrics: PlatformMetrics = request.app.state.platform.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
