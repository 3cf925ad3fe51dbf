"""ryu_lag on a real Open vSwitch against a real LACP partner (an Open vSwitch bond).

One classic topology is shared by the tests of the first class, which run in
order: negotiation, forwarding, carrier loss, silent loss, recovery.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import requests

from ryu_lag.switching import OUR_IDS, lacp_meter
from tests.integration.conftest import Classic, build_classic, store_bonds
from tests.integration.netlab import Host, Lab, lacp_show, parse_lacp_show, ping_gaps, sh, wait_for

FULLY_UP = {"activity", "timeout", "aggregation", "synchronized", "collecting", "distributing"}


def fully_up(member: dict) -> bool:
    """The partner has this member current, attached and enabled, and sees our actor fully up."""
    return (
        member["status"].startswith("current attached")
        and member.get("may_enable") == "true"
        and FULLY_UP <= set(member.get("partner_state", "").split())
    )


def negotiated(bond: str) -> dict | None:
    """``lacp/show`` of the partner bond once negotiated with every member fully up."""
    show = parse_lacp_show(lacp_show(bond))
    members = show["members"]
    if "negotiated" not in show["status"] or not members or not all(map(fully_up, members.values())):
        return None
    return show


def wait_negotiated(bond: str, timeout: float = 15.0) -> dict:
    return wait_for(lambda: negotiated(bond), timeout, f"{bond} negotiated")


def ping_during(hosts: list[Host], target: str, seconds: float, action=None, delay: float = 1.0) -> list[tuple[int, int, float]]:
    """10 ms pings from ``hosts`` for ``seconds``; ``action`` runs ``delay`` seconds in."""
    count = int(seconds / 0.01)
    procs = [h.popen("ping", "-D", "-i", "0.01", "-c", str(count), "-W", "1", target) for h in hosts]
    if action is not None:
        time.sleep(delay)
        action()
    return [ping_gaps(p.communicate(timeout=seconds + 30)[0]) for p in procs]


def group_ports(switch: str) -> set[int]:
    """The watch ports of the switch's bond group(s)."""
    text = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", switch)
    return {int(p) for p in re.findall(r"watch_port:(\d+)", text)}


@pytest.fixture(scope="class")
def classic(tmp_path_factory):
    lab = Lab()
    try:
        yield build_classic(lab, tmp_path_factory.mktemp("classic"))
    finally:
        lab.close()


class TestClassic:
    def test_negotiates_with_open_vswitch(self, classic: Classic):
        show = wait_negotiated(classic.bond)
        assert len(show["members"]) == 2
        wait_for(lambda: group_ports(classic.s1) == {1, 2}, 5, "both members in the group")
        # Our actor system is s1's LOCAL port MAC, our key the bond's, port numbers our own.
        local_mac = sh("ovs-vsctl", "get", "interface", classic.s1, "mac_in_use").strip().strip('"')
        for member in show["members"].values():
            assert member["partner_sys_id"] == local_mac
            assert member["partner_key"] == "1"
        assert {m["partner_port_id"] for m in show["members"].values()} == {"1", "2"}

    def test_pings_no_loss_no_duplicates(self, classic: Classic):
        wait_negotiated(classic.bond)
        for host in classic.others:
            host.ping("10.0.0.1", count=2)  # learning
        for host in classic.others:
            out = host.ping("10.0.0.1", count=20, interval=0.05)
            assert " 0% packet loss" in out, out
            assert "DUP!" not in out, out
        # and between single-homed hosts, through the same learning switch
        out = classic.others[0].ping("10.0.0.4", count=10, interval=0.05)
        assert " 0% packet loss" in out and "DUP!" not in out, out

    def test_carrier_loss_fails_over_fast(self, classic: Classic):
        wait_negotiated(classic.bond)
        failed = classic.members[0]
        taken_out: list[float] = []

        def fail() -> None:
            classic.lab.carrier(failed, False)
            start = time.monotonic()
            # PORT_STATUS, not the 3 s LACP timeout, takes the member out of the group
            wait_for(lambda: group_ports(classic.s1) == {2}, 2.0, "member out of the group")
            taken_out.append(time.monotonic() - start)

        results = ping_during(classic.others, "10.0.0.1", 4.0, fail)
        assert taken_out[0] < 0.5, f"the group lost the member {taken_out[0]:.2f} s after the carrier"
        for sent, received, gap in results:
            assert received > 0.9 * sent, results
            assert gap < 200.0, f"largest reply gap {gap:.0f} ms: {results}"

    def test_recovery_without_loss(self, classic: Classic):
        failed = classic.members[0]
        results = ping_during(classic.others, "10.0.0.1", 8.0, lambda: classic.lab.carrier(failed, True), delay=0.5)
        wait_negotiated(classic.bond)
        assert group_ports(classic.s1) == {1, 2}
        for sent, received, gap in results:
            assert received == sent, f"lost replies during recovery: {results}"

    def test_silent_loss_detected_by_lacp_timeout(self, classic: Classic):
        wait_negotiated(classic.bond)
        silent = classic.members[1]
        taken_out: list[float] = []

        def fail() -> None:
            classic.lab.wire_forward(silent.wire, False)
            start = time.monotonic()
            wait_for(lambda: group_ports(classic.s1) == {1}, 6.0, "silent member out of the group")
            taken_out.append(time.monotonic() - start)

        results = ping_during(classic.others, "10.0.0.1", 7.0, fail, delay=0.5)
        # the last LACPDU came at most 1 s before the drop: expiry 3 s after it, plus 1 s slack
        assert taken_out[0] <= 4.0, f"the group lost the silent member {taken_out[0]:.2f} s after the drop"
        for sent, received, gap in results:
            assert gap < 4000.0, f"not recovered within the fast timeout + 1 s: {results}"
        assert not fully_up(parse_lacp_show(lacp_show(classic.bond))["members"][silent.partner_if])
        # back again: the member returns distributing, existing flows lose nothing
        results = ping_during(
            classic.others, "10.0.0.1", 8.0, lambda: classic.lab.wire_forward(silent.wire, True), delay=0.5
        )
        wait_negotiated(classic.bond)
        assert group_ports(classic.s1) == {1, 2}
        for sent, received, gap in results:
            assert received == sent, results

    def test_switch_reconnect_restores_everything(self, classic: Classic):
        wait_negotiated(classic.bond)

        def flows() -> list[str]:
            text = sh("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", classic.s1)
            return sorted(line.strip() for line in text.splitlines()[1:] if "table=0" in line or "priority=10000" in line)

        def groups() -> list[str]:  # Open vSwitch lists groups in no fixed order
            return sorted(sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", classic.s1).splitlines()[1:])

        before_flows, before_groups = flows(), groups()
        sh("ovs-vsctl", "del-controller", classic.s1)
        time.sleep(1.0)
        classic.lab.set_controller(classic.s1, classic.of_port)
        wait_for(lambda: sh("ovs-vsctl", "get", "controller", classic.s1, "is_connected").strip() == "true", 10, "reconnected")
        wait_negotiated(classic.bond)
        wait_for(lambda: group_ports(classic.s1) == {1, 2}, 10, "group restored")
        assert flows() == before_flows
        assert groups() == before_groups
        for host in classic.others:
            host.ping("10.0.0.1", count=2)
            out = host.ping("10.0.0.1", count=10, interval=0.05)
            assert " 0% packet loss" in out, out


def test_active_with_passive_partner(lab: Lab, tmp_path):
    topo = build_classic(lab, tmp_path, partner_mode="passive")
    show = wait_negotiated(topo.bond)
    assert all("activity" not in m["actor_state"].split() for m in show["members"].values())
    topo.others[0].ping("10.0.0.1", count=2)
    assert " 0% packet loss" in topo.others[0].ping("10.0.0.1", count=5, interval=0.05)


def test_passive_with_passive_partner_never_negotiates(lab: Lab, tmp_path):
    topo = build_classic(lab, tmp_path, mode="passive", partner_mode="passive")
    time.sleep(6.0)
    assert negotiated(topo.bond) is None
    assert group_ports(topo.s1) == set()
    assert "100% packet loss" in topo.others[0].ping("10.0.0.1", count=3, interval=0.1, wait=0.3)
    # and the status says why
    bond = requests.get(f"http://127.0.0.1:{topo.api_port}/lag/0000000000000001/bond0", timeout=5).json()
    for member in bond["members"]:
        assert member["mux"] == "detached" and not member["enabled"]
        assert "passive" in member["reason"], member["reason"]


def test_member_cabled_to_another_device_stays_unselected(lab: Lab, tmp_path):
    topo = build_classic(lab, tmp_path, extra_ports=1)  # bond0 = ports 1, 2, 6
    stranger = lab.bridge("x1")
    path = lab.member_path(topo.s1, 6, "6")
    lab.add_port(stranger, path.partner_if)
    sh("ovs-vsctl", "add-bond", stranger, lab.name("xbd"), path.partner_if, lab.name("xdum"), "lacp=active",
       "other_config:lacp-time=fast", "--", "set", "interface", lab.name("xdum"), "type=internal", check=False)
    wait_negotiated(topo.bond)
    time.sleep(4.0)
    assert group_ports(topo.s1) == {1, 2}
    for host in topo.others:
        host.ping("10.0.0.1", count=2)
    before = _tx_packets(topo.s1, 6)
    for host in topo.others:
        assert " 0% packet loss" in host.ping("10.0.0.1", count=10, interval=0.02)
    # Only LACPDUs (about one a second) may leave port 6; 30 pings and their floods did not.
    assert _tx_packets(topo.s1, 6) - before <= 3


def _tx_packets(switch: str, port: int) -> int:
    text = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-ports", switch, str(port))
    return int(re.search(r"tx pkts=(\d+)", text).group(1))


def test_switch_to_switch(lab: Lab, tmp_path):
    db = tmp_path / "state.sqlite3"
    store_bonds(db, (1, {"name": "up", "ports": [1, 2], "rate": "fast"}), (2, {"name": "down", "ports": [1, 2], "rate": "fast"}))
    _, of_port, _ = lab.controller(db, log=tmp_path / "ryu-lag.log")
    s1 = lab.bridge("s1", dpid=1, controller=of_port)
    s2 = lab.bridge("s2", dpid=2, controller=of_port)
    for i in (1, 2):
        path = lab.member_path(s1, i, str(i))
        lab.add_port(s2, path.partner_if, i)
    a = lab.host("ha", "10.0.0.11", s1, 3)
    b = lab.host("hb", "10.0.0.12", s2, 3)
    wait_for(lambda: group_ports(s1) == {1, 2} and group_ports(s2) == {1, 2}, 20, "both switches distributing")
    a.ping("10.0.0.12", count=2)
    out = a.ping("10.0.0.12", count=10, interval=0.05)
    assert " 0% packet loss" in out and "DUP!" not in out, out
    assert b.ping("10.0.0.11", count=3).count("bytes from") == 3


_FLOOD = """
import socket, sys, time
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((sys.argv[1], 0))
# A LACPDU of an unknown version: slow protocols MAC and ethertype, subtype 1, version 0xff.
frame = bytes.fromhex("0180c2000002" "02000000ee01" "8809" "01ff") + bytes(106)
end = time.monotonic() + float(sys.argv[2])
sent = 0
while time.monotonic() < end:
    for _ in range(100):
        sock.send(frame)
    sent += 100
    time.sleep(0.002)  # some 30,000 frames a second: far above any meter, well within the switch
print(sent)
"""


def test_lacpdu_flood_on_one_member_does_not_starve_the_others(lab: Lab, tmp_path):
    topo = build_classic(lab, tmp_path)
    wait_negotiated(topo.bond)
    url = f"http://127.0.0.1:{topo.api_port}/lag/0000000000000001/bond0"

    def members() -> dict[int, dict]:
        return {m["port"]: m for m in requests.get(url, timeout=5).json()["members"]}

    wait_for(lambda: all(m["enabled"] for m in members().values()), 10, "both members distributing")
    meters = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-meters", topo.s1)
    lacp = [m for m in re.findall(r"meter=(\d+)", meters) if int(m) & 0xFFFF0000 == OUR_IDS]  # learn meters aside
    assert sorted(lacp) == [str(lacp_meter(1)), str(lacp_meter(2))], meters  # one per member
    before = members()
    # Frames sent on the wire bridge's end of member 1's link arrive on s1 port 1, as from the partner.
    flood = subprocess.run([sys.executable, "-c", _FLOOD, topo.members[0].wire_switch_if, "6"],
                           capture_output=True, text=True, timeout=60, check=True)
    sent = int(flood.stdout)
    after = members()
    assert after[2]["enabled"] and after[2]["counters"]["expirations"] == before[2]["counters"]["expirations"]
    assert group_ports(topo.s1) >= {2}
    # member 1's meter let through at most 20 a second (plus its burst) of what was sent
    garbled = after[1]["counters"]["bad_rx"] - before[1]["counters"]["bad_rx"]
    assert sent > 20_000 and 0 < garbled <= 20 * 7 + 20, (sent, garbled)
    wait_negotiated(topo.bond)  # and member 1 is back once the flood is over
