"""Rate limits: exact sliding windows, corrections, concurrency, retry_after, headers, sweep."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arenahub.platform.accounting import limits as limits_module
from arenahub.platform.accounting.limits import (
    CONCURRENCY_RETRY_AFTER,
    WINDOW,
    Admitted,
    Limit,
    Limits,
    LimitState,
    LimitStore,
    LocalLimitStore,
    RateLimitStatus,
    Refused,
    format_reset,
    format_retry_after,
)

# Times on a 0.5 s grid hit the window's edges exactly; the floats in between do not.
arrival_times = st.lists(
    st.one_of(st.integers(0, 600).map(lambda x: x / 2), st.floats(0, 300, allow_nan=False)),
    max_size=120,
).map(sorted)


def in_window(times: list[float], now: float) -> int:
    """How many of ``times`` are in the window at ``now``: (now - 60, now], computed as the module does."""
    return sum(t <= now < t + WINDOW for t in times)


def admitted(admission: Admitted | Refused) -> Admitted:
    assert isinstance(admission, Admitted), admission
    return admission


def refused(admission: Admitted | Refused) -> Refused:
    assert isinstance(admission, Refused), admission
    return admission


# --- Limits and formatting -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"rpm": 0}, {"tpm": -1}, {"max_concurrent": 1.5}, {"rpm": True}])
def test_limits_must_be_positive_integers(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Limits(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (-3, "0s"), (0.0001, "1ms"), (0.02, "20ms"), (0.999, "999ms"), (1, "1s"), (1.5, "1.5s"),
    (59.913, "59.913s"), (60, "1m0s"), (61.25, "1m1.25s"), (360, "6m0s"), (3600, "1h0m0s"),
    (3725.5, "1h2m5.5s"), (0.1 + 0.2, "300ms"),
])
def test_format_reset_is_openai_format(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [(0.001, "1"), (1, "1"), (1.2, "2"), (59, "59"), (59.0000001, "59")])
def test_format_retry_after_whole_seconds_rounded_up(seconds: float, text: str) -> None:
    assert format_retry_after(seconds) == text


def test_headers_after_admission() -> None:
    state = LimitState()
    limits = Limits(rpm=60, tpm=1000)
    admitted(state.admit("k", limits, now=0.0, est_tokens=100))
    result = admitted(state.admit("k", limits, now=30.0, est_tokens=250))
    assert result.status.headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "58",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "650",
        "x-ratelimit-reset-tokens": "1m0s",
    }
    assert state.status("k", limits, now=75.0).headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "15s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "750",
        "x-ratelimit-reset-tokens": "15s",
    }


def test_headers_only_for_limited_kinds() -> None:
    state = LimitState()
    result = admitted(state.admit("k", Limits(rpm=2), now=0.0, est_tokens=5))
    assert set(result.status.headers()) == {
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"}
    assert state.status("new", Limits(tpm=10), now=0.0).headers()["x-ratelimit-reset-tokens"] == "0s"


# --- Unlimited --------------------------------------------------------------------------------

def test_unlimited_costs_nothing() -> None:
    state = LimitState()
    for i in range(1000):
        result = admitted(state.admit("k", Limits(), now=float(i % 3), est_tokens=10**9))
        assert result.status == RateLimitStatus()
        assert result.status.headers() == {}
        state.finish(result.ticket, 10**9, now=0.0)
    assert len(state) == 0
    assert state.would_admit("k", Limits(), now=0.0, est_tokens=10**12)


def test_unlimited_kinds_record_nothing() -> None:
    state = LimitState()
    for _ in range(100):
        admitted(state.admit("k", Limits(max_concurrent=1000), now=0.0, est_tokens=10))
    subject = state._subjects["k"]
    assert not subject.requests and not subject.tokens and subject.in_flight == 100


# --- Requests per minute ------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(rpm=st.integers(1, 8), times=arrival_times)
def test_rpm_exact_in_every_window(rpm: int, times: list[float]) -> None:
    state = LimitState()
    limits = Limits(rpm=rpm)
    accepted: list[float] = []
    for t in times:
        result = state.admit("k", limits, now=t)
        if isinstance(result, Admitted):
            state.finish(result.ticket, 0, now=t)
            accepted.append(t)
            continue
        # Refused only when the last 60 s already hold rpm requests...
        assert result.limit is Limit.REQUESTS
        assert in_window(accepted, t) == rpm
        # ...and retry_after is exactly when one leaves: then there is room, a moment before there is not.
        assert result.retry_after is not None and result.retry_after > 0
        retry = t + result.retry_after
        assert in_window(accepted, retry) < rpm
        # (A moment: at most half the wait, so that it is not before now; hypothesis found waits of 1e-14 s.)
        assert in_window(accepted, retry - min(1e-6, result.retry_after / 2)) == rpm
    # Never more than rpm in any 60-second window (checking the windows that start at an admission is enough).
    for start in accepted:
        assert sum(start <= a < start + WINDOW for a in accepted) <= rpm


@pytest.mark.parametrize(("rpm", "times", "expected"), [
    (1, [0, 59.999, 60], [True, False, True]),
    (2, [0, 0, 0, 30, 60, 60, 60], [True, True, False, False, True, True, False]),
    (3, [0, 10, 20, 30, 69.9, 70, 80, 80], [True, True, True, False, True, True, True, False]),
    (60, [i * 0.5 for i in range(130)], [i < 60 or i >= 120 for i in range(130)]),
])
def test_rpm_table(rpm: int, times: list[float], expected: list[bool]) -> None:
    state = LimitState()
    got = [isinstance(state.admit("k", Limits(rpm=rpm), now=t), Admitted) for t in times]
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(rpm=st.integers(1, 5), times=arrival_times)
def test_retry_exactly_at_retry_after_is_admitted(rpm: int, times: list[float]) -> None:
    state = LimitState()
    limits = Limits(rpm=rpm)
    for t in times:
        result = state.admit("k", limits, now=t)
        if isinstance(result, Refused):
            assert result.retry_after is not None
            assert not state.would_admit("k", limits, now=t + result.retry_after - 1e-6)
            admitted(state.admit("k", limits, now=t + result.retry_after))
            return


def test_sixty_a_minute_not_sixty_one_not_one_twenty() -> None:
    state = LimitState()
    limits = Limits(rpm=60)
    results = [state.admit("k", limits, now=59.0 + i / 100) for i in range(100)]  # a burst at a minute's edge
    assert sum(isinstance(r, Admitted) for r in results) == 60
    # The next minute boundary does not reset anything: the burst is still in the window.
    assert not state.would_admit("k", limits, now=60.5)
    admitted(state.admit("k", limits, now=119.0))  # the burst's first request left the window at 119.0
    assert refused(state.admit("k", limits, now=119.0)).retry_after == pytest.approx(0.01)


# --- Tokens per minute ----------------------------------------------------------------------------

def test_tpm_with_corrections() -> None:
    state = LimitState()
    limits = Limits(tpm=100)
    first = admitted(state.admit("k", limits, now=0.0, est_tokens=60))
    too_much = refused(state.admit("k", limits, now=1.0, est_tokens=50))
    assert too_much.limit is Limit.TOKENS and too_much.retry_after == 59.0
    state.finish(first.ticket, 20, now=2.0)  # the estimate was high: 80 tokens free again
    second = admitted(state.admit("k", limits, now=2.0, est_tokens=50))
    assert second.status.remaining_tokens == 30
    state.finish(second.ticket, 75, now=3.0)  # the estimate was low: the window holds 95
    assert state.status("k", limits, now=3.0).remaining_tokens == 5
    assert refused(state.admit("k", limits, now=4.0, est_tokens=10)).retry_after == 56.0  # when the 20 leave
    admitted(state.admit("k", limits, now=60.0, est_tokens=10))


def test_tpm_correction_after_the_window_changes_nothing() -> None:
    state = LimitState()
    limits = Limits(tpm=100)
    long_request = admitted(state.admit("k", limits, now=0.0, est_tokens=10))
    admitted(state.admit("k", limits, now=61.0, est_tokens=50))
    state.finish(long_request.ticket, 1000, now=62.0)  # admitted 62 s ago: outside the window
    assert state.status("k", limits, now=62.0).remaining_tokens == 50


def test_request_larger_than_tpm_is_never_admitted() -> None:
    state = LimitState()
    result = refused(state.admit("k", Limits(tpm=100), now=0.0, est_tokens=101))
    assert result.limit is Limit.TOKENS and result.retry_after is None
    error = result.error()
    assert error.status == 429 and "retry-after" not in error.headers
    assert "Request too large" in error.message
    assert not state.would_admit("k", Limits(tpm=100), now=0.0, est_tokens=101)
    assert not state.would_admit("other", Limits(tpm=100), now=0.0, est_tokens=101)


@st.composite
def token_ops(draw: st.DrawFn) -> list[tuple[str, float, int]]:
    """("admit", dt, est) | ("finish", dt, actual) | ("release", dt, 0); finish/release close the oldest open ticket."""
    ops = []
    for _ in range(draw(st.integers(0, 60))):
        kind = draw(st.sampled_from(["admit", "admit", "finish", "release"]))
        dt = draw(st.one_of(st.just(0.0), st.sampled_from([0.5, 1.0, 10.0, 30.0, 60.0]), st.floats(0, 40)))
        ops.append((kind, dt, draw(st.integers(0, 120))))
    return ops


@settings(max_examples=300, deadline=None)
@given(tpm=st.integers(1, 300), ops=token_ops())
def test_tpm_matches_a_reference_model(tpm: int, ops: list[tuple[str, float, int]]) -> None:
    """Admission is decided exactly as a plain reading of the rule: tokens in (t-60, t] plus the estimate <= tpm."""
    state = LimitState()
    limits = Limits(tpm=tpm)
    log: list[list[float]] = []  # [admitted_at, tokens], corrected on finish
    open_tickets = []
    now = 0.0

    def used(at: float) -> float:
        return sum(tokens for t, tokens in log if t <= at < t + WINDOW)

    for kind, dt, n in ops:
        now += dt
        if kind == "admit":
            fits = n <= tpm and used(now) + n <= tpm
            assert state.would_admit("k", limits, now=now, est_tokens=n) == fits
            result = state.admit("k", limits, now=now, est_tokens=n)
            assert isinstance(result, Admitted) == fits
            if isinstance(result, Admitted):
                log.append([now, n])
                open_tickets.append((result.ticket, log[-1]))
                assert result.status.remaining_tokens == max(0, tpm - used(now))
            elif result.retry_after is None:
                assert n > tpm
            else:
                retry = now + result.retry_after
                assert used(retry) + n <= tpm < used(retry - 1e-6) + n
        elif open_tickets:
            ticket, entry = open_tickets.pop(0)
            actual = n if kind == "finish" else 0
            if kind == "finish":
                state.finish(ticket, actual, now=now)
            else:
                state.release(ticket)
            if now < entry[0] + WINDOW:
                entry[1] = actual
        assert state.status("k", limits, now=now).remaining_tokens == max(0, tpm - used(now))


# --- Concurrency -------------------------------------------------------------------------------

def test_concurrency() -> None:
    state = LimitState()
    limits = Limits(max_concurrent=2)
    a = admitted(state.admit("k", limits, now=0.0))
    b = admitted(state.admit("k", limits, now=0.0))
    full = refused(state.admit("k", limits, now=0.0))
    assert full.limit is Limit.CONCURRENCY and full.retry_after == CONCURRENCY_RETRY_AFTER
    assert not state.would_admit("k", limits, now=100.0)  # time does not free a slot, an ending does
    state.finish(a.ticket, 10, now=1.0)
    state.finish(a.ticket, 10, now=1.0)  # idempotent: does not free a second slot
    c = admitted(state.admit("k", limits, now=1.0))
    refused(state.admit("k", limits, now=1.0))
    state.release(b.ticket)
    state.release(b.ticket)
    assert b.ticket.closed
    admitted(state.admit("k", limits, now=1.0))
    refused(state.admit("k", limits, now=1.0))
    state.release(c.ticket)
    assert state.would_admit("k", limits, now=1.0)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5), ops=st.lists(st.booleans(), max_size=80))
def test_concurrency_never_exceeded(n: int, ops: list[bool]) -> None:
    state = LimitState()
    limits = Limits(max_concurrent=n)
    in_flight = []
    for start in ops:
        if start:
            result = state.admit("k", limits, now=0.0)
            assert isinstance(result, Admitted) == (len(in_flight) < n)
            if isinstance(result, Admitted):
                in_flight.append(result.ticket)
        elif in_flight:
            state.finish(in_flight.pop(0), 1, now=0.0)


def test_released_request_still_counts_as_a_request() -> None:
    state = LimitState()
    limits = Limits(rpm=1, tpm=10)
    ticket = admitted(state.admit("k", limits, now=0.0, est_tokens=10)).ticket
    state.release(ticket)
    assert state.status("k", limits, now=0.0).remaining_tokens == 10
    assert refused(state.admit("k", limits, now=1.0)).limit is Limit.REQUESTS


# --- Several limits, refusals ------------------------------------------------------------------

def test_refusal_names_the_longest_wait() -> None:
    state = LimitState()
    limits = Limits(rpm=2, tpm=100, max_concurrent=5)
    admitted(state.admit("k", limits, now=0.0, est_tokens=90))
    admitted(state.admit("k", limits, now=30.0, est_tokens=5))
    result = refused(state.admit("k", limits, now=40.0, est_tokens=20))
    # Both the requests and the tokens free up at 60, when the first request leaves.
    assert result.limit is Limit.REQUESTS and result.retry_after == 20.0
    result = refused(state.admit("k", limits, now=40.0, est_tokens=96))  # needs the 5 at 30 to leave as well
    assert result.limit is Limit.TOKENS and result.retry_after == 50.0


def test_error_envelope_values() -> None:
    state = LimitState()
    limits = Limits(rpm=1, tpm=50)
    admitted(state.admit("k", limits, now=0.0, est_tokens=10))
    error = refused(state.admit("k", limits, now=0.5)).error()
    assert (error.status, error.type, error.code) == (429, "rate_limit_exceeded", "rate_limit_exceeded")
    assert error.headers["retry-after"] == "60"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"] == "59.5s"
    assert error.headers["x-ratelimit-remaining-tokens"] == "40"
    assert "1 requests per minute" in error.message


# --- Clients: the same mechanism, and a check that takes nothing -------------------------------

def test_would_admit_takes_no_slot() -> None:
    clients = LimitState()
    limits = Limits(rpm=2, max_concurrent=1)
    for _ in range(10):
        assert clients.would_admit("client-1", limits, now=0.0)
    ticket = admitted(clients.admit("client-1", limits, now=0.0)).ticket
    assert not clients.would_admit("client-1", limits, now=0.0)  # concurrency
    clients.finish(ticket, 0, now=1.0)
    assert admitted(clients.admit("client-1", limits, now=1.0)).ticket.admitted_at == 1.0
    assert clients.status("client-1", limits, now=1.0).remaining_requests == 0
    assert clients.would_admit("client-2", limits, now=1.0)


def test_subjects_are_independent() -> None:
    state = LimitState()
    admitted(state.admit("a", Limits(rpm=1), now=0.0))
    refused(state.admit("a", Limits(rpm=1), now=0.0))
    admitted(state.admit("b", Limits(rpm=1), now=0.0))


def test_time_going_backwards_is_taken_as_the_latest() -> None:
    state = LimitState()
    admitted(state.admit("k", Limits(rpm=1), now=100.0))
    result = refused(state.admit("k", Limits(rpm=1), now=50.0))
    assert result.retry_after == 60.0


# --- Memory --------------------------------------------------------------------------------------

def test_windows_stay_bounded() -> None:
    state = LimitState()
    limits = Limits(rpm=5, tpm=1000)
    for i in range(10_000):
        result = state.admit("k", limits, now=i * 0.1, est_tokens=1)
        if isinstance(result, Admitted):
            state.finish(result.ticket, 1, now=i * 0.1)
    subject = state._subjects["k"]
    assert len(subject.requests) <= 5 and len(subject.tokens) <= 5


def test_sweep_drops_idle_subjects_only() -> None:
    state = LimitState()
    limits = Limits(rpm=10, tpm=100, max_concurrent=3)
    done = admitted(state.admit("done", limits, now=0.0, est_tokens=5))
    state.finish(done.ticket, 5, now=1.0)
    running = admitted(state.admit("running", limits, now=0.0, est_tokens=5))
    recent = admitted(state.admit("recent", limits, now=50.0))
    state.finish(recent.ticket, 0, now=50.0)
    assert state.sweep(30.0) == 0 and len(state) == 3
    assert state.sweep(60.0) == 1 and set(state._subjects) == {"running", "recent"}
    assert state.sweep(200.0) == 1 and set(state._subjects) == {"running"}  # in flight: kept
    state.finish(running.ticket, 5, now=200.0)
    assert state.sweep(200.0) == 1 and len(state) == 0
    # A swept subject starts afresh.
    assert admitted(state.admit("done", limits, now=201.0)).status.remaining_requests == 9


# --- The store interface ---------------------------------------------------------------------------

async def test_local_store_uses_its_clock() -> None:
    clock = [0.0]
    store: LimitStore = LocalLimitStore(clock=lambda: clock[0])
    limits = Limits(rpm=1, tpm=10)
    first = admitted(await store.admit("k", limits, est_tokens=8))
    assert not await store.would_admit("k", limits)
    assert refused(await store.admit("k", limits)).retry_after == 60.0
    clock[0] = 10.0
    await store.finish(first.ticket, 3)
    assert (await store.status("k", limits)).remaining_tokens == 7
    clock[0] = 60.0
    ticket = admitted(await store.admit("k", limits, est_tokens=1)).ticket
    await store.release(ticket)
    clock[0] = 121.0
    assert await store.sweep() == 1


def test_public_names() -> None:
    defined = {name for name, value in vars(limits_module).items()
               if not name.startswith("_") and getattr(value, "__module__", None) == limits_module.__name__}
    assert defined <= set(limits_module.__all__)
    assert all(hasattr(limits_module, name) for name in limits_module.__all__)


def test_lowered_limits_apply_at_once() -> None:
    state = LimitState()
    for t in (0.0, 10.0, 20.0):
        admitted(state.admit("k", Limits(rpm=3), now=t))
    # The admin lowers the RPM to 1: two of the three must leave first, the second at 70.
    result = refused(state.admit("k", Limits(rpm=1), now=30.0))
    assert result.retry_after == 50.0
    assert result.status.remaining_requests == 0
    admitted(state.admit("k", Limits(rpm=1), now=80.0))
