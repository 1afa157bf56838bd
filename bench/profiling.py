"""Sampling the programs under test with py-spy while the bench measures, and reading the result.

py-spy is not a project dependency: ``--profile DIR`` needs ``.venv/bin/pip install py-spy`` (and
permission to ptrace the programs, which their parent, run as root or with ptrace_scope 0, has).
With ``--format raw`` the output is collapsed stacks ("frame;frame;frame count" per line), which
``top_functions`` folds into self and inclusive sample counts per function.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LINE_NO = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    name: str
    output: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGINT makes py-spy write its output and exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start(name: str, pid: int, output: Path, fmt: str = "raw", rate: int = 100, native: bool = False) -> Recording:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    # --gil: only samples of the thread holding the GIL, i.e. Python at work. Without it py-spy
    # sometimes counts aiosqlite's worker thread, blocked in SimpleQueue.get, as busy.
    cmd = [exe, "record", "--pid", str(pid), "--format", fmt, "--output", str(output), "--rate", str(rate),
           "--function", "--gil"]
    if native:
        cmd.append("--native")
    log = output.with_suffix(output.suffix + ".log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Recording(name, output, proc, log)


def _function(frame: str) -> str:
    """'chat (arenahub/x.py:12)' -> 'chat (arenahub/x.py)': one entry per function."""
    return _LINE_NO.sub(")", frame.strip())


def top_functions(collapsed: Path, limit: int = 25) -> tuple[int, list[tuple[str, int, int]]]:
    """Total samples, then (function, self samples, inclusive samples), most inclusive first."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        own[frames[-1]] += count
        for fn in set(frames):
            inclusive[fn] += count
    rows = [(fn, own[fn], inclusive[fn]) for fn, _ in inclusive.most_common(limit)]
    return total, rows


def top_self(collapsed: Path, limit: int = 25) -> list[tuple[str, int]]:
    own: Counter[str] = Counter()
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            own[_function(stack.split(";")[-1])] += int(count_text)
    return own.most_common(limit)


def _package(fn: str) -> str:
    """'send (uvicorn/protocols/http/x.py)' -> 'uvicorn'; the event loop's own frame stays apart."""
    if fn.startswith("Runner.run "):
        return "event loop (uvloop, I/O in C)"
    where = fn.rpartition("(")[2].rstrip(")")
    return where.split("/", 1)[0] if "/" in where else where.split(".", 1)[0]


def by_package(collapsed: Path) -> list[tuple[str, int]]:
    own: Counter[str] = Counter()
    for fn, count in top_self(collapsed, limit=10_000):
        own[_package(fn)] += count
    return own.most_common()


def report(collapsed: Path, limit: int = 15) -> str:
    """Self time by package, the functions with most self time, and the project's own functions
    by inclusive time (which of its steps the time is spent under)."""
    total, rows = top_functions(collapsed, limit=10_000)
    if not total:
        return f"{collapsed.name}: no samples"

    def pct(n: int) -> str:
        return f"{100 * n / total:6.1f}%"

    lines = [f"{collapsed.name}: {total} samples holding the GIL", "  self time by package:"]
    lines += [f"  {pct(n)}  {package}" for package, n in by_package(collapsed)[:8]]
    lines.append("  functions by self time:")
    lines += [f"  {pct(n)}  {fn}" for fn, n in top_self(collapsed, limit)]
    lines.append("  arenahub functions by inclusive time (self):")
    own = [(fn, s, i) for fn, s, i in rows if "(arenahub/" in fn and not fn.startswith(("<module>", "main ", "run ",
                                                                                       "_run_"))]
    lines += [f"  {pct(i)} ({pct(s).strip()})  {fn}" for fn, s, i in own[:limit]]
    return "\n".join(lines)
