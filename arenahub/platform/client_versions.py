"""Which arenahub version clients should run, and whether the one a client reports is older.

The platform distributes the client itself: the client package carries a wheel of the running
arenahub (``client_package.WheelCache``), so the current client version is this process's
``arenahub.__version__``. Clients report theirs in ``hello`` and in every ``heartbeat``.

Versions compare as PEP 440 does for the forms people write (epoch, release, a/b/rc pre-releases,
post- and dev-releases; a local label "+abc" is ignored). ``packaging`` is not among arenahub's
dependencies, hence this small parser. A version it cannot read is unknown, and unknown is never
outdated: a flag the admin acts on must not come from a guess.
"""

from __future__ import annotations

import functools
import math
import re

import arenahub

MAX_LENGTH = 64  # what clients.client_version holds

_VERSION = re.compile(r"""
    v?(?:(?P<epoch>\d+)!)?
    (?P<release>\d+(?:\.\d+)*)
    (?:[-_.]?(?P<pre>alpha|a|beta|b|preview|pre|rc|c)[-_.]?(?P<pre_n>\d+)?)?
    (?:-(?P<post_implicit>\d+)|[-_.]?(?:post|rev|r)[-_.]?(?P<post_n>\d+)?(?P<post>))?
    (?:[-_.]?dev[-_.]?(?P<dev_n>\d+)?(?P<dev>))?
    (?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?
""", re.VERBOSE)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "rc": 2, "c": 2, "pre": 2, "preview": 2}

VersionKey = tuple[object, ...]


def current_client_version() -> str:
    """The version the client package ships: the platform's own."""
    return arenahub.__version__


@functools.lru_cache(maxsize=512)  # a pure function of a few distinct strings: the client list parses each once
def version_key(text: str | None) -> VersionKey | None:
    """A key that sorts versions in PEP 440 order; None when ``text`` is empty or not a version."""
    if not text or len(text) > MAX_LENGTH:
        return None
    m = _VERSION.fullmatch(text.strip().lower())
    if m is None:
        return None
    release = [int(part) for part in m["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:  # 1.0 == 1.0.0
        release.pop()
    post: float | int = -1
    if m["post_implicit"] is not None:
        post = int(m["post_implicit"])
    elif m["post"] is not None:
        post = int(m["post_n"] or 0)
    dev = (0, int(m["dev_n"] or 0)) if m["dev"] is not None else (1, 0)
    if m["pre"] is not None:
        pre: tuple[float, ...] = (0, _PRE_RANK[m["pre"]], int(m["pre_n"] or 0))
    elif post == -1 and m["dev"] is not None:
        pre = (-1,)  # 1.0.dev1 comes before 1.0a1
    else:
        pre = (1,)
    return (int(m["epoch"] or 0), tuple(release), pre, post if post != -1 else -math.inf, dev)


def is_outdated(reported: str | None, current: str | None = None) -> bool:
    """True only when both versions are readable and ``reported`` is older than ``current``."""
    have, want = version_key(reported), version_key(current if current is not None else current_client_version())
    return have is not None and want is not None and have < want
