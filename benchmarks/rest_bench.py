"""REST API latency and throughput of ryu_lag with 100 bonds configured.

``ryu-lag`` starts with 100 bonds of two members (ports 1..200, active, the API's default
slow rate) in its state file; one emulated switch (``ofswitch_emu``, 264 ports) connects
and an emulated LACP partner (``lacp_scale.Partner``) answers on every member, so that
each bond's status has live members. Once every member distributes and the controller
has gone quiet, at 1, 8 and 32 concurrent clients (asyncio tasks in the benchmark's
process, each with its own keep-alive connection), for a fixed time per level:

- GET ``/lag/{dpid}/{bond}`` of a random configured bond (200 with member status);
- create/delete cycles: POST ``/lag/{dpid}`` a two-port bond on ports no other client
  uses (201), then DELETE it (204). A cycle's latency is the two requests' sum.

Reported per level: p50/p99 ms and requests (or cycles) per second, and the CPU of the
controller and of the clients (with the emulated switch). Everything is on loopback.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks import common, lacp_scale
from benchmarks import ofswitch_emu as emu

DPID = 1
DPID_TEXT = f"{DPID:016x}"
BONDS = 100
BOND_PORTS = [[2 * i + 1, 2 * i + 2] for i in range(BONDS)]
CONCURRENCY = (1, 8, 32)
FREE_PORTS = range(2 * BONDS + 1, 2 * BONDS + 1 + 2 * max(CONCURRENCY))
ALL_PORTS = range(1, FREE_PORTS.stop)
CONVERGE_TIMEOUT = 60.0
GET_P99_LIMIT = 20.0  # ms, at the largest concurrency
CYCLE_P99_LIMIT = 50.0  # ms
PROFILE_SECONDS = 5.0
LIMITS = (
    "what limits it: every client here is closed-loop, so at 32 clients a request waits for the other 31 "
    "(latency ~ 32 x the time one request takes), and the controller serves requests on one core. A request "
    "costs ~0.25 ms in the eventlet WSGI stack before ryu_lag sees it (HTTP parsing through email.parser, webob, "
    "routes), plus ~0.15 ms for a bond's status (a third of it JSON encoding) and ~0.5 ms for a create or delete "
    "(validation, one SQLite commit, the bond's engine and group, ~14 OpenFlow messages): a cycle is two "
    "requests, ~1.5 ms of work, ~50 ms for 32 clients before any tail. What ryu_lag does about it: it serves "
    "REST without eventlet's per-request access-log line (rest/server.py; +25% GETs per second in interleaved "
    "runs here); it yields before each request so that no client starves (without that, one keep-alive client "
    "took 1,380 requests while another got 7); and ryu-lag runs an eventlet hub that serves the ready "
    "connections of a poll round in the order they became ready (ryu_lag/fifo_hub.py; eventlet's own hub runs "
    "them in hash order, so a request could wait almost two rounds: p99/p50 at 32 clients went from 1.8-3.0 to "
    "1.4-1.6). What remains of the tail is rounds made longer by timers, garbage collection and, on this VM, "
    "CPU steal (see the Machine section)"
)


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client connection (responses with Content-Length or none).

    Cheaper per request than ``http.client``, so that the clients, which share two cores
    with the controller, take as little CPU as they can.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) of one request."""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        header = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(header[9:12]), await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


@dataclass
class Level:
    """What the clients of one level measured: seconds per request (or cycle), and failures."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def timed(self, conn: HttpConnection, method: str, path: str, body: bytes | None, expect: int) -> float:
        """Seconds one request took; a status other than ``expect`` is recorded as an error."""
        start = time.perf_counter()
        status, data = await conn.request(method, path, body)
        elapsed = time.perf_counter() - start
        if status != expect:
            self.errors.append(f"{method} {path}: {status} {data[:200]!r}")
        return elapsed


async def _get_client(conn: HttpConnection, client: int, deadline: float, level: Level) -> None:
    rng = random.Random(client)
    while time.monotonic() < deadline:
        path = f"/lag/{DPID_TEXT}/bond{rng.randrange(BONDS)}"
        level.latencies.append(await level.timed(conn, "GET", path, None, 200))


async def _cycle_client(conn: HttpConnection, client: int, deadline: float, level: Level) -> None:
    name = f"bench{client}"
    body = json.dumps({"name": name, "ports": [FREE_PORTS[2 * client], FREE_PORTS[2 * client + 1]]}).encode()
    while time.monotonic() < deadline:
        created = await level.timed(conn, "POST", f"/lag/{DPID_TEXT}", body, 201)
        deleted = await level.timed(conn, "DELETE", f"/lag/{DPID_TEXT}/{name}", None, 204)
        level.latencies.append(created + deleted)


Client = Callable[[HttpConnection, int, float, Level], Awaitable[None]]


async def _load(controller: emu.Controller, client: Client, clients: int, duration: float,
                profile_dir: pathlib.Path | None = None) -> tuple[dict, list[str]]:
    """Run ``clients`` concurrent ``client``s for ``duration`` seconds: the level's figures and,
    with ``profile_dir``, a py-spy summary of the controller meanwhile."""
    assert controller.api_port is not None
    level = Level()
    conns = [await HttpConnection.open(controller.api_port) for _ in range(clients)]
    profile = emu.Profile(controller.proc.pid, duration - 0.5, profile_dir) if profile_dir else None
    cpu0, own0, start = controller.cpu(), emu.own_cpu(), time.monotonic()
    await asyncio.gather(*(client(conn, i, start + duration, level) for i, conn in enumerate(conns)))
    elapsed = time.monotonic() - start
    cpu, own = controller.cpu() - cpu0, emu.own_cpu() - own0
    for conn in conns:
        conn.close()
    p50, p99 = emu.percentile(level.latencies, 50), emu.percentile(level.latencies, 99)
    row = {
        "clients": clients, "count": len(level.latencies), "per s": len(level.latencies) / elapsed,
        "p50 ms": p50 and p50 * 1e3, "p99 ms": p99 and p99 * 1e3, "errors": len(level.errors),
        "controller CPU %": 100 * cpu / elapsed, "client CPU %": 100 * own / elapsed,
        "first error": level.errors[0] if level.errors else None,
    }
    lines = await asyncio.get_running_loop().run_in_executor(None, profile.summary) if profile else []
    return row, lines


async def _measure(controller: emu.Controller, duration: float, workdir: pathlib.Path,
                   profile: bool) -> tuple[list[dict], list[str]]:
    """The rows of every level and, with ``profile``, py-spy summaries of extra runs of the levels missing a goal."""
    switch = await emu.connect(DPID, ALL_PORTS, controller.of_port)
    await emu.wait_described([switch], 20.0)
    window = lacp_scale.Window()
    partners = lacp_scale.attach_partners(switch, BOND_PORTS, window)
    sender = asyncio.create_task(lacp_scale.send_periodic(partners, window))
    try:
        started = time.monotonic()
        while not all(p.up for p in partners) and time.monotonic() - started < CONVERGE_TIMEOUT:
            await asyncio.sleep(0.2)
        await emu.wait_quiet([switch], quiet=1.0, timeout=CONVERGE_TIMEOUT)
        up = sum(p.up for p in partners)
        converged = time.monotonic() - started
        rows, notes = [], []
        kinds = (("GET bond", _get_client, GET_P99_LIMIT), ("POST+DELETE cycle", _cycle_client, CYCLE_P99_LIMIT))
        for kind, client, limit in kinds:
            for clients in CONCURRENCY:
                row, _ = await _load(controller, client, clients, duration)
                rows.append({"request": kind, "members up": f"{up}/{len(partners)}", "converged s": converged, **row})
            if profile and (row["p99 ms"] is None or row["p99 ms"] > limit):
                _, lines = await _load(controller, client, clients, PROFILE_SECONDS, workdir)
                notes.append(f"goal missed: py-spy profile of ryu_lag under {kind} at {clients} clients (an extra "
                             f"{PROFILE_SECONDS:.0f} s run): " + "; ".join(lines))
        return rows, notes
    finally:
        sender.cancel()
        switch.transport.close()


def run(quick: bool = False) -> common.Result:
    """Every level of both request kinds against one ryu-lag; goals at 32 clients."""
    duration = 2.0 if quick else 6.0
    result = common.Result("rest")
    started = time.monotonic()
    bonds = [(DPID, {"name": f"bond{i}", "ports": ports}) for i, ports in enumerate(BOND_PORTS)]
    with (tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp,
          emu.Controller.ryu_lag(pathlib.Path(tmp), bonds) as controller):
        result.rows, profiles = asyncio.run(_measure(controller, duration, pathlib.Path(tmp), profile=not quick))
    at_32 = {row["request"]: row for row in result.rows if row["clients"] == max(CONCURRENCY)}
    clean = all(row["errors"] == 0 for row in result.rows)
    result.goals.append(common.goal_at_most(f"GET bond p99 at {max(CONCURRENCY)} clients",
                                            at_32["GET bond"]["p99 ms"] if clean else None, GET_P99_LIMIT, "ms"))
    result.goals.append(common.goal_at_most(f"create+delete cycle p99 at {max(CONCURRENCY)} clients",
                                            at_32["POST+DELETE cycle"]["p99 ms"] if clean else None, CYCLE_P99_LIMIT,
                                            "ms"))
    result.notes += profiles
    if not all(goal.met for goal in result.goals):
        result.notes.append(LIMITS)
    if quick and not all(goal.met for goal in result.goals):
        result.notes.append("goal missed: run without --quick for a profile of ryu_lag")
    result.notes += [
        (f"{BONDS} bonds of 2 members (slow rate) on one emulated switch with an LACP partner per member; "
        f"{duration:.0f} s per level; each client an asyncio task with one keep-alive connection; a cycle is POST then "
        "DELETE of a bond on two ports of its own, its latency their sum"),
        "a goal counts as missed if any request failed (errors column)",
        f"run time {time.monotonic() - started:.0f} s",
    ]
    return result


def main() -> None:
    common.bench_main(run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
