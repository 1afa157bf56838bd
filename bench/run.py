"""Benchmark: the same load straight to a local upstream, then through platform -> client -> upstream.

    .venv/bin/python bench/run.py [--requests 2000] [--concurrency 32] [--words 16] [--json]
                                  [--modes nonstream,stream] [--profile DIR]

See bench/README.md for what each figure means and the targets it checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as pyplatform
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is run as a script, not a package

import durability
import load
import profiling
from stack import MODEL, Stack, StackError

MODES = ("nonstream", "stream")
# The project's targets: through-platform throughput at least this share of direct, and at most
# this much added p50 latency at concurrency 1.
MIN_THROUGHPUT_RATIO = 0.20
MAX_ADDED_P50_C1_MS = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000, help="measured requests per path and mode (default 2000)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight at once (default 32)")
    p.add_argument("--words", type=int, default=16, help="answer length in words, one SSE chunk each (default 16)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated: nonstream,stream (default both)")
    p.add_argument("--rounds", type=int, default=3,
                   help="measured passes per path, alternating direct and through; figures pool them (default 3)")
    p.add_argument("--warmup", type=int, default=200, help="unmeasured requests before each measured pass")
    p.add_argument("--c1-requests", type=int, default=300,
                   help="requests of the concurrency-1 pass per path and mode (0 skips it; default 300)")
    p.add_argument("--durability-requests", type=int, default=3000,
                   help="requests of each pass of the durability measure, after the load (0 skips it; default 3000)")
    p.add_argument("--pass-timeout", type=float, default=120.0,
                   help="a pass stops sending after this many seconds; unsent requests count as errors")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout (progress on stderr)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="sample platform and client with py-spy during the measured through-platform passes")
    p.add_argument("--profile-format", default="raw", choices=("raw", "flamegraph", "speedscope"),
                   help="py-spy output format (raw = collapsed stacks, summarised here; default raw)")
    p.add_argument("--profile-native", action="store_true", help="py-spy --native: include C extension frames")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed, too")
    p.add_argument("--keep-data", action="store_true", help="keep the temporary data dir (logs, database)")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in MODES]
    if bad or not args.modes:
        p.error(f"--modes takes a comma-separated list of {', '.join(MODES)}; got {bad or 'nothing'}")
    for name in ("requests", "concurrency", "words", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    return args


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _machine_busy_seconds() -> float:
    # irq/softirq time is left out: loopback traffic of the bench itself lands there.
    t = psutil.cpu_times()
    return t.user + t.nice + t.system


@dataclass
class CpuMeter:
    """CPU seconds each process spends during a pass (user + system), the bench's own included,
    and what the rest of the machine used meanwhile (other people's work skews the figures)."""

    pids: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    _busy: float = 0.0

    def _read(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            try:
                t = psutil.Process(pid).cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def start(self) -> None:
        self._start = self._read()
        self._busy = _machine_busy_seconds()

    def stop(self, result: load.PassResult) -> None:
        busy = _machine_busy_seconds() - self._busy
        end = self._read()
        result.cpu_seconds = {name: end[name] - self._start[name] for name in end if name in self._start}
        result.foreign_cpu_seconds = max(0.0, busy - sum(result.cpu_seconds.values()))


async def bench(args: argparse.Namespace, stack: Stack) -> dict[str, object]:
    direct = load.Target("direct", stack.upstream_url)
    through = load.Target("through", stack.platform_url, stack.consumer_key)
    cpu = CpuMeter({"bench": os.getpid(), **{p.name: p.pid for p in stack.programs}})
    warmups: list[load.PassResult] = []
    passes: list[load.PassResult] = []
    c1_passes: list[load.PassResult] = []
    profiles: list[str] = []

    async def measure(target: load.Target, concurrency: int, requests: int, common: dict[str, object],
                      rounds: list[load.PassResult]) -> None:
        cpu.start()
        result = await load.run_pass(sessions[target.name], target, requests=requests, concurrency=concurrency,
                                     **common)  # type: ignore[arg-type]
        cpu.stop(result)
        rounds.append(result)
        say(f"  {result.mode:9} {target.name:7} c={concurrency:<3} round {len(rounds)}: "
            f"{result.throughput:8.1f} req/s, p50 {result.latency(50) or 0:6.2f} ms, errors {result.error_count}")

    sessions = {t.name: load.open_session(args.concurrency) for t in (direct, through)}
    try:
        for mode in args.modes:
            common = {"model": MODEL, "stream": mode == "stream", "words": args.words,
                      "deadline_seconds": args.pass_timeout}
            for target in (direct, through):
                if args.warmup:
                    warmups.append(await load.run_pass(sessions[target.name], target, requests=args.warmup,
                                                       concurrency=args.concurrency, **common))  # type: ignore[arg-type]
            recordings = []
            if args.profile:
                suffix = {"raw": "txt", "flamegraph": "svg", "speedscope": "json"}[args.profile_format]
                for name in ("platform", "client"):
                    recordings.append(profiling.start(name, stack.pid(name), args.profile / f"{mode}-{name}.{suffix}",
                                                      args.profile_format, native=args.profile_native))
                await asyncio.sleep(0.5)  # py-spy attaches
            # Rounds alternate direct and through, so that both see the same machine.
            rounds: dict[str, list[load.PassResult]] = {"direct": [], "through": []}
            for _ in range(args.rounds):
                for target in (direct, through):
                    await measure(target, args.concurrency, args.requests, common, rounds[target.name])
            for rec in recordings:
                rec.stop()
                if not rec.output.exists():
                    profiles.append(f"{rec.output.name}: py-spy wrote nothing; see {rec.log}")
                elif args.profile_format == "raw":
                    profiles.append(profiling.report(rec.output))
            passes += [load.pool(rounds["direct"]), load.pool(rounds["through"])]
            if args.c1_requests:
                rounds = {"direct": [], "through": []}
                for target in (direct, through):
                    warmups.append(await load.run_pass(sessions[target.name], target, concurrency=1,
                                                       requests=min(50, args.c1_requests), **common))  # type: ignore[arg-type]
                for _ in range(args.rounds):
                    for target in (direct, through):
                        await measure(target, 1, args.c1_requests, common, rounds[target.name])
                c1_passes += [load.pool(rounds["direct"]), load.pool(rounds["through"])]
    finally:
        for http in sessions.values():
            await http.close()
    report = summarize(args, passes, c1_passes, warmups, profiles)
    if args.durability_requests:
        say("durability: the journal's commit, in process, on the platform's disk ...")
        report["durability"] = await durability.measure(
            stack.data_dir / "durability", requests=args.durability_requests, concurrency=args.concurrency)
    return report


def _find(results: list[load.PassResult], target: str, mode: str) -> load.PassResult | None:
    return next((r for r in results if r.target == target and r.mode == mode), None)


def summarize(args: argparse.Namespace, passes: list[load.PassResult], c1_passes: list[load.PassResult],
              warmups: list[load.PassResult], profiles: list[str]) -> dict[str, object]:
    comparisons = []
    for mode in args.modes:
        d, t = _find(passes, "direct", mode), _find(passes, "through", mode)
        d1, t1 = _find(c1_passes, "direct", mode), _find(c1_passes, "through", mode)
        row: dict[str, object] = {"mode": mode}
        clean = all(r is None or r.error_count == 0 for r in (d, t, d1, t1))
        if d and t and d.throughput and d.latency(50) is not None and t.latency(50) is not None:
            ratio = t.throughput / d.throughput
            per_round = [tt / dd for tt, dd in zip(t.round_throughputs, d.round_throughputs, strict=True) if dd]
            row.update(throughput_ratio=round(ratio, 4), added_p50_ms=round(t.latency(50) - d.latency(50), 3),
                       throughput_target_met=clean and ratio >= MIN_THROUGHPUT_RATIO,
                       round_ratio_range=[round(min(per_round), 4), round(max(per_round), 4)])
        if d1 and t1 and d1.latency(50) is not None and t1.latency(50) is not None:
            added = t1.latency(50) - d1.latency(50)
            row.update(added_p50_c1_ms=round(added, 3), latency_target_met=clean and added < MAX_ADDED_P50_C1_MS)
        if not clean:
            row["note"] = "failed requests: a target counts as met only when every request succeeded"
        comparisons.append(row)
    return {
        "settings": {"requests": args.requests, "rounds": args.rounds, "concurrency": args.concurrency,
                     "words": args.words,
                     "warmup": args.warmup, "c1_requests": args.c1_requests, "modes": args.modes,
                     "cpus": os.cpu_count(), "python": pyplatform.python_version()},
        "targets": {"min_throughput_ratio": MIN_THROUGHPUT_RATIO, "max_added_p50_c1_ms": MAX_ADDED_P50_C1_MS},
        "passes": [r.summary() for r in passes],
        "c1_passes": [r.summary() for r in c1_passes],
        "comparisons": comparisons,
        "warmup_errors": sum(r.error_count for r in warmups),
        "warmup_error_kinds": dict(sum((r.errors for r in warmups), start=Counter())),
        "failed_requests": sum(r.error_count for r in passes + c1_passes + warmups),
        "profiles": profiles,
    }


def _ms(x: object) -> str:
    return "-" if x is None else f"{x:.2f}"


def render(report: dict[str, object]) -> str:
    s = report["settings"]
    title = (f"arenahub bench: {s['rounds']} rounds x {s['requests']} requests per path and mode at "  # type: ignore[index]
             f"concurrency {s['concurrency']} (then {s['rounds']} x {s['c1_requests']} at concurrency 1), "  # type: ignore[index]
             f"{s['words']}-word answers; {s['cpus']} CPUs, Python {s['python']}")  # type: ignore[index]
    header = (f"{'mode':10}{'path':8}{'conc':>5}{'req/s':>9}{'rounds min-max':>16}{'p50 ms':>8}{'p99 ms':>8}"
              f"{'TTFT50':>8}{'errors':>7}  {'CPU ms/req: bench upstr platf client':36}{'others':>7}")
    out = [title, "", header]
    for r in report["passes"] + report["c1_passes"]:  # type: ignore[operator]
        cpu = r["cpu_ms_per_request"]
        cpu_text = "".join(f"{_ms(cpu.get(n)):>7}" for n in ("bench", "upstream", "platform", "client"))
        rounds = r["round_throughputs_rps"]
        spread = f"{min(rounds):.0f}-{max(rounds):.0f}" if rounds else "-"
        foreign = r["foreign_cpu_share"]
        kinds = f"  {r['error_kinds']}" if r["errors"] else ""
        out.append(f"{r['mode']:10}{r['target']:8}{r['concurrency']:>5}{r['throughput_rps']:>9.1f}{spread:>16}"
                   f"{_ms(r['p50_ms']):>8}{_ms(r['p99_ms']):>8}{_ms(r['p50_ttft_ms']):>8}{r['errors']:>7}  "
                   f"{'':11}{cpu_text}{'-' if foreign is None else f'{100 * foreign:.0f}%':>8}{kinds}")
    t = report["targets"]
    out.append("")
    for c in report["comparisons"]:  # type: ignore[union-attr]
        parts = [f"{c['mode']:10}"]
        if "throughput_ratio" in c:
            met = "met" if c["throughput_target_met"] else "MISSED"
            lo, hi = c["round_ratio_range"]
            parts.append(f"through/direct throughput {c['throughput_ratio']:.3f} (rounds {lo:.3f}-{hi:.3f}; "
                         f"target >= {t['min_throughput_ratio']:.2f}: {met}); "  # type: ignore[index]
                         f"added p50 {c['added_p50_ms']:+.2f} ms at c={s['concurrency']}")  # type: ignore[index]
        if "added_p50_c1_ms" in c:
            met = "met" if c["latency_target_met"] else "MISSED"
            parts.append(f"; added p50 {c['added_p50_c1_ms']:+.2f} ms at c=1 "
                         f"(target < {t['max_added_p50_c1_ms']:g} ms: {met})")  # type: ignore[index]
        if len(parts) == 1:
            parts.append("no comparison: a path had no successful request")
        if "note" in c:
            parts.append(f" [{c['note']}]")
        out.append("".join(parts))
    if report.get("durability"):
        out.append(durability.render(report["durability"]))  # type: ignore[arg-type]
    if report.get("programs_exited"):
        out.append(f"programs that exited during the run (name: exit code): {report['programs_exited']}")
    out.append(f"failed requests, warm-up included: {report['failed_requests']}"
               + (f" (warm-up: {report['warmup_error_kinds']})" if report["warmup_errors"] else ""))
    if report["profiles"]:
        out += ["", "profiles:", *report["profiles"]]  # type: ignore[list-item]
    return "\n".join(out)


def _targets_met(report: dict[str, object]) -> bool:
    return all(c.get("throughput_target_met", True) and c.get("latency_target_met", True)
               for c in report["comparisons"])  # type: ignore[union-attr]


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGINT (even when inherited as ignored), SIGTERM and SIGHUP unwind like Ctrl-C, so the
    # finally below stops every program.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_on_signal)
    started = time.perf_counter()
    stack = Stack(keep_dir=args.keep_data)
    try:
        say(f"starting upstream, platform and client in {stack.data_dir} ...")
        try:
            stack.start()
        except StackError as exc:
            say(f"bench: the stack did not start: {exc}")
            return 2
        say(f"ready in {time.perf_counter() - started:.1f} s; pids: "
            + ", ".join(f"{p.name} {p.pid}" for p in stack.programs))
        try:
            import uvloop
            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        report = runner(bench(args, stack))
        report["programs_exited"] = {p.name: p.proc.returncode for p in stack.programs  # type: ignore[index]
                                     if p.proc.poll() is not None}
    except KeyboardInterrupt:
        say("bench: interrupted; stopping the programs")
        return 130
    finally:
        stack.close()
    report["wall_seconds"] = round(time.perf_counter() - started, 1)  # type: ignore[index]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
        print(f"(whole run: {report['wall_seconds']} s)")
    if report["failed_requests"] or report["programs_exited"]:
        return 1
    if args.strict and not _targets_met(report):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
