"""The demo's processes: a cluster's instance that stops after SIGTERM (or with 0) is started again with the
same command and environment while the demo runs, and never once the demo itself was asked to stop; a crash
stops the demo with the program's name and log."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from arenahub.tools.demo_programs import Interrupted, Programs

# Says its environment's MARK, then ends as a platform does after SIGTERM (or as told).
SAY_AND_END = "import os, signal, sys; print(os.environ['MARK'], flush=True); {end}"
BY_SIGTERM = "os.kill(os.getpid(), signal.SIGTERM)"


def _program(programs: Programs, end: str, *, restart: bool = True) -> None:
    programs.run("platform-2", [sys.executable, "-c", SAY_AND_END.format(end=end)], env={"MARK": "here"},
                 restart=restart)


def _ended(programs: Programs) -> int:
    return programs.procs[0].proc.wait(30)


def test_an_instance_stopped_by_sigterm_is_started_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    programs = Programs(tmp_path)
    _program(programs, BY_SIGTERM)
    first = programs.procs[0].proc
    assert _ended(programs) == -signal.SIGTERM
    programs.check_alive()
    assert capsys.readouterr().out == "platform-2 stopped (SIGTERM): starting it again\n"
    again = programs.procs[0].proc
    assert again is not first and again.args == first.args
    assert _ended(programs) == -signal.SIGTERM
    # Its log keeps both runs, each with the environment it was given.
    assert (tmp_path / "platform-2.log").read_text() == "here\nhere\n"


def test_an_instance_that_exits_with_0_is_started_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    programs = Programs(tmp_path)
    _program(programs, "sys.exit(0)")
    assert _ended(programs) == 0
    programs.check_alive()
    assert capsys.readouterr().out == "platform-2 stopped (exit code 0): starting it again\n"
    programs.stop()


def test_once_the_demo_was_asked_to_stop_nothing_starts_again(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    programs = Programs(tmp_path)
    _program(programs, BY_SIGTERM)
    _ended(programs)
    programs.stop_requested = True  # the demo's own Ctrl-C or SIGTERM reached the instance too
    with pytest.raises(Interrupted):
        programs.check_alive()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("end, code", [("sys.exit(1)", 1), ("os.kill(os.getpid(), signal.SIGKILL)", -9)])
def test_an_instance_that_crashes_stops_the_demo(tmp_path: Path, end: str, code: int) -> None:
    programs = Programs(tmp_path)
    _program(programs, end)
    assert _ended(programs) == code
    with pytest.raises(RuntimeError, match=rf"the platform-2 stopped \(exit code {code}\), so the demo stops "
                                           rf"everything it started; its log: {tmp_path / 'platform-2.log'}"):
        programs.check_alive()


def test_another_program_stopped_by_sigterm_stops_the_demo_quietly(tmp_path: Path) -> None:
    programs = Programs(tmp_path)
    _program(programs, BY_SIGTERM, restart=False)
    _ended(programs)
    with pytest.raises(Interrupted):
        programs.check_alive()
