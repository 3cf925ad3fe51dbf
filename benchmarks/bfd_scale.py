"""BFD scale: how many bond members one ryu-lag process keeps at 100 ms BFD hellos and fast LACP.

Emulated switches (``ofswitch_emu``, 64 member ports each, bonds of 8) play the partner on
every member twice over: the fast-rate LACP partner of ``lacp_scale`` (a LACPDU packet-in
per member every second) and a BFD peer, one :class:`ryu_lag.bfd.BondBfd` per emulated
bond (RFC 5880 asynchronous mode, Open vSwitch's encapsulation, 100 ms min TX and min RX,
multiplier 3: about 11 packets a second each way per member with the 75-100 % jitter).
The peer answers the controller's BFD packet-outs (Poll with Final) and sends its own as
packet-ins on a 5 ms timer loop. ryu-lag has the bonds in its state file with
``"rate": "fast"`` and ``"bfd": {}``.

A rung passes when, once every member's LACP is up and every BFD session is Up (on the
peer's side) and the controller has worked off its backlog, over the steady window:

- **no false detection**: no BFD session leaves Up on the peer's side (the controller's
  packets stopped for 300 ms: "detection time expired", or the controller said Down because
  it missed ours for 300 ms: "remote state Down"), no state change on the controller's
  (``ryu_lag_member_bfd_state_changes_total`` from ``/metrics`` at the window's start and
  after it), and every session Up at the end on both sides;
- LACP kept: no member drops out of sync/collecting/distributing, none goes 3 s without a
  controller LACPDU.

Also reported: the controller's CPU (from /proc: seconds per second, i.e. the share of one
core) and per 1000 members, the emulator's own CPU (it runs the same BFD engine for every
member and shares the two cores with the controller), the largest and p99 gap between the
controller's BFD packets on a member (the TX interval is 75-100 ms), the emulator's p99
lateness on its own timers (when that grows, a detection may be the emulator's fault,
not the controller's), sessions that left Up while the rung was converging, and how long
a ``/metrics`` scrape takes at that size (one runs in the middle of the window, as
Prometheus would; the controller serves it on the same thread that runs BFD). The ladder
stops at the first rung that fails.
"""

from __future__ import annotations

import asyncio
import collections
import os
import pathlib
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from benchmarks import common
from benchmarks import lacp_scale as lacp
from benchmarks import ofswitch_emu as emu
from ryu_lag.bfd import BfdConfig, BfdUpdate, BondBfd, Discriminators, State

HELLO_MS = 100
MULTIPLIER = 3
TIMER_STEP = 0.005  # the peer's timer loop
FULL_LADDER = (256, 512, 640, 768, 896, 1024, 1536)
QUICK_LADDER = (512, 768, 1024)
BASELINE_MEMBERS = 512  # a rung of fast LACP alone (lacp_scale's), for what BFD adds
GOAL_MEMBERS = 512
SCRAPE_EVERY = 5.0  # seconds between /metrics scrapes in the window
_SLOW = lacp.ETH_TYPE_SLOW.to_bytes(2, "big")
_PEER_DISCRIMINATOR = 0x10000  # the peer's first discriminator on each switch (ryu-lag's start at 1)


@dataclass
class BfdWindow:
    """What the BFD peers saw, in the steady window and before it."""

    start: float = float("inf")
    end: float = float("inf")
    gaps: list[float] = field(default_factory=list)  # between the controller's packets on a member
    own_lateness: list[float] = field(default_factory=list)  # the peer's timers, past their deadline
    left_up: list[tuple[int, int, str]] = field(default_factory=list)  # (dpid, port, reason) in the window
    left_up_before: collections.Counter[str] = field(default_factory=collections.Counter)  # by reason, before the window
    controller_packets: int = 0
    peer_packets: int = 0

    def active(self, now: float) -> bool:
        return self.start <= now <= self.end


class BfdPeer:
    """The BFD end of every bond of one emulated switch."""

    def __init__(self, switch: emu.EmuSwitch, bonds: list[list[int]], window: BfdWindow) -> None:
        self.switch = switch
        self.window = window
        config = BfdConfig(min_tx_ms=HELLO_MS, min_rx_ms=HELLO_MS, multiplier=MULTIPLIER)
        discriminators = Discriminators(_PEER_DISCRIMINATOR)
        self.bonds = [BondBfd(config, ports, discriminators) for ports in bonds]
        self.bond_of = {port: bond for bond in self.bonds for port in bond.ports}
        self.last_rx: dict[int, float] = {}
        self._packet_ins: dict[int, tuple[bytes, bytes]] = {}  # port -> (frame, its PACKET_IN)

    def start(self, now: float) -> None:
        """Every member's link up: the sessions start sending."""
        for bond in self.bonds:
            for port in bond.ports:
                self._apply(bond.set_link(port, True, now, emu.mac_text(emu.port_mac(self.switch.dpid, port))), now)

    def receive(self, port: int, frame: bytes, now: float) -> None:
        """A PACKET_OUT of the controller's on ``port`` that is not a LACPDU."""
        bond = self.bond_of.get(port)
        if bond is None:
            return
        window = self.window
        last = self.last_rx.get(port)
        if window.active(now):
            window.controller_packets += 1
            if last is not None:
                window.gaps.append(now - last)
        self.last_rx[port] = now
        self._apply(bond.receive_frame(port, frame, now), now)

    def tick(self, now: float) -> None:
        """Run the timers that are due; the packets go out as one write."""
        messages: list[bytes] = []
        for bond in self.bonds:
            if bond.deadline <= now:
                if self.window.active(now):
                    self.window.own_lateness.append(now - bond.deadline)
                messages += self._packets(bond.tick(now), now)
        if messages:
            self.switch.send(b"".join(messages))

    def up(self) -> int:
        """Members whose session is Up on our side."""
        return sum(m.session.state is State.UP for bond in self.bonds for m in bond.members.values())

    def _apply(self, update: BfdUpdate, now: float) -> None:
        messages = self._packets(update, now)
        if messages:
            self.switch.send(b"".join(messages))

    def _packets(self, update: BfdUpdate, now: float) -> list[bytes]:
        window = self.window
        for port, change in update.state_changes:
            if change.old is State.UP:
                if window.active(now):
                    window.left_up.append((self.switch.dpid, port, change.reason))
                elif now < window.start:
                    window.left_up_before[change.reason] += 1
        messages = []
        for port, frame in update.transmit:
            cached = self._packet_ins.get(port)
            if cached is None or cached[0] is not frame:  # BondBfd hands out the same frame while it is unchanged
                cached = self._packet_ins[port] = (frame, emu.packet_in(port, frame, emu.OFPR_ACTION))
            messages.append(cached[1])
        if window.active(now):
            window.peer_packets += len(messages)
        return messages


def attach(switch: emu.EmuSwitch, bonds: list[list[int]], lacp_window: lacp.Window,
           bfd_window: BfdWindow) -> tuple[list[lacp.Partner], BfdPeer]:
    """LACP partners and the BFD peer on ``bonds``; the switch's PACKET_OUTs go to one or the other."""
    partners = lacp.attach_partners(switch, bonds, lacp_window)
    to_partners = switch.on_packet_out
    assert to_partners is not None
    peer = BfdPeer(switch, bonds, bfd_window)

    def packet_out(port: int, frame: bytes, now: float) -> None:
        if frame[12:14] == _SLOW:
            to_partners(port, frame, now)
        else:
            peer.receive(port, frame, now)

    switch.on_packet_out = packet_out
    return partners, peer


async def run_timers(peers: list[BfdPeer]) -> None:
    while True:
        now = time.monotonic()
        for peer in peers:
            peer.tick(now)
        await asyncio.sleep(TIMER_STEP)


@dataclass
class Scrape:
    """The controller's BFD series from one ``/metrics``, and how long the scrape took."""

    seconds: float
    up: int
    members: int
    state_changes: float


def scrape(api_port: int) -> Scrape:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=30) as response:
        text = response.read().decode()
    seconds = time.monotonic() - started
    up = members = 0
    changes = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ryu_lag_member_bfd_state" and sample.labels["state"] == "up":
                members += 1
                up += int(sample.value)
            elif sample.name == "ryu_lag_member_bfd_state_changes_total":
                changes += sample.value
    return Scrape(seconds, up, members, changes)


def start_controller(members: int, workdir: pathlib.Path) -> emu.Controller:
    bfd = {"min_tx_ms": HELLO_MS, "min_rx_ms": HELLO_MS, "multiplier": MULTIPLIER}
    configs = [(dpid, {"name": f"bond{(ports[0] - 1) // lacp.BOND_SIZE}", "ports": ports, "rate": "fast",
                       "mode": "active", "bfd": bfd}) for dpid, ports in lacp.bonds_of(members)]
    return emu.Controller.ryu_lag(workdir, configs)


async def _rung(controller: emu.Controller, members: int, duration: float, converge_timeout: float,
                scrape_every: float | None) -> dict:
    lacp_window, bfd_window = lacp.Window(), BfdWindow()
    bonds = lacp.bonds_of(members)
    dpids = sorted({dpid for dpid, _ in bonds})
    switches = [await emu.connect(dpid, range(1, lacp.MEMBERS_PER_SWITCH + 1), controller.of_port, emu.Meters.PKTPS)
                for dpid in dpids]
    await emu.wait_described(switches, 30.0)
    partners: list[lacp.Partner] = []
    peers: list[BfdPeer] = []
    for switch in switches:
        switch_partners, peer = attach(switch, [ports for d, ports in bonds if d == switch.dpid], lacp_window,
                                       bfd_window)
        partners += switch_partners
        peers.append(peer)
    started = time.monotonic()
    for peer in peers:
        peer.start(started)
    tasks = [asyncio.create_task(lacp.send_periodic(partners, lacp_window)),
             asyncio.create_task(lacp.echo_probe(switches)), asyncio.create_task(run_timers(peers))]
    api_port = controller.api_port
    assert api_port is not None
    try:
        deadline = started + converge_timeout
        while (not all(p.up for p in partners) or sum(p.up() for p in peers) < members) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        converged = time.monotonic() - started
        while not await lacp.drained(switches) and time.monotonic() < deadline:
            pass
        settled = time.monotonic() - started
        lacp_up_at_start, bfd_up_at_start = sum(p.up for p in partners), sum(p.up() for p in peers)
        cpu0, own0, machine0 = controller.cpu(), emu.own_cpu(), machine_busy()
        lacp_window.start = bfd_window.start = time.monotonic()
        lacp_window.end = bfd_window.end = lacp_window.start + duration
        scrapes = []  # as Prometheus would, while BFD runs: the first at the window's start, the baseline
        while scrape_every is not None and time.monotonic() < lacp_window.end:
            scrapes.append(await asyncio.to_thread(scrape, api_port))
            await asyncio.sleep(min(scrape_every, max(0.0, lacp_window.end - time.monotonic())))
        await asyncio.sleep(max(0.0, lacp_window.end - time.monotonic()))
        now = time.monotonic()
        cpu, own, machine = controller.cpu() - cpu0, emu.own_cpu() - own0, machine_busy() - machine0
        elapsed = now - lacp_window.start
        lacp_window.end = bfd_window.end = now
        lacp_up_at_end, bfd_up_at_end = sum(p.up for p in partners), sum(p.up() for p in peers)
        open_gaps = [now - p.last_rx if p.last_rx is not None else elapsed for p in partners]
        lacp_window.max_gap = max([lacp_window.max_gap, *open_gaps])
        bfd_open_gaps = [now - last for peer in peers for last in peer.last_rx.values()]
        after = await asyncio.to_thread(scrape, api_port)
    finally:
        for task in tasks:
            task.cancel()
        for switch in switches:
            switch.transport.close()
    controller_changes = after.state_changes - scrapes[0].state_changes if scrapes else None
    false_detections = len(bfd_window.left_up)
    bfd_kept = (false_detections == 0 and not controller_changes and bfd_up_at_start == bfd_up_at_end == members
                and after.up == after.members == members)
    lacp_kept = (lacp_up_at_start == lacp_up_at_end == members and not lacp_window.flapped
                 and lacp_window.max_gap < lacp.MAX_GAP)
    max_bfd_gap = max([*bfd_window.gaps, *bfd_open_gaps], default=None)
    return {
        "members": members, "switches": len(switches), "converged s": converged, "settled s": settled,
        "BFD Up (peer) start/end": f"{bfd_up_at_start}/{bfd_up_at_end}",
        "BFD Up (controller) end": f"{after.up}/{after.members}",
        "false detections": false_detections,
        "left Up (peer side)": len(bfd_window.left_up), "state changes (controller)": controller_changes,
        "left Up while converging": sum(bfd_window.left_up_before.values()),
        "why (converging)": ", ".join(f"{reason} {n}" for reason, n in bfd_window.left_up_before.most_common(2)),
        "LACP up start/end": f"{lacp_up_at_start}/{lacp_up_at_end}", "LACP flapped": len(lacp_window.flapped),
        "BFD packets/s out": bfd_window.controller_packets / elapsed, "BFD packets/s in": bfd_window.peer_packets / elapsed,
        "p99 BFD gap ms": _ms(emu.percentile(bfd_window.gaps, 99)), "max BFD gap ms": _ms(max_bfd_gap),
        "controller CPU %": 100 * cpu / elapsed, "CPU per 1000 members": cpu / elapsed / (members / 1000),
        "emulator CPU %": 100 * own / elapsed, "other processes CPU %": 100 * max(0.0, machine - cpu - own) / elapsed,
        "emulator p99 lateness ms": _ms(emu.percentile(bfd_window.own_lateness, 99)),
        "scrapes": len(scrapes), "max scrape ms": max((1e3 * x.seconds for x in scrapes), default=None),
        "kept": "yes" if bfd_kept and lacp_kept else "NO",
        "first false detection": bfd_window.left_up[0][2] if bfd_window.left_up else None,
    }


def machine_busy() -> float:
    """CPU seconds all the machine's cores have been busy so far (from /proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def measure(members: int, workdir: pathlib.Path, duration: float, scrape_every: float | None = SCRAPE_EVERY) -> dict:
    """One rung: a fresh ryu-lag, ``members`` members, a steady window of ``duration`` seconds.

    ``scrape_every``: seconds between ``/metrics`` scrapes in the window (None: none but one after it).
    """
    with start_controller(members, workdir) as controller:
        return asyncio.run(_rung(controller, members, duration, lacp.settle_limit(members), scrape_every))


def run(quick: bool = False) -> common.Result:
    """Climb the ladder until a rung has a false detection or loses LACP."""
    ladder, duration = (QUICK_LADDER, 10.0) if quick else (FULL_LADDER, 30.0)
    result = common.Result("bfd_scale")
    best, cpu_per_1000 = 0, None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-bfd-") as tmp:
        workdir = pathlib.Path(tmp)
        for members in ladder:
            row = measure(members, workdir, duration)
            result.rows.append(row)
            if row["kept"] != "yes":
                break
            best, cpu_per_1000 = members, row["CPU per 1000 members"]
        baseline, _ = lacp.measure("ryu_lag", BASELINE_MEMBERS, workdir, duration, lacp.settle_limit(BASELINE_MEMBERS))
    lacp_alone = baseline["CPU per 1000 members"] if baseline["kept alive"] == "yes" else None
    result.goals.append(common.goal_at_least("members kept at 100 ms BFD and fast LACP", float(best), GOAL_MEMBERS,
                                             "members"))
    result.notes += [
        (f"largest rung kept: {best} (ladder {list(ladder)}; the ladder stops at the first rung with a false "
         "detection or a LACP member lost, so the limit lies between that rung and the one below)"),
        ("controller CPU per 1000 members (CPU seconds per second: the share of one core) with fast LACP and "
         f"BFD at 100 ms, at the largest rung kept: {cpu_per_1000:.3f}" if cpu_per_1000 is not None else "no rung kept"),
        (f"fast LACP alone (lacp_scale's partners, {BASELINE_MEMBERS} members, same window): {lacp_alone:.3f} CPU "
         "seconds per second per 1000 members" + (f"; BFD at 100 ms adds {cpu_per_1000 - lacp_alone:.3f}"
                                                  if cpu_per_1000 is not None else "")
         if lacp_alone is not None else f"fast LACP alone at {BASELINE_MEMBERS} members: not kept alive"),
        (f"steady window {duration:.0f} s once every member's LACP and BFD were up and the backlog drained; bonds "
         f"of {lacp.BOND_SIZE}, {lacp.MEMBERS_PER_SWITCH} members per emulated switch; BFD {HELLO_MS} ms min TX "
         f"and min RX, multiplier {MULTIPLIER} (300 ms detection) on both sides"),
        (f"a /metrics scrape every {SCRAPE_EVERY:.0f} s in the window, as Prometheus would: the controller serves "
         "it on the thread that runs BFD, so 'max scrape ms' is time its BFD timers and packet-ins waited"),
        (f"the emulator (this process, {os.cpu_count()} cores shared with the controller and other processes) runs "
         "the same BFD engine and a LACP partner for every member: its CPU and the other processes' are in the "
         "table; the controller's is read from /proc; a rising emulator lateness or a busy machine means a "
         "detection may not be the controller's fault"),
        f"run time {time.monotonic() - started:.0f} s",
    ]
    return result


def main() -> None:
    common.bench_main(run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
