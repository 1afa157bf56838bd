"""What the client reports in its heartbeats and at /health."""

from __future__ import annotations

import time

import psutil

from arenahub.protocol.frames import ClientStats


class Stats:
    def __init__(self, monitor_resources: bool = True) -> None:
        self.started = time.monotonic()
        self.processed = 0
        self.failed = 0
        self.cancelled = 0
        self.rejected = 0  # malformed requests refused before the bridge (enable_request_validation)
        self.active = 0
        self._total_ms = 0.0
        self._process = psutil.Process() if monitor_resources else None
        if self._process is not None:
            self._process.cpu_percent(None)  # prime: the next call measures since now

    def begin(self) -> float:
        self.active += 1
        return time.perf_counter()

    def end(self, started: float, *, ok: bool, cancelled: bool = False) -> None:
        self.active -= 1
        if cancelled:
            self.cancelled += 1
            return
        self.processed += 1
        if not ok:
            self.failed += 1
        self._total_ms += (time.perf_counter() - started) * 1000

    @property
    def success_rate(self) -> float:
        if not self.processed:
            return 100.0
        return round(100.0 * (self.processed - self.failed) / self.processed, 2)

    @property
    def uptime_seconds(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def snapshot(self) -> ClientStats:
        cpu = mem = None
        if self._process is not None:
            cpu = self._process.cpu_percent(None)
            mem = round(self._process.memory_info().rss / 1_048_576, 1)
        return ClientStats(
            requests_processed=self.processed, requests_failed=self.failed, success_rate=self.success_rate,
            average_response_ms=round(self._total_ms / self.processed, 1) if self.processed else 0.0,
            active_requests=self.active, uptime_seconds=self.uptime_seconds, cpu_percent=cpu, memory_mb=mem)
