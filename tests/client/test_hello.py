"""The Hello the client sends carries platform_features.preferred_routing_strategy."""

import dataclasses
from pathlib import Path

import pytest

from arenahub.client.config import ClientConfig
from arenahub.client.link import PlatformLink
from arenahub.client.stats import Stats
from arenahub.protocol import frames


class FakeRelay:
    async def model_list(self):
        return ["m"], None

    async def session_status(self):
        return frames.SessionStatus()


class Stop(Exception):
    pass


class FakeSocket:
    """Records what the client sends, then ends the attempt when the client waits for Welcome."""

    closed = False
    close_code = None

    def __init__(self):
        self.sent = []

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False

    async def send_bytes(self, data):
        self.sent.append(frames.decode(data))

    async def receive(self, timeout=None):
        raise Stop

    async def close(self):
        self.closed = True


class FakeHttp:
    def __init__(self):
        self.ws = FakeSocket()

    async def ws_connect(self, url, **kwargs):
        return self.ws


@pytest.mark.parametrize("strategy", ["fastest", None])
async def test_hello_carries_the_preferred_routing_strategy(strategy):
    config = ClientConfig(path=Path("config.jsonc"), enabled=True, platform_url="http://platform", client_id="cl_1",
                          api_key="ck-secret")
    http = FakeHttp()
    link = PlatformLink(dataclasses.replace(config, preferred_routing_strategy=strategy), FakeRelay(), http,
                        Stats(False))
    with pytest.raises(Stop):
        await link._connect_once()
    [hello] = http.ws.sent
    assert isinstance(hello, frames.Hello)
    assert hello.preferred_routing_strategy == strategy
    assert hello.models == ["m"]
