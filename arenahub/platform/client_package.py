"""The client package ``lmarena-client-<CLIENT_ID>.zip``: everything one client owner needs, filled in.

Built in memory when a client's API key is (re)generated, since the platform keeps only the key's
hash. It holds ``config.jsonc`` (the only file with the key), ``start_client.sh``, ``README.txt``,
``userscript.js``, ``requirements_platform.txt``, ``lmarena_platform_integration.py`` and a wheel of
the running arenahub (it is not on PyPI): ``start_client.sh`` installs that wheel and its
dependencies from PyPI into a venv beside itself, then runs ``arenahub bridge``, which runs the
client inside it.

The wheel is made from the installed package's own files (no build tools, no network) and kept by a
``WheelCache`` until the code changes, so that a download is fast.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import importlib.metadata
import io
import json
import re
import threading
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import arenahub
from arenahub.bridge import userscript

DEFAULT_BRIDGE_URL = "http://127.0.0.1:5102"
DEFAULT_CAPABILITIES = ("chat", "models")
INTEGRATION_FILE = "lmarena_platform_integration.py"
EXECUTABLE = 0o100755
REGULAR = 0o100644
# Values land in sh single quotes and JSONC strings: no quotes, spaces, backslashes or shell specials.
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%-]+$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_Stamp = tuple[int, int, int, int, int, int]
_WHEEL_DATE: _Stamp = (1980, 1, 1, 0, 0, 0)  # fixed, so that the same code gives the same wheel


class ClientPackageError(Exception):
    """The package cannot be made: a bad input, or no installed arenahub to make the wheel from."""


def package_filename(client_id: str) -> str:
    return f"lmarena-client-{_checked_client_id(client_id)}.zip"


# -- the wheel of the running arenahub ----------------------------------------------------------
@dataclass(frozen=True)
class Wheel:
    filename: str
    version: str
    data: bytes = b""
    requires_python: str = ""
    dependencies: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class _Project:
    summary: str
    requires_python: str
    dependencies: tuple[str, ...]
    scripts: tuple[tuple[str, str], ...]


def _package_dir() -> Path:
    return Path(arenahub.__file__).resolve().parent


def _project(package_dir: Path) -> _Project:
    """What pyproject.toml declares: from the source tree beside the package when there is one (a
    checkout may have changed it since the install), else from the installed metadata."""
    pyproject = package_dir.parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "arenahub":
            return _Project(project.get("description", ""), project.get("requires-python", ""),
                            tuple(project.get("dependencies", ())), tuple(project.get("scripts", {}).items()))
    try:
        dist = importlib.metadata.distribution("arenahub")
    except importlib.metadata.PackageNotFoundError:
        raise ClientPackageError("arenahub's metadata is not installed (no pyproject.toml beside the package "
                                 "either): install it with pip to build client packages") from None
    deps = tuple(r for r in dist.requires or () if not re.search(r";.*\bextra\s*==", r))
    scripts = tuple((ep.name, ep.value) for ep in dist.entry_points if ep.group == "console_scripts")
    return _Project(dist.metadata["Summary"] or "", dist.metadata["Requires-Python"] or "", deps, scripts)


def _source_files(package_dir: Path) -> list[Path]:
    """The package's files as installed: no caches, no hidden or backup files."""
    files = []
    for path in sorted(package_dir.rglob("*")):
        parts = path.relative_to(package_dir).parts
        if (path.is_file() and not any(p == "__pycache__" or p.startswith(".") for p in parts)
                and not path.name.endswith((".pyc", ".pyo", "~"))):
            files.append(path)
    return files


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel() -> Wheel:
    """A pure-Python wheel of the running arenahub, made from its installed files."""
    package_dir = _package_dir()
    project = _project(package_dir)
    version = arenahub.__version__
    dist_info = f"arenahub-{version}.dist-info"
    metadata = "".join([
        "Metadata-Version: 2.1\nName: arenahub\n", f"Version: {version}\n", f"Summary: {project.summary}\n",
        f"Requires-Python: {project.requires_python}\n" if project.requires_python else "",
        *(f"Requires-Dist: {dep}\n" for dep in project.dependencies)])
    entries: list[tuple[str, bytes]] = [
        (f"arenahub/{p.relative_to(package_dir).as_posix()}", p.read_bytes()) for p in _source_files(package_dir)]
    entries += [
        (f"{dist_info}/METADATA", metadata.encode()),
        (f"{dist_info}/WHEEL", (b"Wheel-Version: 1.0\nGenerator: arenahub.platform.client_package\n"
                                b"Root-Is-Purelib: true\nTag: py3-none-any\n")),
        (f"{dist_info}/entry_points.txt", ("[console_scripts]\n" + "".join(
            f"{name} = {target}\n" for name, target in project.scripts)).encode()),
        (f"{dist_info}/top_level.txt", b"arenahub\n"),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            _add(archive, name, data, REGULAR, _WHEEL_DATE)
    return Wheel(f"arenahub-{version}-py3-none-any.whl", version, buffer.getvalue(), project.requires_python,
                 project.dependencies)


class WheelCache:
    """Builds the wheel once and again only when arenahub's version or files change. Thread-safe:
    the platform calls it from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._wheel: Wheel | None = None

    @staticmethod
    def _fingerprint() -> tuple[str, str]:
        package_dir = _package_dir()
        digest = hashlib.sha256()
        for path in _source_files(package_dir):
            stat = path.stat()
            digest.update(f"{path.relative_to(package_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return arenahub.__version__, digest.hexdigest()

    def get(self) -> Wheel:
        with self._lock:
            key = self._fingerprint()
            if self._wheel is None or key != self._key:
                self._wheel, self._key = build_wheel(), key
            return self._wheel


# -- the package --------------------------------------------------------------------------------
def _checked_client_id(client_id: str) -> str:
    if not _CLIENT_ID.match(client_id):
        raise ClientPackageError(f"client_id must be 1-64 letters, digits, '_' or '-', got {client_id!r}")
    return client_id


def _checked_url(what: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or not _URL_SAFE.match(value):
        raise ClientPackageError(f"{what} must be an http:// or https:// URL without spaces or quotes, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ClientPackageError(f"{what} has a bad port: {value!r}") from None
    return value.rstrip("/")


def _one_line(text: str, limit: int = 120) -> str:
    """Free text (a client's name) made safe for a comment line."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()[:limit]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _min_python(requires_python: str) -> tuple[int, int]:
    found = re.search(r">=\s*(\d+)\.(\d+)", requires_python)
    return (int(found.group(1)), int(found.group(2))) if found else (3, 11)


@dataclass(frozen=True)
class _Client:
    platform_url: str
    client_id: str
    api_key: str
    name: str
    bridge_url: str
    bridge_port: int
    heartbeat_interval_seconds: float
    capabilities: tuple[str, ...]
    max_concurrent_requests: int
    made_at: str

    @property
    def userscript_url(self) -> str:
        parts = urlsplit(self.bridge_url)
        return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/ws"


def build_client_package(*, platform_url: str, client_id: str, api_key: str, client_name: str = "",
                         bridge_url: str = DEFAULT_BRIDGE_URL, heartbeat_interval_seconds: float = 30.0,
                         capabilities: Sequence[str] = DEFAULT_CAPABILITIES, max_concurrent_requests: int = 4,
                         wheel: Wheel | None = None, made_at: dt.datetime | None = None) -> bytes:
    """The ZIP for one client, in memory. ``platform_url`` is the platform's ``/api`` base as the client
    reaches it; ``api_key`` the client's fresh key (it goes into config.jsonc and nowhere else).
    ``wheel`` defaults to a new build: pass ``WheelCache().get()`` to reuse one.
    Raises ClientPackageError for a bad input."""
    if not api_key or not api_key.isprintable() or '"' in api_key or "\\" in api_key:
        raise ClientPackageError("api_key must be the client's key (printable, without quotes)")
    if not 0.2 <= heartbeat_interval_seconds <= 3600:
        raise ClientPackageError(f"heartbeat_interval_seconds must be between 0.2 and 3600, got "
                                 f"{heartbeat_interval_seconds}")
    if not 1 <= max_concurrent_requests <= 10_000:
        raise ClientPackageError(f"max_concurrent_requests must be between 1 and 10000, got {max_concurrent_requests}")
    caps = tuple(c.strip() for c in capabilities if c.strip())
    if not caps or not all(re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", c) for c in caps):
        raise ClientPackageError(f"capabilities must be short names like 'chat', got {list(capabilities)!r}")
    bridge_url = _checked_url("bridge_url", bridge_url)
    parts = urlsplit(bridge_url)
    when = (made_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    client = _Client(_checked_url("platform_url", platform_url), _checked_client_id(client_id), api_key,
                     _one_line(client_name) or client_id, bridge_url,
                     parts.port or (443 if parts.scheme == "https" else 80), float(heartbeat_interval_seconds), caps,
                     max_concurrent_requests, when.strftime("%Y-%m-%d %H:%M UTC"))
    wheel = wheel or build_wheel()
    integration = resources.files("arenahub.integration").joinpath(INTEGRATION_FILE).read_bytes()
    files: list[tuple[str, bytes, int]] = [
        ("README.txt", _readme(client, wheel).encode(), REGULAR),
        ("config.jsonc", _config(client).encode(), REGULAR),
        ("start_client.sh", _start_script(client, wheel).encode(), EXECUTABLE),
        ("userscript.js", userscript.render(client.userscript_url).encode(), REGULAR),
        ("requirements_platform.txt", _requirements(client, wheel).encode(), REGULAR),
        (INTEGRATION_FILE, integration, REGULAR),
        (wheel.filename, wheel.data, REGULAR),
    ]
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in files:
            _add(archive, name, data, mode, stamp)
    return buffer.getvalue()


def _add(archive: zipfile.ZipFile, name: str, data: bytes, mode: int, stamp: _Stamp) -> None:
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.create_system = 3  # Unix: unzip applies the mode below
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


# -- the files --------------------------------------------------------------------------------
def _config(c: _Client) -> str:
    q = json.dumps
    platform_origin = "{0.scheme}://{0.netloc}".format(urlsplit(c.platform_url))
    return f"""\
// config.jsonc of arenahub client {c.client_id} ("{c.name}"), made by the platform on {c.made_at}.
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

  // -- The LMArena bridge's own settings (as in LMArenaBridge's config.jsonc) ----------------------
  // The LMArena conversation to use: written by `arenahub bridge capture-ids --config config.jsonc`.
  "session_id": "",
  "message_id": "",
  // direct_chat or battle; in battle mode, the side (A or B) whose answer is returned.
  "id_updater_last_mode": "direct_chat",
  "id_updater_battle_target": "A",
  "bypass_enabled": false,
  "tavern_mode_enabled": false,
  "use_default_ids_if_mapping_not_found": true,
  "stream_response_timeout_seconds": 360,
  // A key the bridge itself requires from callers (empty: none). Not the platform key above.
  "api_key": ""
}}
"""


def _requirements(c: _Client, wheel: Wheel) -> str:
    return (f"# What arenahub's client and {INTEGRATION_FILE} need (client {c.client_id}).\n"
            f"# arenahub {wheel.version} is the wheel in this package (it is not on PyPI); the rest comes from\n"
            "# PyPI in the ranges arenahub declares. From this folder (start_client.sh does it):\n"
            "#   python3 -m pip install -r requirements_platform.txt\n"
            f"./{wheel.filename}\n" + "".join(f"{dep}\n" for dep in wheel.dependencies))


_START_SCRIPT = r"""#!/bin/sh
# Starts arenahub client @@CLIENT_ID@@ of @@PLATFORM_URL@@: the LMArena bridge on this machine,
# with the platform integration inside it. The first run creates a Python virtual environment beside
# this script and installs arenahub @@VERSION@@ (the wheel in this folder) with its dependencies from
# PyPI; later runs install only what is missing. See README.txt.
#
# Environment:
#   PYTHON                the Python (@@MIN_PYTHON@@ or newer) that makes the venv  (default: python3)
#   ARENAHUB_VENV         where the venv is                     (default: .venv beside this script)
#   ARENAHUB_BRIDGE_HOST  the address the bridge listens on     (default: 127.0.0.1)
#   ARENAHUB_BRIDGE_PORT  the port the bridge listens on        (default: @@BRIDGE_PORT@@)
#   PIP_INDEX_URL and pip's other PIP_* settings apply as usual.
set -eu

say() { printf 'start_client: %s\n' "$*"; }
die() { printf 'start_client: error: %s\n' "$*" >&2; exit 1; }

HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || die "cannot find the folder of $0"
cd "$HERE"

CLIENT_ID='@@CLIENT_ID@@'
VERSION='@@VERSION@@'
WHEEL='@@WHEEL@@'
WHEEL_SHA256='@@WHEEL_SHA256@@'
USERSCRIPT_PORT='@@BRIDGE_PORT@@'
PYTHON=${PYTHON:-python3}
VENV=${ARENAHUB_VENV:-$HERE/.venv}
HOST=${ARENAHUB_BRIDGE_HOST:-127.0.0.1}
PORT=${ARENAHUB_BRIDGE_PORT:-$USERSCRIPT_PORT}
CHECK='import arenahub.bridge.server, arenahub.client.app'

for file in config.jsonc requirements_platform.txt "$WHEEL"; do
  [ -f "$file" ] || die "$file is missing from $HERE: unzip all of lmarena-client-$CLIENT_ID.zip here"
done
case $PORT in
  '' | *[!0-9]*) die "ARENAHUB_BRIDGE_PORT must be a port number, got '$PORT'" ;;
esac
[ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "ARENAHUB_BRIDGE_PORT must be 1-65535, got $PORT"

# 1. The virtual environment, made once.
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' here: install Python @@MIN_PYTHON@@ or newer \
(Debian/Ubuntu: sudo apt-get install python3 python3-venv), or name one: PYTHON=/path/to/python3 $0"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (@@MIN_PYTHON_TUPLE@@))' || die "$PYTHON is Python \
$("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null); arenahub needs @@MIN_PYTHON@@ \
or newer: name another one with PYTHON=/path/to/python3 $0"
  existed=no
  [ -e "$VENV" ] && existed=yes
  say "creating a virtual environment in $VENV with $PYTHON"
  if ! "$PYTHON" -m venv "$VENV"; then
    [ "$existed" = no ] && rm -rf "$VENV"
    die "$PYTHON could not create a virtual environment; on Debian/Ubuntu: sudo apt-get install python3-venv"
  fi
fi

# 2. arenahub and its dependencies, when something is missing or this package brings another build.
if [ "$(cat "$VENV/.arenahub-package" 2>/dev/null || true)" != "$WHEEL $WHEEL_SHA256" ] \
    || ! "$VENV/bin/python" -c "$CHECK" >/dev/null 2>&1; then
  say "installing arenahub $VERSION and its dependencies into $VENV (the first time takes a minute or two)"
  # --force-reinstall: an older package may have installed a different build of the same version.
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --no-deps --force-reinstall "./$WHEEL" \
    || die "pip could not install $WHEEL (see its messages above)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -r requirements_platform.txt \
    || die "pip could not install the dependencies (see its messages above): does this machine reach PyPI \
(https://pypi.org)? A mirror can be named with PIP_INDEX_URL. Then run $0 again"
  "$VENV/bin/python" -c "$CHECK" || die "arenahub does not import in $VENV (see above): delete $VENV and run $0 again"
  printf '%s\n' "$WHEEL $WHEEL_SHA256" >"$VENV/.arenahub-package"
fi

# 3. The bridge; config.jsonc's platform_integration section runs the client inside it.
if [ "$PORT" != "$USERSCRIPT_PORT" ]; then
  say "note: userscript.js connects to port $USERSCRIPT_PORT; make one for port $PORT with:"
  say "  $VENV/bin/arenahub userscript --bridge-url ws://127.0.0.1:$PORT/ws > userscript.js"
fi
say "starting the bridge on http://$HOST:$PORT with client $CLIENT_ID (Ctrl-C stops it)"
say "check it: curl http://$HOST:$PORT/health   and   curl http://$HOST:$PORT/platform/status"
exec "$VENV/bin/python" -m arenahub bridge --config "$HERE/config.jsonc" --host "$HOST" --port "$PORT"
"""


def _start_script(c: _Client, wheel: Wheel) -> str:
    low = _min_python(wheel.requires_python)
    values = {"CLIENT_ID": c.client_id, "PLATFORM_URL": c.platform_url, "VERSION": wheel.version,
              "WHEEL": wheel.filename, "WHEEL_SHA256": wheel.sha256, "BRIDGE_PORT": str(c.bridge_port),
              "MIN_PYTHON": f"{low[0]}.{low[1]}", "MIN_PYTHON_TUPLE": f"{low[0]}, {low[1]}"}
    text = re.sub(r"@@([A-Z_]+)@@", lambda m: values[m.group(1)], _START_SCRIPT)
    for value in values.values():  # each lands in single quotes or plain text: no quote may end them
        assert "'" not in value, value
    return text


def _readme(c: _Client, wheel: Wheel) -> str:
    low = _min_python(wheel.requires_python)
    port = c.bridge_port
    title = f'arenahub client package for "{c.name}"'
    return f"""\
{title}
{"=" * len(title)}

Client id:   {c.client_id}
Platform:    {c.platform_url}
Made:        {c.made_at}, arenahub {wheel.version}

These files run an LMArena bridge on this machine and connect it to the platform above, which
then sends its users' requests here; the bridge answers them through your logged-in LMArena tab.

  config.jsonc                     the settings: the platform, this client's id and API key, the bridge's own keys
  start_client.sh                  installs what is missing, then starts the bridge with the platform integration
  {wheel.filename:<32} the arenahub program (not on PyPI; start_client.sh installs it)
  requirements_platform.txt        what arenahub needs from PyPI
  userscript.js                    the Tampermonkey userscript that connects your LMArena tab to the bridge
  {INTEGRATION_FILE:<32} only for people who run the existing LMArenaBridge (see the end)

Keep config.jsonc private: it holds this client's API key.


1. Install first
----------------
- Python {low[0]}.{low[1]} or newer with venv (Debian/Ubuntu: sudo apt-get install python3 python3-venv).
- Chrome or Firefox with the Tampermonkey extension, and an LMArena account you are signed in to.
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
3. Open https://lmarena.ai (signed in). The script connects the tab to the bridge at
   {c.userscript_url}; the bridge's log says "tab ... connected".
With another ARENAHUB_BRIDGE_PORT, make a matching script:
    .venv/bin/arenahub userscript --bridge-url ws://127.0.0.1:PORT/ws > userscript.js


4. Capture your LMArena session (once; again whenever LMArena asks you to sign in)
---------------------------------------------------------------------------------
With the bridge running and the tab open, in a second terminal in this folder:

    .venv/bin/arenahub bridge update-models --config config.jsonc --write-models
    .venv/bin/arenahub bridge capture-ids --config config.jsonc

The first writes models.json (the models the page offers). The second waits until you click
Retry on an answer in the LMArena tab, then saves session_id and message_id into config.jsonc and
reloads the bridge (it replaces LMArenaBridge's id_updater.py). If you changed
ARENAHUB_BRIDGE_PORT, add --bridge-url http://127.0.0.1:PORT to both.


5. Check it
-----------
    curl http://127.0.0.1:{port}/health
        "connected": true once the platform has accepted this client; "healthy" also needs the
        tab connected and a captured session.
    curl http://127.0.0.1:{port}/platform/status
        the connection state, last heartbeat, last error or refusal, and the LMArena session.
    curl http://127.0.0.1:{port}/bridge/status
        the connected tabs, the models, and whether the session ids are captured.

The client reconnects by itself when the connection drops. If the platform refuses it for good
(a wrong key, a disabled client), /platform/status says why and it stops retrying until it is
restarted or you run: curl -X POST http://127.0.0.1:{port}/platform/register


When the API key is regenerated
-------------------------------
The platform keeps only a hash of the key, so a new package means a new key: regenerating it (in
the dashboard, or with `arenahub admin client-package`) makes the key in this config.jsonc stop
working: the platform refuses this client, as /platform/status shows. Download the new package, copy
the "api_key" line of its config.jsonc into this config.jsonc (the rest of your file, such as the
captured session, stays), then restart ./start_client.sh or run
    curl -X POST http://127.0.0.1:{port}/platform/register


Updates
-------
A package downloaded later brings the current arenahub (and a new key). Unzip all of it but
config.jsonc over this folder, copy the new "api_key" line into your config.jsonc as above, and
run ./start_client.sh again: it installs the new version.

    unzip -o lmarena-client-{c.client_id}.zip -x config.jsonc -d /path/to/lmarena-client


For people who run the existing LMArenaBridge
---------------------------------------------
Instead of steps 2 to 4 (your bridge has its own userscript and id_updater.py), add the
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


__all__ = [
    "DEFAULT_BRIDGE_URL",
    "DEFAULT_CAPABILITIES",
    "ClientPackageError",
    "Wheel",
    "WheelCache",
    "build_client_package",
    "build_wheel",
    "package_filename",
]
