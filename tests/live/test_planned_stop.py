"""Planned stop under load (issue 9, item 3): SIGTERM or SIGINT (Ctrl-C) stops a real ``ryu-lag``
carrying 2,048 fast-rate bond members within 2 s, status 0, the switches left forwarding.

Emulated switches (``benchmarks.ofswitch_emu``, 64 members each in bonds of 8) with
``benchmarks.lacp_scale``'s active fast-rate partners answering on every member; the bonds
are in the controller's state file. Once (nearly) every member distributes, every partner
sends a LACPDU at once and the signal goes to the process while it reads them (an idle
controller took the old code's KeyboardInterrupt in its main green thread and stopped; a busy
one took it in a datapath's and ran on, every time here). Then:

- it exits with status 0 within ``EXIT_LIMIT`` of the signal, and its log has no traceback
  and no datapath error (before the fix the KeyboardInterrupt landed in a datapath green
  thread, was logged as "Error in the datapath", and the process ran on);
- every member distributing at the signal got a LACPDU after it, the last one with the same
  actor information and state (Synchronization, Collecting, Distributing still set);
- no flow, group or meter delete reached any switch after the signal.
"""

from __future__ import annotations

import asyncio
import collections
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks import lacp_scale
from benchmarks import ofswitch_emu as emu
from ryu_lag.lacp.pdu import ETH_TYPE_SLOW, PortInfo, decode_frame

MEMBERS = 2048
EXIT_LIMIT = 2.0
"""Seconds from the signal to the process's exit, at most (the issue's limit)."""
REAP_TIMEOUT = 10.0
"""Seconds we wait for an exit at all before SIGKILL (so a failure says how long it took, or that it never came)."""
CONVERGE_TIMEOUT = 45.0
MIN_DISTRIBUTING = MEMBERS * 98 // 100
"""Members that must distribute before the signal: nearly all (one bond still settling is no failure)."""
QUIET = 0.5
"""Seconds without flow, group or meter mods before the signal: the pipeline is installed."""
BURST_LEAD = 0.02
"""Seconds from a burst of every partner's LACPDU to the signal: it lands while the controller reads them
(in a datapath's green thread, where the old code's KeyboardInterrupt was raised and swallowed)."""
EOF_TIMEOUT = 5.0
"""Seconds after the exit for the emulator to read what the controller wrote before it."""
OFPFC_DELETE, OFPFC_DELETE_STRICT = 3, 4
OFPGC_DELETE = 2
_FLOW_MOD_COMMAND = 25  # header 8, cookie 8, cookie_mask 8, table_id 1
_MOD_COMMAND = slice(8, 10)  # GROUP_MOD and METER_MOD: the command opens the body
_SLOW = ETH_TYPE_SLOW.to_bytes(2, "big")
_DATAPATH_ERROR = re.compile(r"error.*datapath|datapath.*error|uncaught exception", re.I)

Member = tuple[int, int]  # (dpid, port)


def delete_in(msg: bytes) -> str | None:
    """What a FLOW_MOD, GROUP_MOD or METER_MOD deletes, or None when it deletes nothing."""
    msg_type = msg[1]
    if msg_type == emu.OFPT.FLOW_MOD and msg[_FLOW_MOD_COMMAND] in (OFPFC_DELETE, OFPFC_DELETE_STRICT):
        return "FLOW_MOD delete"
    if msg_type == emu.OFPT.GROUP_MOD and int.from_bytes(msg[_MOD_COMMAND], "big") == OFPGC_DELETE:
        return "GROUP_MOD delete"
    if msg_type == emu.OFPT.METER_MOD and int.from_bytes(msg[_MOD_COMMAND], "big") == emu.OFPMC_DELETE:
        return "METER_MOD delete"
    return None


@dataclass
class AfterSignal:
    """What the switches received from the signal on."""

    signalled: float = float("inf")
    pdus: dict[Member, list[bytes]] = field(default_factory=lambda: collections.defaultdict(list))
    deletes: collections.Counter[str] = field(default_factory=collections.Counter)

    def watch(self, switch: emu.EmuSwitch) -> None:
        """Record the switch's LACPDU packet-outs and deletes after the signal (the partners still get theirs)."""
        to_partners = switch.on_packet_out

        def packet_out(port: int, frame: bytes, now: float) -> None:
            if to_partners is not None:
                to_partners(port, frame, now)
            if now >= self.signalled and frame[12:14] == _SLOW:
                self.pdus[(switch.dpid, port)].append(frame)

        def message(msg: bytes, now: float) -> None:
            if now >= self.signalled:
                deleted = delete_in(msg)
                if deleted is not None:
                    self.deletes[deleted] += 1

        switch.on_packet_out = packet_out
        switch.on_message = message


@dataclass
class Outcome:
    """How the stop went."""

    exit_after: float | None  # seconds from the signal to the exit; None: still running after REAP_TIMEOUT
    returncode: int | None
    views: dict[Member, PortInfo]  # the controller's actor information as each partner knew it at the signal
    seen: AfterSignal


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def _burst(partners: list[lacp_scale.Partner]) -> None:
    """Every partner sends its LACPDU now, one write per switch: the controller is busy reading them."""
    now = time.monotonic()
    batches: dict[emu.EmuSwitch, list[bytes]] = collections.defaultdict(list)
    for partner in partners:
        batches[partner.switch].append(partner.pdu(now))
    for switch, msgs in batches.items():
        switch.send(b"".join(msgs))


async def _stop_under_load(controller: emu.Controller, signum: signal.Signals) -> Outcome:
    bonds = lacp_scale.bonds_of(MEMBERS)
    dpids = sorted({dpid for dpid, _ in bonds})
    switches = [await emu.connect(dpid, range(1, lacp_scale.MEMBERS_PER_SWITCH + 1), controller.of_port)
                for dpid in dpids]
    await emu.wait_described(switches, 30.0)
    window = lacp_scale.Window()  # never opened: no probes, no statistics
    seen = AfterSignal()
    partners: list[lacp_scale.Partner] = []
    for switch in switches:
        partners += lacp_scale.attach_partners(switch, [ports for d, ports in bonds if d == switch.dpid], window)
        seen.watch(switch)
    periodic = asyncio.create_task(lacp_scale.send_periodic(partners, window))
    proc = controller.proc

    def reap() -> float:
        proc.wait()
        return time.monotonic()

    try:
        await _until(lambda: all(p.up for p in partners), CONVERGE_TIMEOUT)
        distributing = sum(p.up for p in partners)
        assert distributing >= MIN_DISTRIBUTING, f"{distributing} of {MEMBERS} members distributing"
        await emu.wait_quiet(switches, QUIET, 20.0)
        views = {(p.switch.dpid, p.port): p.partner for p in partners if p.up}
        _burst(partners)
        await asyncio.sleep(BURST_LEAD)
        seen.signalled = time.monotonic()
        proc.send_signal(signum)
        try:
            exited = await asyncio.wait_for(asyncio.to_thread(reap), REAP_TIMEOUT)
        except TimeoutError:
            exit_after = None
        else:
            exit_after = exited - seen.signalled
            await _until(lambda: all(s.transport.is_closing() for s in switches), EOF_TIMEOUT)
        return Outcome(exit_after, proc.returncode, views, seen)
    finally:
        periodic.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for switch in switches:
            switch.transport.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_planned_stop_with_2048_fast_members(tmp_path: Path, signum: signal.Signals):
    controller = lacp_scale.start_controller("ryu_lag", MEMBERS, tmp_path)
    try:
        outcome = asyncio.run(_stop_under_load(controller, signum))
    finally:
        if controller.proc.poll() is None:
            controller.proc.kill()
            controller.proc.wait()
    log = controller.log.read_text(errors="replace")
    tail = log[-4000:]

    assert outcome.exit_after is not None, f"still running {REAP_TIMEOUT:g} s after {signum.name}:\n{tail}"
    assert outcome.exit_after < EXIT_LIMIT, f"exited {outcome.exit_after:.2f} s after {signum.name}:\n{tail}"
    assert outcome.returncode == 0, tail
    assert "Traceback" not in log, tail
    assert not [line for line in log.splitlines() if _DATAPATH_ERROR.search(line)], tail

    pdus = outcome.seen.pdus
    missing = sorted(set(outcome.views) - set(pdus))
    assert not missing, f"{len(missing)} of {len(outcome.views)} distributing members got no LACPDU after " \
                        f"{signum.name}, e.g. {missing[:5]}"
    changed = {}
    for member, view in outcome.views.items():
        _, last = decode_frame(pdus[member][-1])
        if last.actor != view or lacp_scale.UP not in last.actor.state:
            changed[member] = (view, last.actor)
    assert not changed, f"{len(changed)} members' last LACPDU changed the actor: {list(changed.items())[:3]}"
    assert not outcome.seen.deletes, dict(outcome.seen.deletes)
