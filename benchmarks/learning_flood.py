"""Learning flood: random source MACs on one plain port while fast-rate bonds on the same switch must stay up.

One emulated switch (``ofswitch_emu``) carries two bonds of four fast-rate members each,
with emulated active partners (``lacp_scale``'s), and a plain port that receives a flood of
frames from random source MACs (about 18,000 a second: the 1.08 million in 60 s of issue
10). The switch punts each frame from an unknown source to the controller as a packet-in,
as its ETH_SRC miss does. Two cases:

- ``meters``: the switch has packets-a-second meters. ryu_lag puts the port's learn punt
  behind its learn meter (``--lag-learn-meter-pps``); the emulator applies that meter as a
  token bucket of the rate and burst ryu_lag set (read from the METER_MODs it received), so
  only that many packet-ins a second reach the controller, as on a real switch.
- ``no meters``: the switch has none; every frame of the flood reaches the controller, which
  must keep LACP first (learning waits in a bounded queue) and its MAC table bounded
  (``--lag-max-macs``).

Reported per case: members up before and after the flood, members whose partner saw them
leave sync/collecting/distributing or saw a gap of 3 s (the short timeout) without a
controller LACPDU, the controller's RSS before and after, MACs learned and sources not
learned (``/metrics``), packet-ins sent and let through the meter. Goals: every member kept,
RSS growth at most ``RSS_GROWTH_LIMIT_MB``.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import re
import struct
import tempfile
import time
import urllib.request

from benchmarks import common
from benchmarks import lacp_scale
from benchmarks import ofswitch_emu as emu
from ryu_lag.switching import learn_meter

DPID = 1
BONDS = [[1, 2, 3, 4], [5, 6, 7, 8]]
FLOOD_PORT = 9
FLOOD_PPS = 18_000
SLICE = 0.01  # the flood is sent in batches every 10 ms
RSS_GROWTH_LIMIT_MB = 30.0
_ETHERTYPE_IPV4 = b"\x08\x00"
_BAND = struct.Struct("!HHII")  # type, len, rate, burst_size of a meter band
_METRIC = re.compile(r'^(ryu_lag_[a-z_]+)\{([^}]*)\} ([0-9.e+]+)$', re.M)


class MeterModel:
    """A switch's packets-a-second meter as a token bucket, at the rate and burst the controller set."""

    def __init__(self, switch: emu.EmuSwitch, meter_id: int) -> None:
        self.switch = switch
        self.meter_id = meter_id
        self.tokens = 0.0
        self.last = time.monotonic()

    def passes(self, now: float) -> bool:
        entry = self.switch.meter_table.get(self.meter_id)
        if entry is None:
            return True  # no meter: the punt is not limited
        _, _, rate, burst = _BAND.unpack_from(entry[1])
        self.tokens = min(float(burst), self.tokens + (now - self.last) * rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def scrape(api_port: int) -> dict[str, float]:
    """The controller's /metrics as {"name{labels}": value} for ryu_lag series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {f"{name}{{{labels}}}": float(value) for name, labels, value in _METRIC.findall(text)}


def _metric(metrics: dict[str, float], name: str, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for key, v in metrics.items() if key.startswith(name + "{") and all(w in key for w in want))


async def _flood(switch: emu.EmuSwitch, meter: MeterModel, seconds: float, rng: random.Random) -> tuple[int, int]:
    """Send the flood for ``seconds``; returns (frames, packet-ins let through the meter)."""
    per_slice = round(FLOOD_PPS * SLICE)
    frames = punted = 0
    start = time.monotonic()
    tick = 0
    while True:
        due = start + tick * SLICE
        now = time.monotonic()
        if now - start >= seconds:
            return frames, punted
        if now < due:
            await asyncio.sleep(due - now)
            now = time.monotonic()
        batch = []
        for _ in range(per_slice):
            frames += 1
            if meter.passes(now):
                src = bytes([0x02]) + rng.randbytes(5)
                batch.append(emu.packet_in(FLOOD_PORT, b"\xff" * 6 + src + _ETHERTYPE_IPV4 + bytes(46)))
        punted += len(batch)
        if batch:
            switch.send(b"".join(batch))
        tick += 1


async def _case(controller: emu.Controller, meters: emu.Meters, seconds: float) -> dict:
    window = lacp_scale.Window()
    switch = await emu.connect(DPID, range(1, FLOOD_PORT + 1), controller.of_port, meters)
    await emu.wait_described([switch], 30.0)
    partners = lacp_scale.attach_partners(switch, BONDS, window)
    periodic = asyncio.create_task(lacp_scale.send_periodic(partners, window))
    try:
        deadline = time.monotonic() + 30.0
        while not all(p.up for p in partners) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        up_before = sum(p.up for p in partners)
        rss_before = rss_mb(controller.proc.pid)
        cpu0 = controller.cpu()
        window.start = time.monotonic()
        window.end = window.start + seconds + 5.0
        frames, punted = await _flood(switch, MeterModel(switch, learn_meter(FLOOD_PORT)), seconds,
                                      random.Random(10))
        flood_end = time.monotonic()
        await asyncio.sleep(5.0)  # the controller works off what it received; members must stay up meanwhile
        now = time.monotonic()
        window.max_gap = max([window.max_gap, *(now - p.last_rx for p in partners if p.last_rx is not None)])
        up_after = sum(p.up for p in partners)
        rss_after = rss_mb(controller.proc.pid)
        cpu = controller.cpu() - cpu0
        metrics = await asyncio.to_thread(scrape, controller.api_port)
    finally:
        periodic.cancel()
        switch.transport.close()
    members = sum(len(b) for b in BONDS)
    kept = up_before == up_after == members and not window.flapped and window.max_gap < lacp_scale.MAX_GAP
    return {
        "switch meters": meters.value,
        "flood s": flood_end - window.start,
        "frames": frames,
        "frames/s": frames / (flood_end - window.start),
        "packet-ins sent": punted,
        "members up before/after": f"{up_before}/{up_after} of {members}",
        "flapped": len(window.flapped),
        "max LACPDU gap s": window.max_gap,
        "RSS before MB": rss_before,
        "RSS after MB": rss_after,
        "RSS growth MB": rss_after - rss_before,
        "MACs learned": _metric(metrics, "ryu_lag_learned_macs"),
        "not learned: table full": _metric(metrics, "ryu_lag_learn_dropped_total", reason="table_full"),
        "not learned: queue full": _metric(metrics, "ryu_lag_learn_dropped_total", reason="queue_full"),
        "controller CPU %": 100 * cpu / (now - window.start),
        "members kept": "yes" if kept else "NO",
    }


def run(quick: bool = False) -> common.Result:
    seconds = 15.0 if quick else 60.0
    result = common.Result("learning_flood")
    started = time.monotonic()
    bonds = [(DPID, {"name": f"bond{i}", "ports": ports, "rate": "fast", "mode": "active"})
             for i, ports in enumerate(BONDS)]
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        workdir = pathlib.Path(tmp)
        for meters in (emu.Meters.PKTPS, emu.Meters.NONE):
            with emu.Controller.ryu_lag(workdir, bonds) as controller:
                result.rows.append(asyncio.run(_case(controller, meters, seconds)))
    kept = sum(row["members kept"] == "yes" for row in result.rows)
    result.goals.append(common.goal_at_least("cases with every fast member kept", float(kept), len(result.rows),
                                             "cases"))
    growth = max(row["RSS growth MB"] for row in result.rows)
    result.goals.append(common.goal_at_most("RSS growth during the flood", growth, RSS_GROWTH_LIMIT_MB, "MB"))
    result.notes += [
        f"{FLOOD_PPS} frames/s from random source MACs on plain port {FLOOD_PORT} for {seconds:.0f} s; bonds "
        f"{BONDS} fast rate, emulated active partners; ryu-lag defaults (learn meter 100/s per logical port, "
        "at most 8192 MACs per switch); with meters the emulator applies the learn meter ryu_lag installed",
        f"run time {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs shared by the controller and the emulator",
    ]
    return result


def main() -> None:
    common.bench_main(run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
