"""A run that skips tests says why, once, and how to run them (a fresh machine's `make test` once
reported 204 skipped with no reason)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_skipped_postgresql_tests_say_why_and_how_to_run_them() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ARENAHUB_TEST_PG_URL", "CI")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "tests/platform/test_live_settings.py", "-k", "overrides_outlive_a_restart"],
        cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=120)
    assert "1 skipped" in done.stdout, done.stdout + done.stderr
    assert "1 test(s) skipped: ARENAHUB_TEST_PG_URL is not set" in done.stdout
    assert "to run the PostgreSQL tests: start a server and export ARENAHUB_TEST_PG_URL=" in done.stdout
