"""Gates on bond members (BFD's, in the service): a member whose gate is closed carries no
traffic and does not count towards min_links, while LACP runs on it unchanged."""

from __future__ import annotations

import dataclasses

from ryu_lag.lacp import BondSettings, LacpBond, LacpState, MemberChange, MemberSession, MuxState, Rate, RxState
from ryu_lag.lacp.bond import GATE_CLOSED

from tests.unit.lacp_sim import Lab

SW = "02:00:00:00:00:aa"
HOST = "02:00:00:00:00:bb"

_SYNC = LacpState.SYNCHRONIZATION
_COLLECTING = LacpState.COLLECTING
_DISTRIBUTING = LacpState.DISTRIBUTING


def bond(system: str, ports=(1, 2), key: int = 1, **kw) -> LacpBond:
    return LacpBond(BondSettings(key=key, rate=Rate.FAST, **kw), system, ports)


def enabled(b: LacpBond) -> set[int]:
    return {p for p, m in b.members.items() if m.enabled}


def pdus_from(lab: Lab, sender: LacpBond, port: int, first: int):
    """The PDUs ``sender`` sent out of ``port``, from the ``first``-th PDU the lab carried."""
    return [pdu for _, who, p, pdu in lab.pdus[first:] if who is sender and p == port]


def negotiated(min_links: int, ports=(1, 2)) -> tuple[Lab, LacpBond, LacpBond]:
    lab = Lab()
    a = bond(SW, ports=ports, min_links=min_links)
    b = bond(HOST, ports=ports, key=7)  # the partner: no min_links, no gates of its own
    for p in ports:
        lab.connect((a, p), (b, p))
    lab.run(5.0)
    assert enabled(a) == enabled(b) == set(ports)
    return lab, a, b


def gate(lab: Lab, b: LacpBond, port: int, open: bool):
    """Set a gate as the service does, delivering the PDUs it makes; the update."""
    update = b.set_gate(port, open, lab.now)
    lab._deliver(b, update)
    return update


def test_below_min_links_by_a_closed_gate_the_other_member_goes_standby_and_reopening_restores_both():
    lab, a, b = negotiated(min_links=2)
    first = len(lab.pdus)
    update = gate(lab, a, 1, False)
    assert {c.port: (c.collecting, c.distributing) for c in update.changes} == {1: (True, False), 2: (False, False)}
    assert update.session_changed  # member 2's standby is in its session
    other = a.members[2]
    assert other.standby and other.mux is MuxState.WAITING and not other.enabled
    assert not a.is_up() and a.distributing_count() == 0
    assert a.reason(2).startswith("bond below min_links (1 of 2 members can aggregate, 1 more held out by their gate)")
    lab.run(5.0)
    sent2 = pdus_from(lab, a, 2, first)
    assert sent2 and all(not pdu.actor.state & _SYNC for pdu in sent2)  # the partner stops using member 2
    assert not b.members[2].collecting and 2 not in enabled(b)
    gated = a.members[1]
    assert gated.selected and not gated.standby and gated.mux is MuxState.DISTRIBUTING and not gated.enabled
    sent1 = pdus_from(lab, a, 1, first)
    assert sent1 and all(pdu.actor.state & (_SYNC | _COLLECTING) == _SYNC | _COLLECTING for pdu in sent1)
    assert all(not pdu.actor.state & _DISTRIBUTING for pdu in sent1)  # Distributing follows enabled
    assert enabled(a) == set()

    update = gate(lab, a, 1, True)
    assert not other.standby and update.session_changed
    lab.run(4.0)
    assert enabled(a) == enabled(b) == {1, 2} and a.is_up() and a.distributing_count() == 2
    assert a.members[1].actor_state() & _DISTRIBUTING and a.reason(1) == a.reason(2) == "distributing"


def test_with_min_links_one_a_closed_gate_leaves_the_other_member_distributing():
    lab, a, b = negotiated(min_links=1)
    first = len(lab.pdus)
    update = gate(lab, a, 1, False)
    assert update.changes == [MemberChange(1, True, False)]  # only the gated member changes role
    assert [t.port for t in update.transmit] == [1]  # its Distributing bit goes off at once
    assert not update.transmit[0].pdu.actor.state & _DISTRIBUTING
    lab.run(5.0)
    assert enabled(a) == {2} and a.is_up() and a.distributing_count() == 1
    assert not a.members[2].standby and a.members[2].actor_state() & _DISTRIBUTING
    assert a.members[1].mux is MuxState.DISTRIBUTING and a.reason(1) == GATE_CLOSED
    assert all(pdu.actor.state & _SYNC for pdu in pdus_from(lab, a, 2, first))
    update = gate(lab, a, 1, True)
    assert update.changes == [MemberChange(1, True, True)]  # back at once: LACP never let go of it
    assert enabled(a) == {1, 2}


def test_all_gates_closed_with_min_links_one_hold_no_member_standby():
    lab, a, _ = negotiated(min_links=1)
    gate(lab, a, 1, False)
    gate(lab, a, 2, False)
    lab.run(2.0)
    assert enabled(a) == set() and not a.is_up()
    assert all(m.mux is MuxState.DISTRIBUTING and not m.standby for m in a.members.values())
    gate(lab, a, 2, True)
    assert enabled(a) == {2}


def test_a_gated_member_keeps_its_lacp_session():
    lab, a, b = negotiated(min_links=2)
    gate(lab, a, 1, False)
    member = a.members[1]
    rx, tx = member.counters.rx, member.counters.tx
    lab.run(10.0)  # past three fast timeouts
    assert member.rx_state is RxState.CURRENT and member.counters.expirations == 0
    assert member.counters.rx - rx >= 9 and member.counters.tx - tx >= 9  # PDUs go on both ways at the fast rate
    assert member.partner_sync and b.members[1].partner_sync  # still in sync with the partner
    session = a.sessions()[1]
    assert (session.selected, session.standby, session.mux) == (True, False, MuxState.DISTRIBUTING)
    assert "gate" not in " ".join(f.name for f in dataclasses.fields(MemberSession))


def test_a_repeated_gate_is_no_event_and_a_new_bond_starts_with_its_gates_open():
    lab, a, _ = negotiated(min_links=2)
    gate(lab, a, 1, False)
    again = a.set_gate(1, False, lab.now)
    assert again.changes == again.transmit == [] and not again.session_changed
    fresh = bond(SW, min_links=2)  # as after a controller restart: BFD starts again, the gates open
    fresh.resume(a.sessions(), [1, 2], lab.now)
    assert all(m.gate_open for m in fresh.members.values())
    assert not fresh.members[2].standby  # the session says standby; with both gates open it is not


def test_raising_min_links_counts_only_open_gates():
    lab, a, _ = negotiated(min_links=1)
    gate(lab, a, 1, False)
    update = a.reconfigure(dataclasses.replace(a.settings, min_links=2), a.ports, lab.now)
    assert MemberChange(2, False, False) in update.changes
    assert a.members[2].standby and not a.members[1].standby
