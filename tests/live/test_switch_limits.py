"""Switch-side limits against a real ryu-lag and emulated OpenFlow switches (``benchmarks.ofswitch_emu``
with ``benchmarks.lacp_scale``'s fast-rate partners):

- a switch whose meters count kbps only gets no packets-a-second meter (it would refuse it)
  and its bond negotiates over unmetered punts, with one warning;
- a switch that stops reading (its TCP window full) does not stall LACP on the others: the
  healthy switch's fast members keep distributing, and the stuck one is disconnected.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from benchmarks import lacp_scale
from benchmarks import ofswitch_emu as emu

FAST_BOND = [1, 2, 3, 4]
STUCK_PORTS = 1500
TOGGLES = 500
STUCK_DISCONNECTED = "switch 0000000000000002 disconnected: "
SHORT_TIMEOUT = 3.0


def _fast_bond(dpid: int) -> tuple[int, dict]:
    return dpid, {"name": "bond0", "ports": FAST_BOND, "rate": "fast", "mode": "active"}


async def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def test_kbps_only_meters_are_not_used_and_the_bond_negotiates(tmp_path: Path):
    async def scenario(controller: emu.Controller) -> None:
        window = lacp_scale.Window()
        switch = await emu.connect(1, range(1, 7), controller.of_port, emu.Meters.KBPS_ONLY)
        await emu.wait_described([switch], 30.0)
        partners = lacp_scale.attach_partners(switch, [FAST_BOND], window)
        periodic = asyncio.create_task(lacp_scale.send_periodic(partners, window))
        try:
            assert await _until(lambda: all(p.up for p in partners), 20.0), "the bond did not negotiate"
            await asyncio.sleep(1.0)
        finally:
            periodic.cancel()
            switch.transport.close()
        assert switch.errors_sent["METER_MOD_FAILED"] == 0 and switch.counts["METER_MOD"] == 0
        assert switch.counts["FLOW_MOD"] > 0

    with emu.Controller.ryu_lag(tmp_path, [_fast_bond(1)]) as controller:
        asyncio.run(scenario(controller))
        log = controller.log.read_text()
    assert log.count("its meters do not count packets a second") == 1, log


def test_a_switch_that_stops_reading_does_not_stall_lacp_on_the_others(tmp_path: Path):
    async def scenario(controller: emu.Controller) -> dict:
        window = lacp_scale.Window()
        healthy = await emu.connect(1, range(1, 7), controller.of_port)
        stuck = await emu.connect(2, range(1, STUCK_PORTS + 1), controller.of_port, receive_buffer=4096)
        await emu.wait_described([healthy, stuck], 30.0)
        partners = lacp_scale.attach_partners(healthy, [FAST_BOND], window)
        periodic = asyncio.create_task(lacp_scale.send_periodic(partners, window))
        try:
            assert await _until(lambda: all(p.up for p in partners), 20.0), "the healthy bond did not negotiate"
            await emu.wait_quiet([stuck], 0.5, 20.0)
            stuck.stop_reading()
            window.start = time.monotonic()
            window.end = window.start + 60.0
            # a port of the stuck switch comes and goes: each time the flood group of its 1,500 plain ports
            # changes (~48 kB), far more than the kernel buffers hold (tcp_wmem's 16 MB at most)
            for _ in range(TOGGLES):
                stuck.send(emu.port_status(2, STUCK_PORTS, emu.OFPPR_DELETE)
                           + emu.port_status(2, STUCK_PORTS, emu.OFPPR_ADD))
                await asyncio.sleep(0.005)
            disconnected = await _until(lambda: STUCK_DISCONNECTED in controller.log.read_text(), 30.0)
            await asyncio.sleep(2.0)
            now = time.monotonic()
            gaps = [now - p.last_rx for p in partners if p.last_rx is not None]
            return {"disconnected": disconnected, "flapped": set(window.flapped),
                    "max gap": max([window.max_gap, *gaps]), "up": sum(p.up for p in partners)}
        finally:
            periodic.cancel()
            healthy.transport.close()
            stuck.transport.close()

    with emu.Controller.ryu_lag(tmp_path, [_fast_bond(1)]) as controller:
        seen = asyncio.run(scenario(controller))
        log = controller.log.read_text()
    assert seen["up"] == len(FAST_BOND) and not seen["flapped"], seen
    assert seen["max gap"] < SHORT_TIMEOUT - 0.5, seen
    assert seen["disconnected"], log[-3000:]
