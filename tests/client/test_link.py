from arenahub.client.reconnect import Backoff, PlatformUrls
from arenahub.client.relay import _error_from_body


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    b = Backoff(base=0.5, cap=4.0)
    delays = [b.next_delay() for _ in range(8)]
    bounds = [0.5, 1, 2, 4, 4, 4, 4, 4]
    for delay, full in zip(delays, bounds, strict=True):
        assert full / 2 <= delay <= full
    b.reset()
    assert b.next_delay() <= 0.5


def test_backoff_jitter_spreads_clients():
    delays = {Backoff(base=1, cap=8).next_delay() for _ in range(20)}
    assert len(delays) > 10


def test_bridge_errors_keep_message_and_say_whether_to_retry():
    err = _error_from_body(401, b'{"error": {"message": "bad key", "type": "auth", "code": "invalid_api_key"}}')
    assert (err.status, err.code, err.message, err.retryable) == (401, "invalid_api_key", "bad key", False)
    assert _error_from_body(503, b'{"detail": "browser not connected"}').message == "browser not connected"
    assert _error_from_body(503, b"").retryable
    assert _error_from_body(429, b"{}").retryable
    assert "oops" in _error_from_body(500, b"<html>oops</html>").message


def test_the_platforms_urls_are_tried_in_turn_then_backed_off():
    urls = PlatformUrls(("http://a/api", "http://b/api", "http://c/api"))
    first = urls.current
    assert urls.next_after_loss(was_connected=True) is not None and urls.current != first  # its instance died
    assert urls.next_after_loss(was_connected=False) is not None  # the next one failed too
    assert urls.next_after_loss(was_connected=False) is not None
    assert urls.next_after_loss(was_connected=False) is None  # all three failed in a row: back off
    assert urls.current in urls.urls
    urls.connected()
    assert urls.next_after_loss(was_connected=True) is not None
    assert PlatformUrls(("http://only/api",)).next_after_loss(was_connected=True) is None
