"""The client's drain wish and its view of the platform's Routing frames, without a connection."""

import pytest

from arenahub.client.drain import DrainBodyError, RoutingView, parse_drain_body
from arenahub.protocol import frames

NORMAL = {"draining": False, "drained_by": None, "drain_reason": None, "maintenance": None, "breaker": "closed"}


@pytest.mark.parametrize("body, reason", [(b"", ""), (b"  \n", ""), (b"{}", ""), (b'{"reason": "upgrading"}',
                                                                                   "upgrading"),
                                          ('{"reason": "%s"}' % ("x" * 200), "x" * 200)])
def test_drain_body_gives_the_reason(body, reason):
    assert parse_drain_body(body if isinstance(body, bytes) else body.encode()) == reason


@pytest.mark.parametrize("body, says", [
    (b"{", "not valid JSON"),
    (b'"upgrading"', '{"reason": "..."}'),
    (b"[]", '{"reason": "..."}'),
    (b'{"reason": 5}', "$.reason"),
    (b'{"reasn": "typo"}', "reasn"),
    (('{"reason": "%s"}' % ("x" * 201)).encode(), "at most 200"),
])
def test_bad_drain_bodies_say_what_is_wrong(body, says):
    with pytest.raises(DrainBodyError) as info:
        parse_drain_body(body)
    assert says in str(info.value)


def test_the_wish_is_kept_and_becomes_the_frame():
    view = RoutingView()
    assert view.public_request() == {"requested": False, "reason": None}
    assert view.request(True, "upgrading") == frames.Drain(draining=True, reason="upgrading")
    assert view.drain_frame() == frames.Drain(draining=True, reason="upgrading")
    assert view.public_request() == {"requested": True, "reason": "upgrading"}
    assert view.request(False, "ignored") == frames.Drain(draining=False, reason="")
    assert view.public_request() == {"requested": False, "reason": None}


def test_routing_is_normal_until_told_and_again_on_a_new_connection():
    view = RoutingView()
    assert view.public() == NORMAL
    view.request(True, "upgrading")
    assert view.update(frames.Routing(draining=True, drain_reason="upgrading")) is None
    assert view.public() == {**NORMAL, "draining": True, "drained_by": "client", "drain_reason": "upgrading"}
    view.connected()
    assert view.public() == NORMAL
    assert view.public_request()["requested"] is True  # the wish outlives the connection


def test_a_drain_the_client_did_not_ask_for_is_the_admins():
    view = RoutingView()
    view.update(frames.Routing(draining=True, drain_reason="drained by an administrator"))
    assert (view.public()["drained_by"], view.public()["drain_reason"]) == ("admin", "drained by an administrator")


def test_maintenance_and_an_open_breaker_are_warnings():
    view = RoutingView()
    warning = view.update(frames.Routing(maintenance="dropped 5 requests in an hour", breaker="open"))
    assert warning is not None
    assert "maintenance: dropped 5 requests in an hour" in warning and "circuit breaker open" in warning
    assert view.public() == {**NORMAL, "maintenance": "dropped 5 requests in an hour", "breaker": "open"}
    assert view.update(frames.Routing(breaker="half_open")) is None
    assert view.update(frames.Routing()) is None
