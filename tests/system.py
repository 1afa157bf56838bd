"""Programs from Debian's packages that tests run for real (redis-server, haproxy, ...)."""

from __future__ import annotations

import os

import pytest


def required(found: str | None, package: str, tests: str) -> str:
    """The program's path; missing, ``tests`` are skipped locally and fail under CI, where they must run
    (``.ci/run`` installs ``package``)."""
    if found is None:
        message = f"{package} is not installed (sudo apt-get install {package}; .ci/run does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{tests} tests must run in CI: {message}", pytrace=False)
        pytest.skip(message)
    return found
