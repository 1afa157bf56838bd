"""The texts of the package's files: config.jsonc, README.txt and requirements_platform.txt
(``start_script`` has start_client.sh)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from arenahub.platform.client_package.inputs import PackageInputs
from arenahub.platform.client_package.wheel import Wheel

INTEGRATION_FILE = "lmarena_platform_integration.py"


def config_text(c: PackageInputs) -> str:
    q = json.dumps
    platform_origin = "{0.scheme}://{0.netloc}".format(urlsplit(c.platform_url))
    return f"""\
// config.jsonc of arenahub client {c.client_id} ("{c.name}"), made by the platform on {c.made_at_text}.
// Read by `arenahub bridge --config config.jsonc` (what start_client.sh runs: the bridge, with the
// client inside it), by `arenahub client --config config.jsonc`, and by lmarena_platform_integration.py.
// Comments and trailing commas are fine. Keep this file private: it holds this client's API key.
{{
  // -- The connection to the platform ----------------------------------------------------------
  "platform_integration": {{
    "enabled": true,
    // The platform's API base; the client connects out to it over a WebSocket ({{platform_url}}/ws).
    "platform_url": {q(c.platform_url)},
    "client_id": {q(c.client_id)},
    // Secret. When the key is regenerated on the platform this one stops working: put the new one here.
    "api_key": {q(c.api_key)},
    // How often the client reports its health; the platform drops it after a few missed heartbeats.
    "heartbeat_interval_seconds": {_number(c.heartbeat_interval_seconds)},
    // What this client may offer. "images" (image requests, /v1/images/generations) is declared to
    // the platform only while the bridge serves an image model ("<uuid>:image" in models.json); take
    // it out to serve no image requests.
    "capabilities": {q(list(c.capabilities))},
    // DEBUG, INFO, WARNING, ERROR or CRITICAL.
    "log_level": "INFO",
    // Log each request's id, outcome and time (never its content).
    "enable_request_logging": false,
    // Report CPU and memory in heartbeats.
    "enable_performance_monitoring": true,
    // Longest wait between two reconnect attempts.
    "reconnect_max_delay_seconds": 30
  }},

  // The OpenAI-compatible server the client relays requests to. `arenahub bridge` ignores it and
  // relays to itself; it matters for `arenahub client` and lmarena_platform_integration.py.
  "lmarena_bridge_url": {q(c.bridge_url)},

  "platform_features": {{
    // Requests this client takes at once (the platform also applies the limit it registered).
    "max_concurrent_requests": {c.max_concurrent_requests},
    // This client's routing preference: least_load, round_robin, random, fastest or priority.
    "preferred_routing_strategy": "least_load",
    // Check each request against the OpenAI schema before it reaches the bridge.
    "enable_request_validation": true,
    // Web origins that may call this machine's local endpoints from a browser, e.g.
    // [{q(platform_origin)}]. Empty: none.
    "allowed_origins": []
  }},

  // -- The bridge's own settings (LMArenaBridge's keys, and the 2026 ones) -------------------------
  // How conversations start on arena.ai: "create-evaluation" (each request starts one; nothing to
  // capture) or "legacy-retry" (the 2025 way: retry the conversation in session_id/message_id).
  "upstream_api": "create-evaluation",
  // direct (the model a request names answers), direct-battle (it answers beside an anonymous one;
  // works without an account), side-by-side (with side_by_side_model) or battle (two anonymous models).
  "arena_mode": "direct",
  // Continue a conversation this bridge answered in the same arena.ai conversation.
  "follow_up": true,
  // In battle mode, the side (A or B) whose answer is returned.
  "id_updater_battle_target": "A",
  // legacy-retry only: the conversation to retry (`arenahub bridge capture-ids --config config.jsonc`).
  "session_id": "",
  "message_id": "",
  "id_updater_last_mode": "direct_chat",
  "bypass_enabled": false,
  "tavern_mode_enabled": false,
  "use_default_ids_if_mapping_not_found": true,
  "stream_response_timeout_seconds": 360,
  // A key the bridge itself requires from callers (empty: none). Not the platform key above.
  "api_key": ""
}}
"""


def requirements_text(c: PackageInputs, wheel: Wheel) -> str:
    return (f"# What arenahub's client and {INTEGRATION_FILE} need (client {c.client_id}).\n"
            f"# arenahub {wheel.version} is the wheel in this package (it is not on PyPI); the rest comes from\n"
            "# PyPI in the ranges arenahub declares. From this folder (start_client.sh does it):\n"
            "#   python3 -m pip install -r requirements_platform.txt\n"
            f"./{wheel.filename}\n" + "".join(f"{dep}\n" for dep in wheel.dependencies))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def readme_text(c: PackageInputs, wheel: Wheel) -> str:
    low = wheel.min_python
    port = c.bridge_port
    title = f'arenahub client package for "{c.name}"'
    return f"""\
{title}
{"=" * len(title)}

Client id:   {c.client_id}
Platform:    {c.platform_url}
Made:        {c.made_at_text}, arenahub {wheel.version}

These files run an arenahub bridge on this machine and connect it to the platform above, which
then sends its users' requests here; the bridge answers them through your signed-in arena.ai tab
(the site was lmarena.ai until 2026; that address now leads to arena.ai).

  config.jsonc                     the settings: the platform, this client's id and API key, the bridge's own keys
  start_client.sh                  installs what is missing, then starts the bridge with the platform integration
  {wheel.filename:<32} the arenahub program (not on PyPI; start_client.sh installs it)
  requirements_platform.txt        what arenahub needs from PyPI
  userscript.js                    the Tampermonkey userscript that connects your arena.ai tab to the bridge
  {INTEGRATION_FILE:<32} only for people who run the existing LMArenaBridge (see the end)

Keep config.jsonc private: it holds this client's API key.


1. Install first
----------------
- Python {low[0]}.{low[1]} or newer with venv (Debian/Ubuntu: sudo apt-get install python3 python3-venv).
- Chrome or Firefox with the Tampermonkey extension, and an arena.ai account you are signed in to
  (without one, set "arena_mode": "direct-battle" in config.jsonc).
- Outbound access to {c.platform_url} and, for the first start, to PyPI (https://pypi.org).


2. Start the client
-------------------
    unzip lmarena-client-{c.client_id}.zip -d lmarena-client
    cd lmarena-client
    ./start_client.sh

The first start creates .venv/ in this folder and installs arenahub and its dependencies (a minute
or two); later starts begin at once. Leave it running (Ctrl-C stops it). It runs

    .venv/bin/arenahub bridge --config config.jsonc

which serves the OpenAI-compatible bridge on http://127.0.0.1:{port} and, because config.jsonc has
"platform_integration": {{"enabled": true}}, connects this client to the platform.

Settings, as environment variables:
    PYTHON=/usr/bin/python3.12 ./start_client.sh   the Python that makes the venv (default: python3)
    ARENAHUB_BRIDGE_PORT=5110 ./start_client.sh    the bridge's port (default {port}; see step 3)
    ARENAHUB_BRIDGE_HOST=127.0.0.1                 the address it listens on (default 127.0.0.1)
    ARENAHUB_VENV=/path/to/venv                    where the venv is (default: .venv here)
    PIP_INDEX_URL=...                              a PyPI mirror, as pip reads it


3. Install the userscript
-------------------------
1. Open Tampermonkey in your browser and create a new script.
2. Replace its text with the contents of userscript.js, save, and make sure it is enabled.
3. Open https://arena.ai and sign in. The script connects the tab to the bridge at
   {c.userscript_url}: the tab's title starts with a green check, and the bridge's log says
   "tab ... connected". Keep the tab open (in its own window if you like).
With another ARENAHUB_BRIDGE_PORT, make a matching script:
    .venv/bin/arenahub userscript --bridge-url ws://127.0.0.1:PORT/ws > userscript.js


4. Read the models (once; again when arena.ai adds models)
----------------------------------------------------------
With the bridge running and the tab open, in a second terminal in this folder:

    .venv/bin/arenahub bridge update-models --config config.jsonc --bridge-url http://127.0.0.1:{port}
    .venv/bin/arenahub bridge doctor --config config.jsonc --bridge-url http://127.0.0.1:{port}

The first writes models.json from the models the page offers and has the running bridge load it
(it says how many models the bridge serves now). The second checks the tab item by item (signed in,
reCAPTCHA, models, uploads), makes one tiny real call, and says what to fix if something is wrong.
If you changed ARENAHUB_BRIDGE_PORT, put that port in --bridge-url.


5. Check it
-----------
    curl http://127.0.0.1:{port}/health
        "connected": true once the platform has accepted this client; "healthy" also needs the
        tab connected and its session usable.
    curl http://127.0.0.1:{port}/platform/status
        the connection state, last heartbeat, last error or refusal, and the arena.ai session:
        its "state" and, when a person must act, the "action" to take.
    curl http://127.0.0.1:{port}/bridge/status
        the connected tabs, the tab's checks, the models and the mode.

When the session state is "verification_required", arena.ai's reCAPTCHA wants a person: open the
tab, send one message there by hand and complete the "Security Verification" if it shows; the
bridge takes requests again as soon as that message goes through. Reloading the page does not help.

The client reconnects by itself when the connection drops. If the platform refuses it for good
(a wrong key, a disabled client), /platform/status says why and it stops retrying until it is
restarted or you run: curl -X POST http://127.0.0.1:{port}/platform/register


When the API key is regenerated
-------------------------------
The platform keeps only a hash of the key, so a new package means a new key: regenerating it (in
the dashboard, or with `arenahub admin client-package`) makes the key in this config.jsonc stop
working: the platform refuses this client, as /platform/status shows. Download the new package, copy
the "api_key" line of its config.jsonc into this config.jsonc (the rest of your file stays), then
run (no restart needed: it reads config.jsonc again and connects with the new key)
    curl -X POST http://127.0.0.1:{port}/platform/register
If config.jsonc has a mistake, that answer names the line and key, and nothing changes.


Updates
-------
A package downloaded later brings the current arenahub (and a new key). Unzip all of it but
config.jsonc over this folder, copy the new "api_key" line into your config.jsonc as above, and
run ./start_client.sh again: it installs the new version.

    unzip -o lmarena-client-{c.client_id}.zip -x config.jsonc -d /path/to/lmarena-client


For people who run the existing LMArenaBridge
---------------------------------------------
Instead of steps 2 to 4 (your bridge has its own userscript), add the
integration to your LMArenaBridge folder:

    pip install -r requirements_platform.txt      (run it in this folder: it installs the wheel)
    cp {INTEGRATION_FILE} /path/to/LMArenaBridge/

Copy the "platform_integration" and "platform_features" sections (and "lmarena_bridge_url") of
this config.jsonc into LMArenaBridge's config.jsonc. Then either run
    python {INTEGRATION_FILE} --port 5103
beside `python api_server.py`, or add these two lines to api_server.py after `app = FastAPI(...)`:
    import lmarena_platform_integration
    lmarena_platform_integration.mount(app)
The top of {INTEGRATION_FILE} explains both.
"""
