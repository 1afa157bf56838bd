import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arenahub.platform import billing
from arenahub.platform.billing import (
    DEFAULT_PRICE,
    DuplicateRequest,
    InsufficientQuota,
    InvalidAmount,
    Kind,
    Ledger,
    Price,
    PriceTable,
    ReservationClosed,
    UnknownReservation,
    Usage,
    client_statement,
    cost,
    estimate_reservation,
    format_usd,
    key_statement,
    parse_usd,
    totals,
)
from arenahub.protocol.errors import ApiError
from arenahub.protocol.openai import error_body

# --- pricing -----------------------------------------------------------------------------------

GPT = Price(prompt_per_1m=2_500_000, completion_per_1m=10_000_000)  # $2.50 / $10.00 per 1M


@pytest.mark.parametrize("price, prompt, completion, images, expected", [
    (GPT, 0, 0, 0, 0),
    (GPT, 1_000_000, 0, 0, 2_500_000),
    (GPT, 0, 1_000_000, 0, 10_000_000),
    (GPT, 1_000, 500, 0, 7_500),  # 2.5 + 5 = 7,500 micro-USD exactly
    (GPT, 1, 0, 0, 3),  # 2.5 micro-USD rounds up to 3
    (GPT, 1, 1, 0, 13),  # 12.5 -> 13: rounded once on the sum, not per part (3 + 10)
    (Price(1, 1), 1, 0, 0, 1),  # a millionth of a micro-dollar still costs 1
    (Price(1, 1), 999_999, 1, 0, 1),  # exactly 1: no rounding
    (Price(1, 1), 1_000_000, 1, 0, 2),
    (Price(0, 0, per_image=40_000), 0, 0, 3, 120_000),
    (Price(1_000_000, 0, per_image=40_000), 1, 0, 1, 40_001),
    (Price(0, 0), 10**9, 10**9, 0, 0),
])
def test_cost_rounds_up_to_the_micro_dollar_once_per_request(price, prompt, completion, images, expected):
    assert cost(price, prompt, completion, images) == expected


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_cost_refuses_token_counts_that_are_not_counts(bad):
    with pytest.raises(ValueError, match="prompt_tokens must be a non-negative integer"):
        cost(GPT, bad, 0)


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**7), st.integers(0, 10**8))
def test_cost_is_never_below_the_exact_value_nor_a_micro_dollar_above(prompt, completion, p_rate, c_rate):
    price = Price(p_rate, c_rate)
    exact_times_1m = prompt * p_rate + completion * c_rate
    c = cost(price, prompt, completion)
    assert c * 1_000_000 >= exact_times_1m > (c - 1) * 1_000_000 or (c == 0 and exact_times_1m == 0)


@pytest.mark.parametrize("text, micros", [
    ("12.50", 12_500_000), ("12.5", 12_500_000), ("12", 12_000_000), ("0", 0), ("0.000001", 1),
    (" 3.25 ", 3_250_000), ("007.1", 7_100_000), ("1000000000", 10**15),
])
def test_parse_usd(text, micros):
    assert parse_usd(text) == micros


@pytest.mark.parametrize("text, fragment", [
    ("", "is empty"),
    ("   ", "is empty"),
    ("abc", "is not a USD amount"),
    ("$12", "no currency sign"),
    ("1,000", "is not a USD amount"),
    ("1e3", "is not a USD amount"),
    ("12.", "is not a USD amount"),
    (".5", "is not a USD amount"),
    ("nan", "is not a USD amount"),
    ("-1", "is negative"),
    ("0.0000001", "has 7 decimals"),
    ("1000000001", "too large"),
    ("99999999999999999999", "too large"),
])
def test_parse_usd_says_what_is_wrong(text, fragment):
    with pytest.raises(InvalidAmount, match=fragment) as err:
        parse_usd(text, field="credit")
    assert "credit" in err.value.message and err.value.status == 400 and err.value.param == "credit"


def test_invalid_amount_is_both_an_api_error_and_a_value_error():
    with pytest.raises(ValueError):
        parse_usd("x")
    assert issubclass(InvalidAmount, ApiError)


def test_parse_usd_signed_for_adjustments():
    assert parse_usd("-1.5", signed=True) == -1_500_000


@pytest.mark.parametrize("micros, text", [
    (12_500_000, "12.50"), (0, "0.00"), (1, "0.000001"), (1_234_567, "1.234567"), (10_000, "0.01"),
    (-2_500_000, "-2.50"), (10**15, "1000000000.00"),
])
def test_format_usd(micros, text):
    assert format_usd(micros) == text


@given(st.integers(-(10**15), 10**15))
def test_format_then_parse_is_identity(micros):
    assert parse_usd(format_usd(micros), signed=True) == micros


def test_price_from_usd_and_validation():
    assert Price.from_usd("2.50", "10", "0.04") == Price(2_500_000, 10_000_000, 40_000)
    assert Price.from_usd("2.50", "10").as_usd() == {"prompt_per_1m": "2.50", "completion_per_1m": "10.00",
                                                     "per_image": "0.00"}
    with pytest.raises(InvalidAmount, match="completion price"):
        Price.from_usd("1", "-2")
    with pytest.raises(InvalidAmount, match="prompt_per_1m must be a whole number of micro-USD"):
        Price(2.5, 0)  # type: ignore[arg-type]


def test_price_table_overrides_defaults_and_falls_back():
    table = PriceTable({"gpt-4o": Price(1, 2)})
    assert table.price("gpt-4o") == Price(1, 2)
    assert table.price("gpt-4o-mini") == billing.DEFAULT_PRICES["gpt-4o-mini"]
    assert table.price("some-new-model") == DEFAULT_PRICE
    table.set("some-new-model", Price(5, 5))
    assert table.price("some-new-model") == Price(5, 5)
    assert DEFAULT_PRICE.prompt_per_1m > 0 and DEFAULT_PRICE.completion_per_1m > 0


@pytest.mark.parametrize("max_tokens, completion_reserved", [(None, 1_024), (100, 100), (0, 0), (100_000, 4_096)])
def test_estimate_reservation(max_tokens, completion_reserved):
    price = Price(1_000_000, 1_000_000)  # 1 micro-USD a token
    assert estimate_reservation(price, 50, max_tokens) == 50 + completion_reserved


# --- the ledger --------------------------------------------------------------------------------

def fixed_clock(start=datetime(2026, 1, 1, 12, tzinfo=UTC)):
    now = [start]

    def clock():
        return now[0]
    clock.now = now
    return clock


def make_ledger(**kw):
    ids = count(1)
    return Ledger(new_id=lambda: f"e{next(ids)}", **kw)


def test_reserve_settle_release_move_the_right_figures():
    ledger = make_ledger()
    ledger.topup("k", 1_000)
    r1 = ledger.reserve("k", "req1", 300)
    r2 = ledger.reserve("k", "req2", 200)
    acc = ledger.account("k")
    assert (acc.balance, acc.held, acc.available) == (1_000, 500, 500)
    ledger.settle(r1, 250, client_id="c1", model="m", usage=Usage(10, 20))
    ledger.release(r2)
    acc = ledger.account("k")
    assert (acc.balance, acc.held, acc.available) == (750, 0, 750)
    assert ledger.recompute("k") == acc
    assert [e.kind for e in ledger.entries("k")] == ["topup", "reserve", "reserve", "settle", "release"]
    ledger.verify()


def test_insufficient_quota_is_a_402_naming_the_balance():
    ledger = make_ledger()
    ledger.topup("k", 2_500_000)
    ledger.reserve("k", "a", 2_000_000)
    with pytest.raises(InsufficientQuota) as err:
        ledger.reserve("k", "b", 1_000_000)
    e = err.value
    assert isinstance(e, ApiError) and e.status == 402
    assert e.type == "insufficient_quota" and e.code == "insufficient_quota"
    assert "available balance is 0.50 USD" in e.message and "balance 2.50 USD" in e.message
    assert "2.00 USD held" in e.message and "needs up to 1.00 USD" in e.message
    assert json.loads(error_body(e))["error"]["code"] == "insufficient_quota"
    assert [r.request_id for r in ledger.open_reservations("k")] == ["a"]  # the refusal left no trace


def test_a_reservation_with_a_minimum_holds_what_the_key_has_between_the_two():
    ledger = make_ledger()
    ledger.topup("k", 1_000)
    assert ledger.reserve("k", "a", 600, minimum=100).amount == 600  # all of it is there
    assert ledger.reserve("k", "b", 600, minimum=100).amount == 400  # what is left, above the minimum
    with pytest.raises(InsufficientQuota, match="needs up to 0.0001 USD"):  # the minimum is what it needs
        ledger.reserve("k", "c", 600, minimum=100)
    assert ledger.reserve("u", "d", 600, minimum=100, unlimited=True).amount == 600


def test_a_key_never_opened_has_no_credit():
    with pytest.raises(InsufficientQuota, match="available balance is 0.00 USD"):
        make_ledger().reserve("nobody", "r", 1)


def test_settle_may_exceed_the_reservation_up_to_what_is_available():
    ledger = make_ledger()
    ledger.topup("k", 1_000)
    r = ledger.reserve("k", "r", 100)
    e = ledger.settle(r, 400, client_id="c", model="m", usage=Usage(1, 1))
    assert (e.charge, e.uncharged) == (400, 0)
    r = ledger.reserve("k", "r2", 100)
    e = ledger.settle(r, 5_000, client_id="c", model="m", usage=Usage(1, 1))
    assert (e.charge, e.uncharged) == (600, 4_400)  # capped: the balance stops at zero
    assert ledger.account("k").balance == 0


def test_settle_cap_leaves_other_reservations_covered():
    ledger = make_ledger()
    ledger.topup("k", 1_000)
    a = ledger.reserve("k", "a", 300)
    b = ledger.reserve("k", "b", 300)
    assert ledger.settle(a, 10_000, client_id="c", model="m", usage=Usage()).charge == 700
    assert ledger.settle(b, 300, client_id="c", model="m", usage=Usage()).charge == 300
    assert ledger.account("k").balance == 0


def test_after_a_negative_adjustment_a_request_is_charged_at_most_its_reservation():
    ledger = make_ledger()
    ledger.topup("k", 1_000)
    r = ledger.reserve("k", "r", 800)
    ledger.adjust("k", -900, note="refund reversed")
    e = ledger.settle(r, 2_000, client_id="c", model="m", usage=Usage())
    assert e.charge == 800 and ledger.account("k").balance == -700
    with pytest.raises(InsufficientQuota):
        ledger.reserve("k", "r2", 1)


def test_unlimited_keys_are_always_admitted_and_their_spend_is_tracked():
    ledger = make_ledger()
    ledger.open_account("u", unlimited=True)
    r = ledger.reserve("u", "r", 10**9)
    ledger.settle(r, 5_000, client_id="c", model="m", usage=Usage(3, 4))
    assert ledger.account("u").balance == -5_000 and ledger.account("u").unlimited


def test_settling_twice_never_charges_twice():
    ledger = make_ledger()
    ledger.topup("k", 1_000)
    r = ledger.reserve("k", "r", 100)
    first = ledger.settle(r, 100, client_id="c", model="m", usage=Usage(1, 2))
    again = ledger.settle(r, 999, client_id="c", model="m", usage=Usage(1, 2))
    assert again is first
    assert ledger.account("k").balance == 900
    assert ledger.earnings("c").requests == 1 and ledger.earnings("c").value == 100
    # a retry may carry its own copy of the reservation: still the same request, still one charge
    copy = billing.Reservation(r.key_id, r.request_id, r.amount, r.entry_id)
    assert ledger.settle(copy, 100, client_id="c", model="m", usage=Usage(1, 2)) is first


def test_releasing_twice_is_a_no_op_and_mixed_closings_raise():
    ledger = make_ledger()
    ledger.topup("k", 1_000)
    r = ledger.reserve("k", "r", 100)
    first = ledger.release(r)
    assert ledger.release(r) is first
    with pytest.raises(ReservationClosed, match="already released; it cannot be settled"):
        ledger.settle(r, 100, client_id="c", model="m", usage=Usage())
    s = ledger.reserve("k", "s", 100)
    ledger.settle(s, 50, client_id="c", model="m", usage=Usage())
    with pytest.raises(ReservationClosed, match="already settled"):
        ledger.release(s)
    assert ledger.account("k").balance == 950 and ledger.account("k").held == 0


def test_a_request_id_is_reserved_once_and_unknown_reservations_are_refused():
    ledger = make_ledger()
    ledger.topup("k", 1_000)
    r = ledger.reserve("k", "r", 1)
    with pytest.raises(DuplicateRequest):
        ledger.reserve("k", "r", 1)
    ledger.release(r)
    with pytest.raises(DuplicateRequest):
        ledger.reserve("k", "r", 1)
    with pytest.raises(UnknownReservation):
        ledger.release(billing.Reservation("k", "never", 1, "x"))


@pytest.mark.parametrize("op, amount, fragment", [
    ("topup", 0, "more than 0"), ("topup", -5, "must not be negative"), ("topup", 1.5, "whole number"),
    ("adjust", 10**16, "too large"),
])
def test_amounts_are_validated(op, amount, fragment):
    with pytest.raises(InvalidAmount, match=fragment):
        getattr(make_ledger(), op)("k", amount)


def test_settle_credits_the_serving_client():
    ledger = make_ledger()
    ledger.topup("k", 10_000)
    for i, client in enumerate(["c1", "c1", "c2"]):
        r = ledger.reserve("k", f"r{i}", 1_000)
        ledger.settle(r, 100 * (i + 1), client_id=client, model="m", usage=Usage(10, 5, images=i))
    c1 = ledger.earnings("c1")
    assert (c1.requests, c1.prompt_tokens, c1.completion_tokens, c1.images, c1.value) == (2, 20, 10, 1, 300)
    assert ledger.earnings("c2").value == 300 and ledger.earnings("nobody").requests == 0


def test_new_entries_are_drained_once_and_a_ledger_rebuilds_from_them():
    ledger = make_ledger()
    ledger.topup("k", 1_000)
    ledger.open_account("u", unlimited=True)
    a = ledger.reserve("k", "a", 100)
    batch1 = ledger.drain_new_entries()
    assert [e.kind for e in batch1] == [Kind.TOPUP, Kind.RESERVE]
    ledger.settle(a, 80, client_id="c", model="m", usage=Usage(1, 2))
    ledger.reserve("k", "b", 200)
    ledger.reserve("u", "x", 50)
    batch2 = ledger.drain_new_entries()
    assert [e.kind for e in batch2] == [Kind.SETTLE, Kind.RESERVE, Kind.RESERVE]
    assert ledger.drain_new_entries() == []

    rebuilt = make_ledger()
    rebuilt.open_account("u", unlimited=True)
    rebuilt.load(batch1 + batch2)
    assert rebuilt.drain_new_entries() == []
    for key in ("k", "u"):
        assert rebuilt.account(key) == ledger.account(key)
    assert rebuilt.open_reservations() == ledger.open_reservations()
    assert rebuilt.earnings("c") == ledger.earnings("c")
    with pytest.raises(DuplicateRequest):
        rebuilt.reserve("k", "a", 1)  # idempotency survives a restart


# --- statements --------------------------------------------------------------------------------

def test_statements_by_key_and_client_by_day_and_model():
    clock = fixed_clock()
    ledger = make_ledger(clock=clock)
    ledger.topup("k1", 10**9)
    ledger.topup("k2", 10**9)
    served = [  # day offset, key, client, model, actual, usage
        (0, "k1", "c1", "gpt-4o", 100, Usage(10, 20)),
        (0, "k1", "c1", "gpt-4o", 150, Usage(1, 2)),
        (0, "k1", "c2", "claude", 70, Usage(5, 5)),
        (1, "k1", "c1", "gpt-4o", 30, Usage(3, 3, images=1)),
        (1, "k2", "c2", "claude", 40, Usage(4, 4)),
    ]
    for i, (day, key, client, model, actual, usage) in enumerate(served):
        clock.now[0] = datetime(2026, 1, 1 + day, 23, 59, tzinfo=UTC)
        r = ledger.reserve(key, f"r{i}", 1_000)
        ledger.settle(r, actual, client_id=client, model=model, usage=usage)
    ledger.release(ledger.reserve("k1", "failed", 1_000))  # not a served request

    lines = key_statement(ledger.entries(), key_id="k1")
    assert [(ln.day, ln.model, ln.requests, ln.prompt_tokens, ln.completion_tokens, ln.cost) for ln in lines] == [
        (date(2026, 1, 1), "claude", 1, 5, 5, 70),
        (date(2026, 1, 1), "gpt-4o", 2, 11, 22, 250),
        (date(2026, 1, 2), "gpt-4o", 1, 3, 3, 30),
    ]
    assert totals(lines).cost == 350 == -sum(e.amount for e in ledger.entries("k1") if e.kind == "settle")

    by_client = client_statement(ledger.entries())
    assert [(ln.account, ln.day.day, ln.model, ln.requests, ln.cost) for ln in by_client] == [
        ("c1", 1, "gpt-4o", 2, 250), ("c1", 2, "gpt-4o", 1, 30), ("c2", 1, "claude", 1, 70),
        ("c2", 2, "claude", 1, 40),
    ]
    assert totals(client_statement(ledger.entries(), client_id="c2")).cost == ledger.earnings("c2").value

    since = key_statement(ledger.entries(), since=datetime(2026, 1, 2, tzinfo=UTC))
    assert [(ln.account, ln.cost) for ln in since] == [("k1", 30), ("k2", 40)]
    until = key_statement(ledger.entries(), until=datetime(2026, 1, 2, tzinfo=UTC))
    assert totals(until).requests == 3


# --- invariants under random operations ---------------------------------------------------------

KEYS = ["a", "b", "u"]  # "u" is unlimited

operations = st.lists(st.one_of(
    st.tuples(st.just("topup"), st.sampled_from(KEYS), st.integers(1, 5_000)),
    st.tuples(st.just("reserve"), st.sampled_from(KEYS), st.integers(0, 3_000)),
    st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 10_000)),
    st.tuples(st.just("release"), st.integers(0, 50), st.just(0)),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_balances_equal_the_entries_and_nothing_is_overspent_or_charged_twice(ops):
    ledger = make_ledger()
    ledger.open_account("u", unlimited=True)
    reservations = []
    persisted = []
    for op, target, amount in ops:
        if op == "topup":
            ledger.topup(target, amount)
        elif op == "reserve":
            before = ledger.account(target)
            try:
                reservations.append(ledger.reserve(target, f"r{len(reservations)}-{target}", amount))
            except InsufficientQuota:
                assert not before.unlimited and before.available < amount
            else:
                assert before.unlimited or before.available >= amount
        elif reservations:
            r = reservations[target % len(reservations)]
            try:
                if op == "settle":
                    available = ledger.account(r.key_id).available
                    was_open = r in ledger.open_reservations()
                    e = ledger.settle(r, amount, client_id=f"c{target % 2}", model="m", usage=Usage(1, 1))
                    if was_open and r.key_id != "u":
                        assert e.charge == min(amount, r.amount + max(0, available))
                else:
                    ledger.release(r)
            except ReservationClosed:
                pass
        persisted += ledger.drain_new_entries()

        for key in KEYS:
            acc = ledger.account(key)
            mine = [e for e in persisted if e.key_id == key]
            assert acc.balance == sum(e.amount for e in mine)
            assert acc.held == sum(e.hold for e in mine) >= 0
            assert ledger.recompute(key) == acc
            if key != "u":
                assert acc.balance >= 0 and acc.available >= 0

    closings = [e.request_id for e in persisted if e.kind in (Kind.SETTLE, Kind.RELEASE)]
    assert len(closings) == len(set(closings))  # no request closed (so charged) twice
    open_ids = {r.request_id for r in ledger.open_reservations()}
    assert open_ids | set(closings) == {r.request_id for r in reservations}
    charged = sum(e.charge for e in persisted)
    assert charged == sum(ledger.earnings(c).value for c in ("c0", "c1"))
    ledger.verify()


# --- the race: credit for 100 requests, 1,000 at once --------------------------------------------

@pytest.mark.parametrize("overrun", [0, 1, 500])
def test_credit_for_100_requests_admits_at_most_100_of_1000(overrun):
    price = Price(1_000_000, 1_000_000)
    reservation = estimate_reservation(price, 100, 900)  # 1,000 micro-USD a request
    ledger = Ledger()
    ledger.topup("k", 100 * reservation)
    start = threading.Barrier(50)

    def request(i):
        if i < 50:
            start.wait()
        try:
            r = ledger.reserve("k", f"req-{i}", reservation)
        except InsufficientQuota:
            return False
        # the answer may run longer than reserved; settling then charges up to what is left
        ledger.settle(r, reservation + overrun, client_id="c", model="m", usage=Usage(100, 900 + overrun))
        return True

    with ThreadPoolExecutor(max_workers=50) as pool:
        admitted = sum(pool.map(request, range(1_000)))

    assert admitted <= 101
    if overrun == 0:
        assert admitted == 100
    account = ledger.account("k")
    assert account.balance >= 0 and account.held == 0
    assert ledger.recompute("k") == account
    charges = [e for e in ledger.entries("k") if e.kind is Kind.SETTLE]
    assert len(charges) == admitted == len({e.request_id for e in charges})


def test_public_names_are_listed():
    exported = {n for n in dir(billing) if not n.startswith("_") and n not in {"ledger", "pricing", "statements"}}
    assert exported == set(billing.__all__)
