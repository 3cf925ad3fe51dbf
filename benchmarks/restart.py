"""Restart: how much traffic a controller restart or a lost OpenFlow connection costs.

The classic topology of the failover benchmark (``failover.build``: h1 behind an Open
vSwitch LACP partner on s1's ports 1 and 2, h2-h4 single-homed on s1, fast rate), with
s1 reaching its controller through a TCP relay (``netlab.TcpRelay``) and its controller
record set to ``max_backoff=1000``. h2-h4 ping h1 every 10 ms while one of three events
happens, for ryu_lag and for the classic Ryu app (``classic_ryu_app.py``), each on one
topology of its own:

- ``sigterm``: SIGTERM to the controller, then its command line started again at once
  (same ports, same state file) as soon as it has exited;
- ``sigkill``: the same with SIGKILL;
- ``drop``: the relay closes s1's connection (both ends) and refuses new ones for 0.5 s;
  the switch redials.

Reported per flow: the largest gap between replies (counting from the start of the pings
and up to their end, so a flow that does not come back shows it) and the replies lost;
per event, whether ``ovs-appctl lacp/show`` (polled every 50 ms) showed the partner
negotiated with both members current throughout, and how long the controller took to
exit after the signal.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import ROOT, Goal, Result, bench_main, goal_at_most
from benchmarks.failover import Pings, Topology, build, wait_until
from tests.integration.netlab import LacpWatch, TcpRelay, ovs_available, sh

CONTROLLERS = ("ryu_lag", "classic_ryu")
EVENTS = ("sigterm", "sigkill", "drop")
MAX_BACKOFF_MS = 1000
DROP_SECONDS = 0.5  # how long the relay refuses s1's connection
BEFORE_EVENT = 1.0  # seconds of pinging before the event
AFTER_READY = 2.0  # seconds of pinging after the bond is back, for a late reset to show
GAP_LIMIT_MS = 100.0
LOST_LIMIT = 5
LOG_DIR = ROOT / "benchmarks" / "results" / "restart"


class Rig:
    """One controller's classic topology with s1 behind a relay, and what restarting needs."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.log = workdir / f"{kind}.log"
        self.topo: Topology = build(kind, "fast", workdir)
        self.lab = self.topo.lab
        try:
            target = sh("ovs-vsctl", "get-controller", self.topo.s1).strip()
            self.of_port = int(re.fullmatch(r"tcp:127\.0\.0\.1:(\d+)", target).group(1))  # type: ignore[union-attr]
            self.relay: TcpRelay = self.lab.relay(self.of_port)
            self.lab.set_controller(self.topo.s1, self.relay.port, max_backoff=MAX_BACKOFF_MS)
        except BaseException:
            self.lab.close()
            raise

    def event(self, name: str) -> Callable[[], float | None]:
        """The event ``name`` as a callable; it returns the seconds the controller took to exit."""
        def restart(sig: int) -> float:
            assert self.topo.controller is not None
            self.topo.controller, stopped = self.lab.restart(self.topo.controller, sig, self.of_port, self.log)
            return stopped

        def drop() -> None:
            self.relay.cut()
            time.sleep(DROP_SECONDS)
            self.relay.restore()

        return {
            "sigterm": lambda: restart(signal.SIGTERM),
            "sigkill": lambda: restart(signal.SIGKILL),
            "drop": drop,
        }[name]

    def ready(self, timeout: float, connections: int = 0) -> None:
        """s1 connected (after more than ``connections`` through the relay), the bond up on both sides."""
        def up() -> bool:
            return self.relay.accepted > connections and self.lab.connected(self.topo.s1) and self.topo.ready()

        if not wait_until(up, timeout):
            raise RuntimeError(f"{self.kind}: s1 not connected with the bond up after {timeout:.0f} s")


def measure(rig: Rig, event: str, run: int) -> dict:
    """Ping through one event and until the bond has been back for ``AFTER_READY`` seconds."""
    topo = rig.topo
    rig.ready(40)
    for host in topo.others:
        host.ping(topo.h1.ip, count=5, interval=0.05)
    connections = rig.relay.accepted
    watch = LacpWatch(topo.partner_bond, 0.05)
    pings = Pings(rig.lab, topo.others, topo.h1.ip, rig.workdir, f"{event}-{run}")
    time.sleep(BEFORE_EVENT)
    stopped = rig.event(event)()
    back = True
    try:
        rig.ready(20, connections)
    except RuntimeError:
        back = False
    time.sleep(AFTER_READY)
    flows = pings.stop()
    watch.stop()
    lapses = watch.lapses()
    row: dict = {"controller": rig.kind, "event": event, "run": run}
    for host, stats in zip(topo.others, flows):
        cell = f"{stats.gap_ms:.0f} ms, {stats.lost}/{stats.sent} lost"
        row[host.name.removeprefix(rig.lab.prefix)] = cell if stats.recovered else cell + ", not back"
    row["gap_ms"] = round(max(f.gap_ms for f in flows), 1)
    row["lost_per_flow"] = max(f.lost for f in flows)
    row["partner"] = "negotiated" if not lapses else f"lapsed in {len(lapses)}/{len(watch.samples)} polls"
    row["exit_s"] = round(stopped, 2) if stopped is not None else None
    if not back:
        row["error"] = "the bond was not back within 20 s"
    return row


def goals(rows: list[dict]) -> list[Goal]:
    """ryu_lag, per event: the largest gap of any flow and the most replies any flow lost."""
    out = []
    for event in EVENTS:
        ours = [r for r in rows if r["controller"] == "ryu_lag" and r["event"] == event and "gap_ms" in r]
        gap = max((r["gap_ms"] for r in ours), default=None)
        lost = max((r["lost_per_flow"] for r in ours), default=None)
        out.append(goal_at_most(f"{event}: largest gap", gap, GAP_LIMIT_MS, "ms"))
        out.append(goal_at_most(f"{event}: lost replies per flow", lost, LOST_LIMIT, "replies"))
    return out


def run(quick: bool = False) -> Result:
    """Each event once (``quick``) or three times, for each controller."""
    reason = ovs_available()
    if reason is not None:
        raise RuntimeError(f"Open vSwitch unavailable: {reason}")
    runs = 1 if quick else 3
    rows: list[dict] = []
    for kind in CONTROLLERS:
        workdir = LOG_DIR / kind
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            rig = Rig(kind, workdir)
        except Exception as exc:  # noqa: BLE001 - a broken setup is a finding, not a crash
            rows.append({"controller": kind, "error": str(exc).splitlines()[0][:200]})
            continue
        try:
            for event in EVENTS:
                for n in range(1, runs + 1):
                    try:
                        row = measure(rig, event, n)
                    except Exception as exc:  # noqa: BLE001
                        row = {"controller": kind, "event": event, "run": n, "error": str(exc).splitlines()[0][:200]}
                    rows.append(row)
                    print("restart:", " ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
        finally:
            rig.lab.close()
    notes = [
        "sigterm / sigkill: the controller gets the signal and, once it has exited, the same command line starts "
        "again (same OpenFlow port, same state file); drop: s1's OpenFlow connection is closed at both ends by "
        f"the relay, which refuses new ones for {DROP_SECONDS} s",
        f"s1 reaches its controller through a TCP relay; its controller record has max_backoff={MAX_BACKOFF_MS} "
        "(Open vSwitch redials within a second)",
        "a flow's cell: the largest gap between its replies (10 ms pings from h2, h3, h4 to h1), from the start "
        f"of the pings to their end, {BEFORE_EVENT:.0f} s before the event to {AFTER_READY:.0f} s after the bond "
        "is back; the replies lost of those sent (ping sends less often while it gets no replies); 'not back' "
        "when its replies had not resumed by the end",
        "partner: whether every 50 ms poll of ovs-appctl lacp/show found the bond negotiated with both members "
        "current; exit_s: seconds from the signal to the controller's exit",
        "the classic Ryu app (lacplib) keeps no state: after any of these it learns and negotiates from scratch",
    ]
    return Result("restart", rows, goals(rows), notes)


def main() -> None:
    bench_main(run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
