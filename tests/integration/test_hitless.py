"""Hitless operations (issue 9) on the classic topology with a real Open vSwitch LACP partner.

h1 sits behind an Open vSwitch LACP bond (fast rate) on s1's ports 1 and 2; h2-h4 ping
h1 every 10 ms while the controller is restarted (SIGTERM or SIGKILL, started again at
once on the same ports and state file), while s1's controller connection is cut for
0.5 s (a ``TcpRelay`` between s1 and the controller) and while the live bond is changed
over REST. Each of these must cost no traffic: largest gap between replies at most
100 ms, at most 5 lost replies per flow, the partner negotiated at every 50 ms poll of
``lacp/show`` with both members current, and s1's flows, groups and meters the same
after the reconnect as before. s1's controller record has ``max_backoff=1000``, so the
switch redials within a second.

Then two cases of standby and one-way failure: ``min_links=2`` with one member's link
down passes nothing in either direction and the partner sees the other member out of
sync; with our direction of member 2's wire cut (the partner's still passing) member 2
leaves and stays out for the whole observation window, member 1 carrying the traffic.

One topology serves the module; every case starts from the bond negotiated, both
members distributing and the MACs learned, and puts back what it changed.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

from clients.client import LagClient
from tests.integration.conftest import Classic, build_classic
from tests.integration.netlab import Host, Lab, LacpWatch, lacp_show, parse_lacp_show, ping_gaps, sh, wait_for

GAP_LIMIT_MS = 100.0
WINDOW_GAP_LIMIT_MS = 250.0  # the one-way cut's steady window: a flap would cost seconds
LOST_LIMIT = 5  # replies per flow
MAX_BACKOFF_MS = 1000
LINK_DOWN_SECONDS = 0.5  # how long s1's controller connection stays cut
SETTLE_SECONDS = 2.0  # pinging on after the reconnect, for a late reset to show
ONE_WAY_WINDOW = 15.0  # seconds member 2 must stay out once it has left
FULLY_UP = {"activity", "timeout", "aggregation", "synchronized", "collecting", "distributing"}
STATS = re.compile(r"\b(duration|idle_age|hard_age|n_packets|n_bytes)=[^,\s]+,?\s*")
MAC = re.compile(r"dl_(?:src|dst)=([0-9a-f:]{17})")
BASE = {"rate": "fast", "port_priority": 32768, "min_links": 1}  # bond0's settings between cases


@pytest.fixture(scope="module")
def classic(tmp_path_factory: pytest.TempPathFactory):
    lab = Lab()
    try:
        yield build_classic(lab, tmp_path_factory.mktemp("hitless"), max_backoff=MAX_BACKOFF_MS, relay=True)
    finally:
        lab.close()


# ---- what the tests look at ---------------------------------------------------------
def partner_fully_up(show: dict) -> bool:
    """``lacp/show`` parsed: negotiated, both members current, attached, enabled, and our actor fully up."""
    members = show["members"].values()
    return (
        "negotiated" in show["status"]
        and len(members) == 2
        and all(
            m["status"].startswith("current attached")
            and m.get("may_enable") == "true"
            and FULLY_UP <= set(m.get("partner_state", "").split())
            for m in members
        )
    )


def bond_url(topo: Classic) -> str:
    return f"http://127.0.0.1:{topo.api_port}/lag/0000000000000001/bond0"


def members(topo: Classic) -> dict[int, dict]:
    """Our REST view of bond0's members by port."""
    return {m["port"]: m for m in requests.get(bond_url(topo), timeout=5).json()["members"]}


def distributing(topo: Classic, ports: set[int]) -> bool:
    """Exactly ``ports`` carry traffic in our view (REST) and are the watch ports of s1's bond group."""
    try:
        enabled = {p for p, m in members(topo).items() if m["enabled"] and m["mux"] == "distributing"}
    except requests.RequestException:
        return False
    return enabled == ports and group_ports(topo.s1) == ports


def group_ports(switch: str) -> set[int]:
    text = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", switch, check=False)
    return {int(p) for p in re.findall(r"watch_port:(\d+)", text)}


def without_stats(line: str) -> str:
    return STATS.sub("", line).strip()


def switch_state(switch: str) -> dict[str, list[str]]:
    """s1's flows, groups and meters as sorted lines, without counters or ages."""
    def dump(*args: str) -> list[str]:
        text = sh("ovs-ofctl", "-O", "OpenFlow13", *args, switch)
        return sorted(filter(None, map(without_stats, text.splitlines()[1:])))

    return {"flows": dump("--no-stats", "dump-flows"), "groups": dump("dump-groups"), "meters": dump("dump-meters")}


def flow_durations(switch: str) -> dict[str, float]:
    """Each of s1's flows (as ``switch_state`` shows it): how long it has been installed, in seconds."""
    text = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", switch)
    return {without_stats(line): float(m.group(1))
            for line in text.splitlines()[1:] if (m := re.search(r"\bduration=([\d.]+)s", line))}


def readded(before: dict[str, float], after: dict[str, float], elapsed: float) -> list[str]:
    """Flows present before and after whose duration restarted in between: deleted and added again, or replaced."""
    return [f"{line} (installed {after[line]:.1f} s, {before[line] + elapsed:.1f} s expected)"
            for line in before if line in after and after[line] < before[line] + elapsed - 1.0]


def state_diff(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    """What changed between two ``switch_state``s, as ``-``/``+`` lines.

    A flow added for a MAC that no entry named before is new learning (the partner's own
    interfaces send a frame now and then), not a change: it is left out.
    """
    known = {mac for lines in before.values() for line in lines for mac in MAC.findall(line)}
    out = []
    for kind in before:
        out += [f"{kind} - {line}" for line in before[kind] if line not in after[kind]]
        out += [f"{kind} + {line}" for line in after[kind]
                if line not in before[kind] and not (MAC.findall(line) and known.isdisjoint(MAC.findall(line)))]
    return out


def ready(topo: Classic) -> None:
    """Both members fully up on both sides, and every host's MAC learned."""
    wait_for(lambda: partner_fully_up(parse_lacp_show(lacp_show(topo.bond))), 20, "the partner fully up")
    wait_for(lambda: distributing(topo, {1, 2}), 10, "both members distributing")
    for host in topo.others:
        host.ping(topo.h1.ip, count=2, interval=0.05)


class Pings:
    """``ping -D -i 0.01`` from each host to ``target`` until ``stop()`` (or the lab's close)."""

    def __init__(self, lab: Lab, hosts: list[Host], target: str) -> None:
        self.procs = [h.popen("ping", "-D", "-n", "-i", "0.01", "-W", "1", target) for h in hosts]
        lab.procs.extend(self.procs)

    def stop(self) -> list[tuple[int, int, float]]:
        """Per flow (sent, received, largest gap between replies in ms)."""
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        return [ping_gaps(proc.communicate(timeout=15)[0]) for proc in self.procs]


@dataclass
class Outcome:
    """What one event cost."""

    flows: list[tuple[int, int, float]]  # per host: sent, received, largest gap (ms)
    lapses: list[str]  # partner samples not negotiated or with a member not current
    samples: int
    partner_end: dict
    diff: list[str]  # s1's flows, groups and meters: before vs after
    readded: list[str]  # flows the same before and after but installed again in between
    event_s: float

    def figures(self) -> str:
        flows = ", ".join(f"gap {gap:.0f} ms lost {sent - received}/{sent}" for sent, received, gap in self.flows)
        return (f"{flows}; partner lapses {len(self.lapses)}/{self.samples}; state diff {len(self.diff)} lines, "
                f"{len(self.readded)} flows re-added; "
                f"the event took {self.event_s:.2f} s")


def through(topo: Classic, event: Callable[[], None]) -> Outcome:
    """Ping through ``event`` (after which s1 must connect again through the relay) and its aftermath."""
    assert topo.relay is not None
    ready(topo)
    before = switch_state(topo.s1)
    durations, dumped = flow_durations(topo.s1), time.monotonic()
    connections = topo.relay.accepted
    pings = Pings(topo.lab, topo.others, topo.h1.ip)
    watch = LacpWatch(topo.bond, 0.05)
    time.sleep(1.0)
    started = time.monotonic()
    event()
    event_s = time.monotonic() - started
    wait_for(lambda: topo.relay.accepted > connections and topo.lab.connected(topo.s1), 10, "s1 connected again")
    wait_for(lambda: distributing(topo, {1, 2}), 15, "both members distributing again")
    time.sleep(SETTLE_SECONDS)
    flows = pings.stop()
    watch.stop()
    after = switch_state(topo.s1)
    again = readded(durations, flow_durations(topo.s1), time.monotonic() - dumped)
    end = parse_lacp_show(lacp_show(topo.bond))
    return Outcome(flows, watch.lapses(), len(watch.samples), end, state_diff(before, after), again, event_s)


def assert_hitless(outcome: Outcome) -> None:
    figures = outcome.figures()
    print(figures, *outcome.diff, *outcome.readded, sep="\n  ")
    for sent, received, gap in outcome.flows:
        assert gap <= GAP_LIMIT_MS, f"largest gap {gap:.0f} ms (limit {GAP_LIMIT_MS:.0f}): {figures}"
        assert sent - received <= LOST_LIMIT, f"{sent - received} replies lost (limit {LOST_LIMIT}): {figures}"
    assert not outcome.lapses, f"the partner left negotiated or lost a member: {outcome.lapses[:5]}: {figures}"
    assert partner_fully_up(outcome.partner_end), outcome.partner_end
    assert not outcome.diff, "s1's flows, groups or meters changed:\n" + "\n".join(outcome.diff)
    assert not outcome.readded, "flows of ours installed again though unchanged:\n" + "\n".join(outcome.readded)


# ---- restarts and reconnects --------------------------------------------------------
def restart(topo: Classic, sig: int) -> Callable[[], None]:
    def event() -> None:
        topo.controller, _ = topo.lab.restart(topo.controller, sig, topo.of_port, topo.log)

    return event


def drop_connection(topo: Classic) -> Callable[[], None]:
    def event() -> None:
        assert topo.relay is not None
        topo.relay.cut()
        time.sleep(LINK_DOWN_SECONDS)
        topo.relay.restore()

    return event


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize(
    "kind", ["sigterm", "sigkill", "connection-drop"],
)
def test_restart_and_reconnect_cost_no_traffic(classic: Classic, kind: str, attempt: int):
    events = {
        "sigterm": restart(classic, signal.SIGTERM),
        "sigkill": restart(classic, signal.SIGKILL),
        "connection-drop": drop_connection(classic),
    }
    assert_hitless(through(classic, events[kind]))


# ---- changes to the live bond -------------------------------------------------------
def partner_sees(topo: Classic, port: int, field_: str, value: str) -> bool:
    """The partner's ``lacp/show`` shows ``field_`` of our member ``port`` as ``value`` (or holding it, for states)."""
    for member in parse_lacp_show(lacp_show(topo.bond))["members"].values():
        if member.get("partner_port_id") == str(port):
            shown = member.get(field_, "")
            return value in shown.split() if field_ == "partner_state" else shown == value
    return False


def test_put_sequence_on_the_live_bond(classic: Classic):
    ready(classic)
    client = LagClient(f"http://127.0.0.1:{classic.api_port}")
    changed = {**BASE, "port_priority": 100}
    slow = {**changed, "rate": "slow"}
    steps: list[tuple[str, list[int], dict, Callable[[], bool]]] = [
        ("port_priority 100", [1, 2], changed,
         lambda: partner_sees(classic, 1, "partner_port_priority", "100")),
        ("rate slow", [1, 2], slow,
         lambda: not partner_sees(classic, 1, "partner_state", "timeout")),
        ("remove member 2", [1], slow,
         lambda: set(members(classic)) == {1} and group_ports(classic.s1) == {1}),
        ("add member 2 back", [1, 2], slow,
         lambda: distributing(classic, {1, 2})),
    ]
    not_distributing: list[str] = []
    pings = Pings(classic.lab, classic.others, classic.h1.ip)
    try:
        time.sleep(1.0)
        for title, ports, settings, applied in steps:
            client.put_bond(1, "bond0", ports, **settings)
            member = members(classic)[1]
            if not (member["enabled"] and member["mux"] == "distributing"):
                not_distributing.append(f"after {title}: member 1 {member['mux']}, {member['reason']}")
            wait_for(applied, 15, f"{title} applied")
            time.sleep(1.0)
    finally:
        flows = pings.stop()
        client.put_bond(1, "bond0", [1, 2], **BASE)
    figures = ", ".join(f"gap {gap:.0f} ms lost {sent - received}/{sent}" for sent, received, gap in flows)
    print(figures, not_distributing)
    assert not not_distributing, not_distributing
    for sent, received, gap in flows:
        assert gap <= GAP_LIMIT_MS and sent - received <= LOST_LIMIT, figures


def icmp_echoes_in(host: Host) -> int:
    """Echo requests ``host`` has received so far (its namespace's /proc/net/snmp)."""
    lines = [line.split() for line in host.run("cat", "/proc/net/snmp").splitlines() if line.startswith("Icmp:")]
    return int(lines[1][lines[0].index("InEchos")])


def mac_of(host: Host) -> str:
    return host.run("cat", "/sys/class/net/eth0/address").strip()


def requests_delivered(sender: Host, receiver: Host, count: int = 50) -> int:
    """How many of ``count`` 10 ms echo requests from ``sender`` reach ``receiver``."""
    before = icmp_echoes_in(receiver)
    sender.run("ping", "-c", str(count), "-i", "0.01", "-W", "0.2", receiver.ip, check=False)
    return icmp_echoes_in(receiver) - before


def test_min_links_holds_the_ready_member_in_standby(classic: Classic):
    ready(classic)
    client = LagClient(f"http://127.0.0.1:{classic.api_port}")
    h1, h2 = classic.h1, classic.others[0]
    # Static neighbours: each request is an IP packet on the wire, never a broadcast ARP.
    h1.run("ip", "neigh", "replace", h2.ip, "lladdr", mac_of(h2), "dev", "eth0", "nud", "permanent")
    h2.run("ip", "neigh", "replace", h1.ip, "lladdr", mac_of(h1), "dev", "eth0", "nud", "permanent")
    down = classic.members[1]
    try:
        client.put_bond(1, "bond0", [1, 2], **{**BASE, "min_links": 2})
        wait_for(lambda: distributing(classic, {1, 2}), 10, "both members distributing with min_links 2")
        control = requests_delivered(h2, h1), requests_delivered(h1, h2)
        assert min(control) >= 45, f"with both members up only {control} of 50 requests delivered"
        classic.lab.carrier(down, False)
        wait_for(lambda: members(classic)[2]["link"] == "down", 5, "member 2's link down")
        time.sleep(3.5)  # past the partner's fast timeout, had it gone on hearing Synchronization
        ours = members(classic)[1]
        partner = parse_lacp_show(lacp_show(classic.bond))["members"][classic.members[0].partner_if]
        to_h1, from_h1 = requests_delivered(h2, h1), requests_delivered(h1, h2)
        print(f"h2->h1 {to_h1}/50 delivered, h1->h2 {from_h1}/50 delivered; ours {ours['selection']} "
              f"{ours['mux']}; partner member 1: {partner}")
        assert to_h1 == 0 and from_h1 == 0, f"below min_links: h2->h1 {to_h1}/50, h1->h2 {from_h1}/50 delivered"
        assert ours["selection"] == "standby" and not ours["enabled"], ours
        assert not ours["actor"]["state"]["synchronization"], ours["actor"]
        assert "synchronized" not in partner.get("partner_state", "").split(), partner
        assert partner.get("may_enable") != "true", partner
    finally:
        classic.lab.carrier(down, True)
        client.put_bond(1, "bond0", [1, 2], **BASE)
        for host, other in ((h1, h2), (h2, h1)):
            host.run("ip", "neigh", "del", other.ip, "dev", "eth0", check=False)
    ready(classic)


def test_one_way_cut_keeps_the_member_out(classic: Classic):
    ready(classic)
    cut = classic.members[1]
    try:
        pings = Pings(classic.lab, classic.others, classic.h1.ip)
        time.sleep(0.5)
        # Member 2's wire drops what s1 sends (wire port 1) and passes what the partner sends.
        sh("ovs-ofctl", "-O", "OpenFlow13", "del-flows", cut.wire)
        sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", cut.wire, "in_port=2,actions=output:1")
        cut_at = time.monotonic()
        wait_for(lambda: not members(classic)[2]["enabled"], 10, "member 2 out after the cut")
        left_s = time.monotonic() - cut_at
        pings.stop()  # the cut itself costs up to the partner's 3 s timeout; the window must cost nothing
        pings = Pings(classic.lab, classic.others, classic.h1.ip)
        reentries: list[str] = []
        samples = 0
        window_end = time.monotonic() + ONE_WAY_WINDOW
        while time.monotonic() < window_end:
            member = members(classic)[2]
            samples += 1
            if member["enabled"] or member["mux"] in ("collecting", "distributing"):
                reentries.append(f"{ONE_WAY_WINDOW - (window_end - time.monotonic()):.1f} s: {member['mux']}")
            time.sleep(0.2)
        flows = pings.stop()
        one_enabled = members(classic)[1]["enabled"]
    finally:
        classic.lab.wire_forward(cut.wire, True)
    figures = ", ".join(f"gap {gap:.0f} ms lost {sent - received}/{sent}" for sent, received, gap in flows)
    print(f"member 2 left {left_s:.1f} s after the cut; re-entries {reentries} of {samples} samples; window: {figures}")
    assert not reentries, f"member 2 came back while our direction was cut: {reentries}"
    assert one_enabled
    # The window checks that member 2 stays out: a re-entry costs seconds (WAITING, then the
    # partner dropping it again), so its limit leaves room for this VM's scheduling hiccups
    # (one run saw 119 ms with nothing lost).
    for sent, received, gap in flows:
        assert gap <= WINDOW_GAP_LIMIT_MS and sent - received <= LOST_LIMIT, figures
    ready(classic)
