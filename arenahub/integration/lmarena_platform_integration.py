"""Platform integration for the existing LMArenaBridge, in one file: copy it beside its api_server.py.

It connects the bridge to the arenahub platform (the client of ``arenahub client``) and serves the
client's local endpoints: the seed's ``GET /health``, ``GET /platform/status`` and
``POST /platform/register``, and ``POST /platform/drain``, ``POST /platform/undrain``.
It needs the ``arenahub`` package installed next to the bridge::

    pip install arenahub          # or: pip install -r requirements_platform.txt (client package)
    cp "$(python -c 'import arenahub.integration.lmarena_platform_integration as m; print(m.__file__)')" \\
       /path/to/LMArenaBridge/

Settings come from the bridge's own config.jsonc (the one beside this file): the
``platform_integration`` section of the client package, plus the top-level ``api_key`` the bridge
itself checks. Two ways to run it:

a) Beside the bridge, as its own program (the bridge stays untouched)::

       python api_server.py                                  # the bridge, on 5102
       python lmarena_platform_integration.py [--config config.jsonc] [--host 127.0.0.1] [--port 5103]

   It relays the platform's requests to ``lmarena_bridge_url`` from config.jsonc (default
   http://127.0.0.1:5102) and serves the local endpoints on 127.0.0.1:5103. The bridge's
   ``id_updater.py`` also listens on 5103 while it captures ids: pass another ``--port`` to run both.

b) Inside the bridge: add two lines to api_server.py, after ``app = FastAPI(...)``::

       import lmarena_platform_integration
       lmarena_platform_integration.mount(app)

   The bridge itself (on 5102) then serves the local endpoints, and the platform link starts and
   stops with it, relaying to the same server at http://127.0.0.1:5102 (``mount(app, port=...)``
   if it listens elsewhere). Without a ``platform_integration`` section the endpoints answer with
   ``"enabled": false`` and nothing connects.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

_NEEDS = "pip install arenahub (or pip install -r requirements_platform.txt from your client package)"

try:
    from arenahub.client import local_api
    from arenahub.client.app import running_link, serve
    from arenahub.client.config import (
        ClientConfig,
        disabled_client_config,
        load_client_config,
    )
    from arenahub.jsonc import ConfigError
except ImportError as exc:
    if importlib.util.find_spec("arenahub") is None:
        _message = (f"lmarena_platform_integration needs the arenahub package, which is not installed in this "
                    f"Python ({sys.executable}): {_NEEDS}.")
    else:
        _message = (f"lmarena_platform_integration: arenahub is installed, but it cannot be imported ({exc}): "
                    f"{_NEEDS} again.")
    if __name__ == "__main__":
        sys.exit(_message)
    raise ImportError(_message, name=exc.name) from exc

HERE = Path(__file__).resolve().parent
CONFIG_FILE = HERE / "config.jsonc"
BRIDGE_PORT = 5102  # where LMArenaBridge's api_server.py listens
LOCAL_PORT = 5103
PATHS = tuple(route.path for route in local_api.routes)


def read_config(path: Path | str = CONFIG_FILE, *, required: bool = True) -> ClientConfig:
    """The client settings from config.jsonc; without a platform_integration section, an error
    (``required``) or a disabled integration. Raises ConfigError naming file, line and key."""
    try:
        return load_client_config(path)
    except ConfigError as exc:
        if exc.key != "platform_integration" or exc.reason != "is required":
            raise
        if required:
            raise ConfigError(exc.path, "is required: copy the platform_integration section from the "
                              "config.jsonc of your client package", key=exc.key) from None
        return disabled_client_config(Path(path))


def mount(app: Any, *, config: Path | str = CONFIG_FILE, port: int = BRIDGE_PORT) -> ClientConfig:
    """Serve the local endpoints from ``app`` (api_server.py's FastAPI app, or any Starlette app) and
    run the platform link while ``app`` runs, relaying to http://127.0.0.1:``port``.

    Returns the settings in use. Raises ConfigError for a bad config.jsonc, TypeError for an object
    that is not a Starlette/FastAPI app, ValueError if ``app`` already serves one of the paths.
    """
    router: Any = getattr(app, "router", None)  # duck-typed: FastAPI's or Starlette's Router
    if not (isinstance(getattr(router, "routes", None), list) and hasattr(router, "lifespan_context")):
        raise TypeError(f"mount() takes the FastAPI or Starlette app (app = FastAPI(...)), got {app!r}")
    taken = sorted(set(PATHS) & {getattr(route, "path", None) for route in router.routes})
    if taken:
        raise ValueError(f"the app already serves {', '.join(taken)}: call mount(app) once, on an app "
                         "without these routes")
    # The link relays to this very server, with the key it checks (top-level api_key).
    fixed: dict[str, Any] = {"lmarena_bridge_url": f"http://127.0.0.1:{port}"}
    client_config = dataclasses.replace(read_config(config, required=False), **fixed)
    router.routes[0:0] = list(local_api.routes)
    # Wrap whatever start-up the app has (lifespan= or on_startup/on_shutdown handlers): the app
    # starts first and stops last, the link runs in between.
    app_lifespan = router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        async with app_lifespan(asgi_app) as state:
            logging.getLogger("arenahub").setLevel(client_config.log_level)
            async with running_link(client_config, fixed) as link:
                app.state.link = link
                yield state

    router.lifespan_context = lifespan
    return client_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python lmarena_platform_integration.py",
        description="Connect a running LMArenaBridge to the arenahub platform (see this file's docstring).")
    parser.add_argument("--config", default=str(CONFIG_FILE),
                        help="config.jsonc with a platform_integration section (default: the one beside this file)")
    parser.add_argument("--host", default="127.0.0.1", help="address of the local endpoints (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=LOCAL_PORT,
                        help=f"port of the local endpoints (default {LOCAL_PORT})")
    args = parser.parse_args(argv)
    try:
        client_config = read_config(args.config)
    except ConfigError as exc:
        print(f"lmarena_platform_integration: bad config: {exc}", file=sys.stderr)
        return 2
    return serve(client_config, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
