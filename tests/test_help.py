"""The commands explain themselves: `arenahub --help` gives each command one line, every flag says what
it does and its default, and `simulate-lmarena --help` says how to attach a browser tab."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator

from arenahub.cli import build_parser


def run_help(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "arenahub", *args, "--help"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_command_list_has_one_line_per_command() -> None:
    text = run_help()
    listed = text.split("  COMMAND\n", 1)[1].split("\noptions:", 1)[0].strip("\n").splitlines()
    commands = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)][0]
    assert len(listed) == len(commands.choices), text
    for line, name in zip(listed, commands.choices, strict=True):
        assert line.split()[0] == name and len(line.split()) > 2, f"{name}: {line!r}"


def _options(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings and action.dest not in ("help", "version"):
            yield path, action


def test_every_flag_says_what_it_does_and_its_default() -> None:
    missing = []
    for path, action in _options(build_parser(), "arenahub"):
        text = action.help or ""
        has_default = action.default not in (None, False, argparse.SUPPRESS) and action.nargs != 0
        if not text or (has_default and "default" not in text):
            missing.append(f"{path} {action.option_strings[-1]} (default {action.default!r}): {text!r}")
    assert not missing, "\n".join(missing)


def test_the_simulator_says_how_to_attach_a_tab() -> None:
    text = run_help("simulate-lmarena")
    for step in ("arenahub bridge --config", "arenahub userscript", "Tampermonkey",
                 '--host-resolver-rules="MAP arena.ai 127.0.0.1:5180"', "--ignore-certificate-errors",
                 "/bridge/status", "GET /__sim/"):
        assert step in text, step
