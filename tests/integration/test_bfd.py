"""BFD on bond members (issue 12) against a real Open vSwitch partner.

The classic topology: h1 behind an Open vSwitch LACP bond (fast rate) on s1's ports 1
and 2, each member through a wire bridge that can drop everything while the carrier
stays up (a silent cut); h2-h4 on s1 ping h1 every 10 ms. bond0 runs BFD at 100 ms
(multiplier 3, Open vSwitch's encapsulation), and so does the partner on its members:
Open vSwitch takes a member out of its bond while that member's BFD is not forwarding.

- The sessions come Up with Open vSwitch's (discriminators and timers agree both ways).
- A silent cut of each member in turn, twice: both sides take the member out within
  BFD's detection time, well before LACP's 3 s timeout could (LACP still current on both
  sides when it is out): largest gap between replies at most 400 ms, at most 40 lost
  replies per flow. h1's replies are moved onto the cut member first, so every flow
  crosses it and the partner's detection is measured too; our requests cross the member
  s1's group hashes them onto, so over both members every flow's two directions are cut.
  The first cut of a member is mended while LACP is still current (BFD alone brings it
  back), the second after LACP has expired on both sides (LACP and BFD both come back);
  either way no reply is lost.
- BFD on our side only: our sessions never come Up, the bond runs on LACP alone (both
  members distributing, no loss), and each member's BFD status says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from tests.integration.conftest import Classic, build_classic
from tests.integration.netlab import (
    Host,
    Lab,
    Member,
    bfd_show,
    bond_show,
    lacp_show,
    parse_bond_show,
    parse_lacp_show,
    ping_gaps,
    sh,
    wait_for,
)
from tests.integration.test_switching_real import group_ports, negotiated, ping_during

BFD = {"min_tx_ms": 100, "min_rx_ms": 100, "multiplier": 3, "encapsulation": "ovs"}
DETECTION_MS = 300  # multiplier 3 x 100 ms
GAP_LIMIT_MS = 400.0  # issue 12's goal, both directions
RENEGOTIATION_LOST_LIMIT = 3  # replies per flow, across a recovery that renegotiates LACP as well
LOST_LIMIT = 40  # replies per flow
OUT_WITHIN = 1.5  # seconds from a cut until both sides show the member out (detection 0.3 s, polls, a noisy VM)
UP_TIMEOUT = 20.0
CUT_AT = 0.4  # seconds into the cut's pings
CUT_PINGS = 1.3  # seconds the cut's pings last: a member can be mended well before LACP's 3 s timeout (2 s at the earliest)
BFD_UDP_PORT = 3784


@pytest.fixture(scope="module")
def classic(tmp_path_factory: pytest.TempPathFactory):
    lab = Lab()
    try:
        topo = build_classic(lab, tmp_path_factory.mktemp("bfd"), bfd=BFD, partner_bfd=True)
        # h1's replies stay on the member the test puts them on
        sh("ovs-vsctl", "set", "port", topo.bond, "other_config:bond-rebalance-interval=0")
        yield topo
    finally:
        lab.close()


# ---- what the tests look at ---------------------------------------------------------
def members(topo: Classic) -> dict[int, dict]:
    """Our REST view of bond0's members by port."""
    url = f"http://127.0.0.1:{topo.api_port}/lag/0000000000000001/bond0"
    return {m["port"]: m for m in requests.get(url, timeout=5).json()["members"]}


def partner_members(topo: Classic) -> dict[str, dict]:
    """The partner's ``bond/show`` members by interface name."""
    return parse_bond_show(bond_show(topo.bond))["members"]


def partner_enabled(topo: Classic, member: Member) -> bool:
    shown = partner_members(topo).get(member.partner_if, {})
    return shown.get("status") == "enabled" and shown.get("may_enable") == "true"


def ours_bfd_up(member: dict) -> bool:
    """Our member carries traffic with its BFD session Up and gating it."""
    bfd = member["bfd"] or {}
    return member["enabled"] and member["mux"] == "distributing" and bfd.get("state") == "up" and bfd.get("gating") is True


def all_up(topo: Classic) -> bool:
    """Both members in the bond on both sides, with BFD Up on both sides."""
    try:
        ours = members(topo)
    except requests.RequestException:
        return False
    return (
        negotiated(topo.bond) is not None
        and all(partner_enabled(topo, m) and bfd_show(m.partner_if).get("forwarding") == "true" for m in topo.members)
        and len(ours) == 2 and all(map(ours_bfd_up, ours.values()))
        and group_ports(topo.s1) == {1, 2}
    )


def held_out(topo: Classic, cut: Member, other: Member) -> bool:
    """``cut`` is out on both sides: ours (REST, BFD down, not in the group) and the partner's bond/show."""
    ours = members(topo)[cut.ofport]
    return (
        not ours["enabled"] and (ours["bfd"] or {}).get("state") == "down"
        and group_ports(topo.s1) == {other.ofport}
        and partner_members(topo).get(cut.partner_if, {}).get("may_enable") == "false"
    )


def lacp_current(topo: Classic, member: Member) -> tuple[bool, bool]:
    """Whether LACP has ``member`` current: (on our side, on the partner's)."""
    ours = members(topo)[member.ofport]["rx_state"] == "current"
    theirs = parse_lacp_show(lacp_show(topo.bond))["members"].get(member.partner_if, {})
    return ours, theirs.get("status", "").startswith("current")


def replies_onto(topo: Classic, member: Member) -> None:
    """Make the partner send h1's traffic (its balance-slb hash of h1's MAC) over ``member``."""
    mac = topo.h1.run("cat", "/sys/class/net/eth0/address").strip()
    bucket = sh("ovs-appctl", "bond/hash", mac).strip()
    sh("ovs-appctl", "bond/migrate", topo.bond, bucket, member.partner_if)


def ping_for(hosts: list[Host], target: str, seconds: float, action: Callable[[], None], delay: float) -> list[tuple[int, int, float]]:
    """10 ms pings from ``hosts`` interrupted ``seconds`` after they start (the last reply may still be in
    flight); ``action`` runs ``delay`` seconds in. (sent, received, largest gap ms) per host."""
    procs = [h.popen("timeout", "-s", "INT", f"{seconds:g}", "ping", "-D", "-i", "0.01", target) for h in hosts]
    time.sleep(delay)
    action()
    return [ping_gaps(p.communicate(timeout=seconds + 30)[0]) for p in procs]


def warm_up(topo: Classic) -> None:
    for host in topo.others:
        host.ping(topo.h1.ip, count=2, interval=0.05)


# ---- the tests ------------------------------------------------------------------------
def test_sessions_come_up_with_open_vswitch(classic: Classic):
    wait_for(lambda: all_up(classic), UP_TIMEOUT, "both members up, BFD Up on both sides")
    before = members(classic)
    time.sleep(1.0)  # many detection times: the sessions stay Up on 100 ms hellos
    assert all_up(classic)
    ours = members(classic)
    for member in classic.members:
        bfd = ours[member.ofport]["bfd"]
        theirs = bfd_show(member.partner_if)
        assert int(theirs["remote_discriminator"], 16) == bfd["local_discriminator"], (theirs, bfd)
        assert int(theirs["local_discriminator"], 16) == bfd["remote_discriminator"], (theirs, bfd)
        assert theirs["local_session_state"] == theirs["remote_session_state"] == "up", theirs
        assert bfd["remote_state"] == "up"
        assert bfd["tx_interval_ms"] == bfd["rx_interval_ms"] == 100, bfd
        assert bfd["detection_time_ms"] == DETECTION_MS, bfd
        received = bfd["counters"]["packets_rx"] - before[member.ofport]["bfd"]["counters"]["packets_rx"]
        assert received >= 5 and bfd["counters"]["bad_rx"] == 0, (received, bfd)  # some 10 a second
        assert "BFD Up" in bfd["reason"], bfd["reason"]
    warm_up(classic)
    for host in classic.others:
        out = host.ping(classic.h1.ip, count=20, interval=0.02)
        assert " 0% packet loss" in out and "DUP!" not in out, out


@pytest.mark.parametrize("outlast_lacp", [False, True], ids=["mended-lacp-current", "mended-lacp-expired"])
@pytest.mark.parametrize("index", [0, 1], ids=["member1", "member2"])
def test_silent_cut_out_within_400ms_and_mended_without_loss(classic: Classic, index: int, outlast_lacp: bool):
    wait_for(lambda: all_up(classic), UP_TIMEOUT, "both members up, BFD Up on both sides")
    cut, other = classic.members[index], classic.members[1 - index]
    replies_onto(classic, cut)
    warm_up(classic)
    seen: dict[str, object] = {}

    def fail() -> None:
        classic.lab.wire_forward(cut.wire, False)
        start = time.monotonic()
        wait_for(lambda: held_out(classic, cut, other), OUT_WITHIN, "the cut member out on both sides", 0.05)
        seen["out_after"] = time.monotonic() - start
        seen["ours"] = members(classic)[cut.ofport]
        seen["partner_bfd"] = bfd_show(cut.partner_if)
        seen["lacp_current"] = lacp_current(classic, cut)

    try:
        results = ping_for(classic.others, classic.h1.ip, CUT_PINGS, fail, CUT_AT)
        ours = seen["ours"]
        assert isinstance(ours, dict)
        # BFD took it out, not LACP: LACP still has the member current on both sides ...
        assert seen["lacp_current"] == (True, True), seen
        assert ours["mux"] == "distributing" and "BFD" in ours["reason"], ours
        assert ours["bfd"]["gating"] and not ours["bfd"]["gate_open"], ours["bfd"]
        assert seen["partner_bfd"]["forwarding"] == "false", seen["partner_bfd"]
        # ... and traffic paid BFD's detection time, not LACP's timeout
        for sent, received, gap in results:
            assert gap <= GAP_LIMIT_MS, (
                f"largest reply gap {gap:.0f} ms (limit {GAP_LIMIT_MS:.0f}), the member out on both sides "
                f"{seen['out_after']:.2f} s after the cut: {results}"
            )
            assert sent - received <= LOST_LIMIT, f"{sent - received} replies lost (limit {LOST_LIMIT}): {results}"
        assert max(gap for _, _, gap in results) >= 100.0, f"the cut did not hit the flows: {results}"

        if outlast_lacp:
            wait_for(lambda: lacp_current(classic, cut) == (False, False), 6.0, "LACP expired on both sides")
        else:
            assert lacp_current(classic, cut) == (True, True), "LACP expired before the mend"
        results = ping_during(classic.others, classic.h1.ip, 8.0, lambda: classic.lab.wire_forward(cut.wire, True), delay=0.3)
    finally:
        classic.lab.wire_forward(cut.wire, True)
    wait_for(lambda: all_up(classic), UP_TIMEOUT, "the mended member back, BFD Up on both sides")
    # Mended while LACP was still current, BFD alone brings the member back: nothing may be lost.
    # Mended after LACP expired on both sides, LACP renegotiates too; there Open vSwitch moves h1's
    # replies onto the member within the same ~20 ms as we start taking them: 1-2 replies of a flow
    # were lost in about one run in four before the gate waited for the partner's Up (not seen since,
    # in few runs: the allowance stays until more runs show none).
    allowed = RENEGOTIATION_LOST_LIMIT if outlast_lacp else 0
    for sent, received, gap in results:
        assert sent - received <= allowed, f"lost replies across the recovery: {results}"


def test_bfd_on_our_side_only_runs_on_lacp_alone(lab: Lab, tmp_path):
    topo = build_classic(lab, tmp_path, bfd=BFD)  # the partner runs no BFD

    def on_lacp_alone() -> bool:
        ours = members(topo)
        return (
            negotiated(topo.bond) is not None and all(partner_enabled(topo, m) for m in topo.members)
            and len(ours) == 2 and all(m["enabled"] and m["mux"] == "distributing" for m in ours.values())
            and group_ports(topo.s1) == {1, 2}
        )

    wait_for(on_lacp_alone, UP_TIMEOUT, "both members distributing")
    # Our control packets (one a second while Down) do reach the partner, which ignores them ...
    capture = sh("timeout", "5", "tcpdump", "-c", "2", "-n", "-Q", "in", "-i", topo.members[0].partner_if,
                 "udp", "dst", "port", str(BFD_UDP_PORT), check=False)
    assert capture.count(f".{BFD_UDP_PORT}: BFD") == 2, capture
    assert bfd_show(topo.members[0].partner_if) == {}
    time.sleep(1.0)  # ... for many detection times
    assert on_lacp_alone()
    for port, member in members(topo).items():
        bfd = member["bfd"]
        assert bfd["state"] == "down" and bfd["remote_discriminator"] == 0, bfd
        assert not bfd["gating"] and bfd["gate_open"], bfd
        assert bfd["counters"]["packets_tx"] > 0 and bfd["counters"]["packets_rx"] == 0, bfd
        assert "never came Up" in bfd["reason"] and "LACP alone" in bfd["reason"], bfd["reason"]
    warm_up(topo)
    for host in topo.others:
        out = host.ping(topo.h1.ip, count=20, interval=0.02)
        assert " 0% packet loss" in out and "DUP!" not in out, out
