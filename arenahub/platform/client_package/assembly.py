"""The package itself: the files filled in for one client, zipped in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from importlib import resources

from arenahub.bridge import userscript
from arenahub.platform.client_package.archive import EXECUTABLE, REGULAR, zip_bytes
from arenahub.platform.client_package.inputs import (
    DEFAULT_BRIDGE_URL,
    DEFAULT_CAPABILITIES,
    package_inputs,
)
from arenahub.platform.client_package.start_script import start_script
from arenahub.platform.client_package.texts import (
    INTEGRATION_FILE,
    config_text,
    readme_text,
    requirements_text,
)
from arenahub.platform.client_package.wheel import Wheel, build_wheel


def build_client_package(*, platform_url: str, client_id: str, api_key: str, client_name: str = "",
                         bridge_url: str = DEFAULT_BRIDGE_URL, heartbeat_interval_seconds: float = 30.0,
                         capabilities: Sequence[str] = DEFAULT_CAPABILITIES, max_concurrent_requests: int = 4,
                         wheel: Wheel | None = None, made_at: dt.datetime | None = None) -> bytes:
    """The ZIP for one client, in memory. ``platform_url`` is the platform's ``/api`` base as the client
    reaches it; ``api_key`` the client's fresh key (it goes into config.jsonc and nowhere else).
    ``wheel`` defaults to a new build: pass ``WheelCache().get()`` to reuse one.
    Raises ClientPackageError for a bad input."""
    client = package_inputs(platform_url=platform_url, client_id=client_id, api_key=api_key,
                            client_name=client_name, bridge_url=bridge_url,
                            heartbeat_interval_seconds=heartbeat_interval_seconds, capabilities=capabilities,
                            max_concurrent_requests=max_concurrent_requests, made_at=made_at)
    wheel = wheel or build_wheel()
    integration = resources.files("arenahub.integration").joinpath(INTEGRATION_FILE).read_bytes()
    files: list[tuple[str, bytes, int]] = [
        ("README.txt", readme_text(client, wheel).encode(), REGULAR),
        ("config.jsonc", config_text(client).encode(), REGULAR),
        ("start_client.sh", start_script(client, wheel).encode(), EXECUTABLE),
        ("userscript.js", userscript.render(client.userscript_url).encode(), REGULAR),
        ("requirements_platform.txt", requirements_text(client, wheel).encode(), REGULAR),
        (INTEGRATION_FILE, integration, REGULAR),
        (wheel.filename, wheel.data, REGULAR),
    ]
    when = client.made_at
    return zip_bytes(files, (when.year, when.month, when.day, when.hour, when.minute, when.second))
