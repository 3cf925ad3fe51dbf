"""The LACP engine under partial failures: min_links STANDBY, and one-way links that must not flap."""

from __future__ import annotations

from ryu_lag.lacp import BondSettings, LacpBond, LacpState, MuxState, Rate, RxState

from tests.unit.lacp_sim import EchoingPartner, Lab

SW = "02:00:00:00:00:aa"
HOST = "02:00:00:00:00:bb"

_SYNC = LacpState.SYNCHRONIZATION
_UP_BITS = LacpState.SYNCHRONIZATION | LacpState.COLLECTING | LacpState.DISTRIBUTING


def bond(system: str, ports=(1, 2), key: int = 1, **kw) -> LacpBond:
    return LacpBond(BondSettings(key=key, rate=Rate.FAST, **kw), system, ports)


def distributing(b: LacpBond) -> set[int]:
    return {p for p, m in b.members.items() if m.enabled}


def pdus_from(lab: Lab, sender: LacpBond, port: int, first: int):
    """The PDUs ``sender`` sent out of ``port``, from the ``first``-th PDU the lab carried."""
    return [pdu for _, who, p, pdu in lab.pdus[first:] if who is sender and p == port]


def test_below_min_links_the_remaining_member_is_standby_with_sync_off_so_the_partner_stops_using_it():
    lab = Lab()
    a = bond(SW, min_links=2)
    b = bond(HOST, key=7)  # the partner: no min_links of its own
    lab.connect((a, 1), (b, 1))
    wire2 = lab.connect((a, 2), (b, 2))
    lab.run(5.0)
    assert distributing(a) == distributing(b) == {1, 2}
    first = len(lab.pdus)
    lab.set_carrier(wire2, False)
    member = a.members[1]
    assert member.mux is MuxState.WAITING and not member.collecting  # detached at once, waiting for a second member
    lab.run(10.0)
    assert member.mux is MuxState.WAITING and not member.collecting and not member.enabled
    sent = pdus_from(lab, a, 1, first)
    assert sent and all(not pdu.actor.state & _SYNC for pdu in sent)  # told the partner at once, and kept saying it
    assert distributing(b) == set() and not b.members[1].collecting  # the partner sends nothing into the bond
    assert not a.is_up()
    assert a.next_deadline() > lab.now  # its aggregate wait is over, and no timer stays due while it waits on
    assert member.selected and member.standby
    assert a.reason(1).startswith("bond below min_links (1 of 2 members can aggregate)")
    lab.set_carrier(wire2, True)  # enough candidates again: both attach
    lab.run(4.0)
    assert not member.standby
    assert distributing(a) == distributing(b) == {1, 2}


def test_min_links_met_by_the_remaining_members_keeps_them_distributing():
    lab = Lab()
    a = bond(SW, ports=(1, 2, 3), min_links=2)
    b = bond(HOST, ports=(1, 2, 3), key=7)
    wires = [lab.connect((a, p), (b, p)) for p in (1, 2, 3)]
    lab.run(5.0)
    assert distributing(a) == {1, 2, 3}
    update = a.set_link(3, False, lab.now)
    lab.set_carrier(wires[2], False)
    assert [(c.port, c.collecting, c.distributing) for c in update.changes] == [(3, False, False)]
    assert distributing(a) == {1, 2} and a.members[1].mux is MuxState.DISTRIBUTING


def test_a_partner_echoing_our_state_from_before_an_expiry_does_not_bring_the_member_back():
    # Faucet, with our direction cut (carrier up), keeps sending its stale copy of our
    # state (0x3f) every 5 s: each time our 3 s timeout ran out, the member came back.
    lab = Lab()
    a = bond(SW)
    p = EchoingPartner(HOST, 7, (1, 2), period=5.0)
    wire1 = lab.connect((a, 1), (p, 1))
    lab.connect((a, 2), (p, 2))
    lab.run(5.0)
    assert distributing(a) == {1, 2}
    member = a.members[1]
    wire1.cut_from = (a, 1)
    cut_at, rx_before = lab.now, member.counters.rx
    came_back = []
    expired_at = None
    while lab.now < cut_at + 40.0:
        lab.run(lab.step)
        if expired_at is None and member.counters.expirations:
            expired_at = lab.now
        elif expired_at is not None and member.collecting:
            came_back.append(lab.now)
        assert 2 in distributing(a)  # the other member is not disturbed
    assert expired_at is not None and expired_at <= cut_at + 3.0 + lab.step
    assert member.counters.expirations >= 5  # the stale echoes keep arriving ...
    assert member.counters.rx - rx_before >= 7
    assert p.members[1].heard.state == 0x3F  # ... with our old state
    assert came_back == []  # ... and never bring the member back
    assert not member.actor_state() & (LacpState.COLLECTING | LacpState.DISTRIBUTING)
    if member.rx_state is RxState.CURRENT and member.mux is MuxState.ATTACHED:
        assert a.reason(1).startswith("partner has not echoed our state since")
    wire1.cut_from = None  # our direction heals: the partner hears our new state and echoes it
    healed_at = lab.now
    lab.run(3.0)
    assert p.members[1].heard.state & _UP_BITS == _UP_BITS
    assert distributing(a) == {1, 2}
    assert member.counters.expirations - 1 <= (healed_at - cut_at) / 5.0  # at most one per stale echo
