"""LACP scale: how many fast-rate bond members one controller process keeps alive.

Emulated switches (``ofswitch_emu``, 64 member ports each, bonds of 8) play an active,
fast-rate 802.1AX partner on every member: a LACPDU packet-in per member every second
(staggered over the second), sent at once (at most 3 a second) when the partner's own
state changes or the controller's PDU shows a stale view of it. The partner echoes the
controller's actor information in its partner TLV and is Synchronized once it has seen an
aggregatable controller, Collecting and Distributing once the controller is in sync.
ryu_lag has the bonds in its state file (active, fast); the classic app (Ryu's passive
``lacplib``, which answers every LACPDU it receives) gets them through CLASSIC_LACP_BONDS.

In the steady window every fifth PDU of a member (staggered) is a probe: its partner TLV
shows a stale view of the controller (the Expired bit set in the controller's state), which
802.1AX answers at once (update_NTT) and changes nothing else; Ryu's lacplib answers every
PDU anyway. A rung of the ladder passes when, over the window, after every member came up:

- no member goes ``MAX_GAP`` (3 s, the short timeout) without a controller PDU, and no
  member drops out of sync/collecting/distributing;
- the p99 delay stays under ``DELAY_LIMIT`` (100 ms), for both kinds of delay: the time
  from a probe to the controller's next PDU on that member, and the lateness of each
  controller PDU against a 1 s cadence (gap - 1 s, floored at 0).

The steady window starts once every member is up and the controller has worked off its
backlog (ECHOs come back within 50 ms), or at ``settle_limit`` (20 s + 10 ms a member).
Also reported: the time to both (converged, settled) and, during convergence, the time
from each partner PDU with a changed state to the controller's next PDU; an ECHO round
trip per switch and second (it queues behind the packet-ins: the controller's backlog);
CPU seconds of the controller per second per 1000 members. The ladder stops at a
controller's first failure.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import pathlib
import tempfile
import time
from dataclasses import dataclass, field

from benchmarks import common
from benchmarks import ofswitch_emu as emu
from ryu_lag.lacp.pdu import (
    ETH_TYPE_SLOW,
    NULL_PORT_INFO,
    Lacpdu,
    LacpState,
    PduError,
    PortInfo,
    decode_frame,
    encode_frame,
)

PERIOD = 1.0  # fast periodic time
PROBE_EVERY = 5  # in the window, one periodic PDU in five is a probe
MAX_GAP = 3.0  # short timeout
DELAY_LIMIT = 0.1
SETTLED_ECHO = 0.05  # the steady window starts once ECHOs come back this fast
MAX_TX_PER_PERIOD = 3
MEMBERS_PER_SWITCH = 64
BOND_SIZE = 8
SLOTS = 100  # the periodic sender's wheel: 10 ms slots
BASE_STATE = LacpState.ACTIVITY | LacpState.TIMEOUT | LacpState.AGGREGATION
UP = LacpState.SYNCHRONIZATION | LacpState.COLLECTING | LacpState.DISTRIBUTING
_SLOW = ETH_TYPE_SLOW.to_bytes(2, "big")
_TLVS = slice(16, 56)  # the actor and partner TLVs inside a frame
FULL_LADDER = (256, 1024, 2048, 2560, 3072, 3584, 4096, 6144, 8192)
QUICK_LADDER = (1024, 4096)  # 4096: four times the classic app's usual limit


@dataclass
class Window:
    """What the partners saw during the steady window."""

    start: float = float("inf")
    end: float = float("inf")
    max_gap: float = 0.0
    lateness: list[float] = field(default_factory=list)
    probe_answers: list[float] = field(default_factory=list)
    convergence_answers: list[float] = field(default_factory=list)
    flapped: set[tuple[int, int]] = field(default_factory=set)
    controller_pdus: int = 0
    bad_pdus: int = 0
    own_lateness: list[float] = field(default_factory=list)

    def active(self, now: float) -> bool:
        return self.start <= now <= self.end


class Partner:
    """An active, fast-rate LACP partner on one member port."""

    __slots__ = (
        "_raw",
        "actor",
        "awaiting",
        "controller_state",
        "controller_view_ok",
        "last_rx",
        "mac",
        "msg",
        "partner",
        "port",
        "probe_msg",
        "probed",
        "sent_state",
        "switch",
        "tx_times",
        "window",
    )

    def __init__(self, switch: emu.EmuSwitch, port: int, key: int, window: Window) -> None:
        self.switch = switch
        self.port = port
        self.window = window
        system = emu.mac_text(bytes([0x0A]) + switch.dpid.to_bytes(5, "big"))
        self.mac = emu.mac_text(bytes([0x0A, 0xFF]) + switch.dpid.to_bytes(2, "big") + port.to_bytes(2, "big"))
        self.actor = PortInfo(32768, system, key, 32768, port, BASE_STATE)
        self.partner = NULL_PORT_INFO
        self.controller_state = LacpState(0)
        self.controller_view_ok = False  # the controller's partner TLV equals our actor information
        self.last_rx: float | None = None
        self.awaiting: float | None = None  # when a PDU with a changed state went out, until the next answer
        self.probed: float | None = None  # when a probe went out, until the next answer
        self.sent_state: LacpState | None = None
        self.tx_times: collections.deque[float] = collections.deque(maxlen=MAX_TX_PER_PERIOD)
        self._raw = b""
        self._encode()

    @property
    def up(self) -> bool:
        return UP in self.controller_state and self.controller_view_ok

    def _encode(self) -> None:
        frame = encode_frame(self.mac, Lacpdu(self.actor, self.partner))
        self.msg = emu.packet_in(self.port, frame, emu.OFPR_ACTION)
        stale = dataclasses.replace(self.partner, state=self.partner.state | LacpState.EXPIRED)
        self.probe_msg = emu.packet_in(self.port, encode_frame(self.mac, Lacpdu(self.actor, stale)), emu.OFPR_ACTION)

    def pdu(self, now: float, probe: bool = False) -> bytes:
        """The PACKET_IN to send now (periodic or need-to-transmit; a probe if asked)."""
        self.tx_times.append(now)
        if probe:
            self.probed = now
            return self.probe_msg
        if self.actor.state != self.sent_state:
            self.sent_state = self.actor.state
            if self.awaiting is None:
                self.awaiting = now
        return self.msg

    def receive(self, frame: bytes, now: float) -> None:
        """A controller LACPDU left the switch on this member."""
        window = self.window
        if self.last_rx is not None and window.active(now):
            gap = now - self.last_rx
            window.controller_pdus += 1
            window.max_gap = max(window.max_gap, gap)
            window.lateness.append(max(0.0, gap - PERIOD))
        self.last_rx = now
        if self.awaiting is not None:
            window.convergence_answers.append(now - self.awaiting)
            self.awaiting = None
        if self.probed is not None:
            if window.active(now):
                window.probe_answers.append(now - self.probed)
            self.probed = None
        raw = frame[_TLVS]
        if raw == self._raw:
            return  # nothing new: the usual case in the steady state
        self._raw = raw
        try:
            _, pdu = decode_frame(frame)
        except PduError:
            window.bad_pdus += 1
            return
        was_up = self.up
        self.controller_state = pdu.actor.state
        state = BASE_STATE
        if pdu.actor.state & LacpState.AGGREGATION:
            state |= LacpState.SYNCHRONIZATION
        if pdu.actor.state & LacpState.SYNCHRONIZATION:
            state |= LacpState.COLLECTING | LacpState.DISTRIBUTING
        changed = state != self.actor.state
        if changed or pdu.actor != self.partner:
            self.actor = dataclasses.replace(self.actor, state=state)
            self.partner = pdu.actor
            self._encode()
        self.controller_view_ok = pdu.partner == self.actor
        if was_up and not self.up and window.active(now):
            window.flapped.add((self.switch.dpid, self.port))
        rate_ok = len(self.tx_times) < MAX_TX_PER_PERIOD or now - self.tx_times[0] >= PERIOD
        if (changed or not self.controller_view_ok) and rate_ok:
            self.switch.send(self.pdu(now))


def attach_partners(switch: emu.EmuSwitch, bonds: list[list[int]], window: Window) -> list[Partner]:
    """A partner on every port of ``bonds``, one partner key per bond; the switch's PACKET_OUTs go to them."""
    partners = {port: Partner(switch, port, 100 + i, window) for i, ports in enumerate(bonds) for port in ports}

    def packet_out(port: int, frame: bytes, now: float) -> None:
        partner = partners.get(port)
        if partner is not None and frame[12:14] == _SLOW:
            partner.receive(frame, now)

    switch.on_packet_out = packet_out
    return list(partners.values())


async def send_periodic(partners: list[Partner], window: Window) -> None:
    """Send each partner's PDU once a second, staggered over the second on a wheel of 10 ms slots."""
    wheel: list[list[Partner]] = [[] for _ in range(SLOTS)]
    for i, partner in enumerate(partners):
        wheel[i * SLOTS // len(partners)].append(partner)
    slot_time = PERIOD / SLOTS
    start = time.monotonic()
    tick = 0
    while True:
        due = start + tick * slot_time
        now = time.monotonic()
        if now < due:
            await asyncio.sleep(due - now)
            now = time.monotonic()
        if window.active(now):
            window.own_lateness.append(now - due)
        batches: dict[emu.EmuSwitch, list[bytes]] = collections.defaultdict(list)
        probing = window.active(now)
        for i, partner in enumerate(wheel[tick % SLOTS]):
            probe = probing and (tick // SLOTS + i) % PROBE_EVERY == 0
            batches[partner.switch].append(partner.pdu(now, probe))
        for switch, msgs in batches.items():
            switch.send(b"".join(msgs))
        tick += 1


async def echo_probe(switches: list[emu.EmuSwitch]) -> None:
    while True:
        for switch in switches:
            switch.send_echo()
        await asyncio.sleep(PERIOD)


async def drained(switches: list[emu.EmuSwitch]) -> bool:
    """Whether every switch's next ECHO comes back within SETTLED_ECHO: the controller has no backlog."""
    for switch in switches:
        switch.echo_rtts.clear()
    await asyncio.sleep(PERIOD * 1.2)
    return all(s.echo_rtts and max(s.echo_rtts) < SETTLED_ECHO for s in switches)


def bonds_of(members: int) -> list[tuple[int, list[int]]]:
    """(dpid, ports) of every bond: 64 members per switch in bonds of 8."""
    if members <= 0 or members % MEMBERS_PER_SWITCH:
        raise ValueError(f"members must be a positive multiple of {MEMBERS_PER_SWITCH}, not {members}")
    return [(dpid, list(range(first, first + BOND_SIZE)))
            for dpid in range(1, members // MEMBERS_PER_SWITCH + 1)
            for first in range(1, MEMBERS_PER_SWITCH + 1, BOND_SIZE)]


def start_controller(name: str, members: int, workdir: pathlib.Path) -> emu.Controller:
    bonds = bonds_of(members)
    if name == "ryu_lag":
        configs = [(dpid, {"name": f"bond{(ports[0] - 1) // BOND_SIZE}", "ports": ports, "rate": "fast",
                           "mode": "active"}) for dpid, ports in bonds]
        return emu.Controller.ryu_lag(workdir, configs)
    return emu.Controller.classic(workdir, ";".join(f"{dpid}:{','.join(map(str, ports))}" for dpid, ports in bonds))


async def _rung(controller: emu.Controller, members: int, duration: float, converge_timeout: float,
                profile_dir: pathlib.Path | None) -> tuple[dict, list[str]]:
    window = Window()
    bonds = bonds_of(members)
    dpids = sorted({dpid for dpid, _ in bonds})
    switches = [await emu.connect(dpid, range(1, MEMBERS_PER_SWITCH + 1), controller.of_port) for dpid in dpids]
    await emu.wait_described(switches, 30.0)
    partners = [p for s in switches for p in attach_partners(s, [ports for d, ports in bonds if d == s.dpid], window)]
    tasks = [asyncio.create_task(send_periodic(partners, window)), asyncio.create_task(echo_probe(switches))]
    try:
        started = time.monotonic()
        deadline = started + converge_timeout
        while not all(p.up for p in partners) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        converged = time.monotonic() - started
        while not await drained(switches) and time.monotonic() < deadline:
            pass
        settled = time.monotonic() - started
        up_at_start = sum(p.up for p in partners)
        cpu0, own0 = controller.cpu(), emu.own_cpu()
        window.start = time.monotonic()
        window.end = window.start + duration
        profile = emu.Profile(controller.proc.pid, min(duration, 10.0), profile_dir) if profile_dir else None
        await asyncio.sleep(duration)
        now = time.monotonic()
        cpu, own = controller.cpu() - cpu0, emu.own_cpu() - own0
        elapsed = now - window.start
        window.end = now
        open_gaps = [now - p.last_rx if p.last_rx is not None else elapsed for p in partners]
        window.max_gap = max([window.max_gap, *open_gaps])
        up_at_end = sum(p.up for p in partners)
    finally:
        for task in tasks:
            task.cancel()
        for switch in switches:
            switch.transport.close()
    echoes = [rtt for s in switches for rtt in s.echo_rtts]
    p99_probe, p99_late = emu.percentile(window.probe_answers, 99), emu.percentile(window.lateness, 99)
    p99 = max(p99_probe, p99_late) if p99_probe is not None and p99_late is not None else None
    kept = (up_at_start == up_at_end == members and not window.flapped and window.max_gap < MAX_GAP
            and p99 is not None and p99 < DELAY_LIMIT)
    row = {
        "controller": controller.name, "members": members, "switches": len(switches),
        "converged s": converged, "settled s": settled, "up": f"{up_at_start}/{up_at_end}", "flapped": len(window.flapped),
        "max gap s": window.max_gap,
        "p50 probe answer ms": _ms(emu.percentile(window.probe_answers, 50)), "p99 probe answer ms": _ms(p99_probe),
        "p50 lateness ms": _ms(emu.percentile(window.lateness, 50)), "p99 lateness ms": _ms(p99_late),
        "p99 answer ms (convergence)": _ms(emu.percentile(window.convergence_answers, 99)),
        "p99 echo ms": _ms(emu.percentile(echoes, 99)),
        "PDUs/s": window.controller_pdus / elapsed,
        "CPU per 1000 members": cpu / elapsed / (members / 1000), "controller CPU %": 100 * cpu / elapsed,
        "emulator CPU %": 100 * own / elapsed,
        "emulator p99 lateness ms": _ms(emu.percentile(window.own_lateness, 99)),
        "kept alive": "yes" if kept else "NO",
    }
    return row, profile.summary() if profile else []


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def measure(name: str, members: int, workdir: pathlib.Path, duration: float, converge_timeout: float,
            profile: bool = False) -> tuple[dict, list[str]]:
    """One rung: a fresh controller, ``members`` members, a steady window of ``duration`` seconds.

    Returns the row and, with ``profile``, a py-spy summary of the controller in the window.
    """
    with start_controller(name, members, workdir) as controller:
        return asyncio.run(_rung(controller, members, duration, converge_timeout, workdir if profile else None))


def run(quick: bool = False) -> common.Result:
    """Climb the ladder, the classic app first; ryu_lag starts at the classic's largest rung kept alive."""
    ladder, duration = (QUICK_LADDER, 6.0) if quick else (FULL_LADDER, 20.0)
    result = common.Result("lacp_scale")
    best: dict[str, int] = {}
    cpu_per_1000: dict[str, float] = {}
    failed: dict[str, int] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-lacp-") as tmp:
        workdir = pathlib.Path(tmp)
        for name in ("classic", "ryu_lag"):
            best[name] = 0
            rungs = [m for m in ladder if m >= best.get("classic", 0)] if name == "ryu_lag" else list(ladder)
            for members in rungs:
                row, _ = measure(name, members, workdir, duration, settle_limit(members))
                result.rows.append(row)
                if row["kept alive"] != "yes":
                    failed[name] = members
                    break
                best[name] = members
                cpu_per_1000[name] = row["CPU per 1000 members"]
        ratio = best["ryu_lag"] / best["classic"] if best["classic"] else None
        result.goals.append(common.goal_at_least("members kept alive ryu_lag / classic", ratio, 4.0, "x"))
        result.goals.append(common.goal_at_least("members kept alive by ryu_lag", float(best["ryu_lag"]), 2000,
                                                 "members"))
        if "ryu_lag" in failed and not all(goal.met for goal in result.goals):
            if quick:
                result.notes.append("goal missed: run without --quick for a profile of ryu_lag at its failing rung")
            else:
                _, profile = measure("ryu_lag", failed["ryu_lag"], workdir, duration,
                                     settle_limit(failed["ryu_lag"]), profile=True)
                result.notes.append(f"goal missed: py-spy profile of ryu_lag in the steady window at "
                                    f"{failed['ryu_lag']} members (a re-run of that rung): " + "; ".join(profile))
    result.notes += [
        (f"largest rung kept alive: classic {best['classic']}, ryu_lag {best['ryu_lag']} (ladder {list(ladder)}; "
        "a controller's ladder stops at its first failure, so its limit lies between that rung and the one below; "
        "ryu_lag starts at the classic's largest rung)"),
        "CPU per 1000 members = controller CPU seconds per second per 1000 members at the largest rung kept: "
        + ", ".join(f"{k} {v:.3f}" for k, v in cpu_per_1000.items()),
        (f"steady window {duration:.0f} s once all members were up and the backlog drained (at most 20 s + 10 ms "
        f"per member); bonds of {BOND_SIZE}, {MEMBERS_PER_SWITCH} members per emulated switch; both controllers "
        "log at INFO into a file (Ryu's lacplib writes two lines per LACPDU, ryu_lag none)"),
        f"run time {time.monotonic() - started:.0f} s",
    ]
    return result


def settle_limit(members: int) -> float:
    """How long a rung may take to bring every member up and drain the backlog."""
    return 20.0 + members / 100


def main() -> None:
    common.bench_main(run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
