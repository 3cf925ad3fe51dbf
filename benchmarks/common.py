"""The result format every benchmark shares, and small measuring helpers.

A benchmark returns a ``Result``: rows (one dict each, printed as a table), goals
(each a measured value against a limit) and notes. ``print_result`` prints the
table, the goals and the notes, then one line ``BENCHMARK_JSON {...}`` that a
machine can read.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON_PREFIX = "BENCHMARK_JSON "
ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
CLASSIC_APP = ROOT / "benchmarks" / "classic_ryu_app.py"


@dataclass
class Goal:
    """A measured ``value`` against a ``limit`` (both in ``unit``); ``met`` says whether it holds."""

    name: str
    value: float | None
    limit: float
    unit: str
    met: bool


@dataclass
class Result:
    """What one benchmark measured."""

    benchmark: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        return cls(
            data["benchmark"], list(data.get("rows", [])), [Goal(**g) for g in data.get("goals", [])],
            list(data.get("notes", [])),
        )


def goal_at_most(name: str, value: float | None, limit: float, unit: str) -> Goal:
    """A goal met when ``value`` is measured and not above ``limit``."""
    return Goal(name, value, limit, unit, value is not None and value <= limit)


def goal_at_least(name: str, value: float | None, limit: float, unit: str) -> Goal:
    """A goal met when ``value`` is measured and not below ``limit``."""
    return Goal(name, value, limit, unit, value is not None and value >= limit)


def fmt(value: Any) -> str:
    """A cell as text: floats rounded sensibly, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of every row, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def text_table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned plain-text table."""
    if not rows:
        return "(no rows)"
    cols = columns(rows)
    cells = [cols] + [[fmt(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in cells)


def goal_line(goal: Goal) -> str:
    """``MET``/``MISSED`` with the value against the limit."""
    return f"{'MET   ' if goal.met else 'MISSED'} {goal.name}: {fmt(goal.value)} {goal.unit} (limit {fmt(goal.limit)})"


def print_result(result: Result) -> None:
    """Print the table, goals and notes, then the result as one ``BENCHMARK_JSON`` line."""
    print(f"== {result.benchmark} ==")
    print(text_table(result.rows))
    for goal in result.goals:
        print(goal_line(goal))
    for note in result.notes:
        print(f"note: {note}")
    print(JSON_PREFIX + json.dumps(result.to_dict(), sort_keys=True), flush=True)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used so far by process ``pid`` (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def start_classic_ryu(of_port: int, log: Path, bonds: str | None = None, timeout: float = 20.0) -> subprocess.Popen:
    """Start the classic Ryu baseline (``classic_ryu_app.py``) on 127.0.0.1:``of_port``.

    ``bonds`` is ``CLASSIC_LACP_BONDS`` (``"1:1,2;2:1,2"``; default ``1:1,2``). Returns
    once it listens; the caller stops it (SIGTERM).
    """
    env = dict(os.environ)
    if bonds is not None:
        env["CLASSIC_LACP_BONDS"] = bonds
    with log.open("a") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "python"), "-m", "ryu_lag.ryu_manager", str(CLASSIC_APP),
             "--ofp-tcp-listen-port", str(of_port), "--ofp-listen-host", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while not listening(of_port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"classic Ryu did not start listening on {of_port}; see {log}")
        time.sleep(0.1)
    return proc


def _command_output(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) CPU ticks of the whole machine so far, from ``/proc/stat``.

    Steal is time the hypervisor gave this VM's CPUs to someone else: figures measured
    under much of it are slower and noisier than the machine is.
    """
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    return fields[7], sum(fields[:8])


def steal_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time stolen between two :func:`cpu_ticks` readings, in percent."""
    total = after[1] - before[1]
    return 100 * (after[0] - before[0]) / total if total > 0 else 0.0


def python_speed_ms() -> float:
    """Milliseconds this machine takes, right now, for a fixed pure-Python loop (best of 5).

    A yardstick for figures from different runs: on a shared VM the same work took from
    1x to 2x as long over one day, with or without CPU steal.
    """
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, kernel, OVS, Python, date."""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    ovs = _command_output("ovs-vsctl", "--version").splitlines()
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "ovs": ovs[0].split()[-1] if ovs else None,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def bench_main(
    run: Callable[..., Result], description: str, options: Callable[[argparse.ArgumentParser], None] | None = None
) -> None:
    """The ``main()`` of a benchmark module: ``--quick``, run, print; exit 1 when a goal is missed.

    ``options`` adds the module's own arguments; ``run`` gets each as a keyword (its ``dest``).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a shorter run")
    if options is not None:
        options(parser)
    result = run(**vars(parser.parse_args()))
    print_result(result)
    sys.exit(0 if all(g.met for g in result.goals) else 1)
