"""Two copies of one client (the same config.jsonc on two machines, or started twice): the second to
connect serves, the one it replaced says plainly why and from where, and stands by instead of taking the
place back; the dashboard's client view shows the conflict; the owner can make either one take over, and
the one standing by serves once the other leaves."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx

from .harness import Client, Platform, wait_until


def view(platform: Platform, client_id: str) -> dict:
    resp = httpx.get(f"{platform.url}/api/admin/clients/{client_id}", headers=platform.admin_headers, timeout=5)
    resp.raise_for_status()
    return resp.json()


def test_a_second_copy_takes_over_and_the_first_stands_by_without_fighting(
        platform: Platform, stack, start_client: Callable[..., Client]) -> None:
    first = start_client(name="copy")
    assert view(platform, first.client_id)["conflict"] is None
    second = Client(stack.workdir, "copy-2", first.config_path, first.client_id, first.api_key)
    stack.programs.append(second)
    second.start()
    second.wait_state("connected")

    status = first.wait_state("standby", timeout=10)
    assert status["refused"]["code"] == "connection_replaced"
    # Where the other copy runs: its address, host name and process id (two copies on one machine differ there).
    assert f"another instance with this client id connected from 127.0.0.1 ({socket.gethostname()[:40]} pid " \
        f"{second.pid})" in status["refused"]["message"]
    assert "Two copies of this client are running: stop one of them" in first.log()

    # It asks again (every second here: reconnect_max_delay_seconds) and is refused while the other is
    # connected, so the other keeps its connection: no fight.
    connection = view(platform, first.client_id)["live"]["connected_at"]
    shown = wait_until(lambda: (v := view(platform, first.client_id))["conflict"] and v, 10, "the conflict shown")
    assert "two instances with this client id are running" in shown["conflict"]
    assert shown["last_refusal"]["code"] == "client_id_in_use"
    time.sleep(3)
    assert first.status()["state"] == "standby" and second.status()["state"] == "connected"
    assert view(platform, first.client_id)["live"]["connected_at"] == connection
    assert "still standing by" in first.log()
    assert first.log().count("Two copies of this client are running") == 1  # said once, not every try

    # The owner picks the first: it takes over, and now the second stands by.
    taken = httpx.post(first.url + "/platform/register", timeout=15)
    assert taken.status_code == 200 and taken.json()["registered"] is True, taken.text
    second.wait_state("standby", timeout=10)

    # The first goes away: the second serves again by itself.
    first.terminate()
    first.wait_stopped()
    second.wait_state("connected", timeout=10)
    assert "the other instance with this client id left: this one serves now" in second.log()
    wait_until(lambda: view(platform, second.client_id)["connected"] or None, 5, "the client connected again")
    # The one that serves now is alone: no conflict is shown any more.
    assert view(platform, second.client_id)["conflict"] is None
