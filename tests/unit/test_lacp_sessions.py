"""LACP sessions that survive the controller: MemberSession, LacpBond.sessions() and resume()."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ryu_lag.lacp import (
    BondSettings,
    LacpBond,
    LacpState,
    Lacpdu,
    MemberSession,
    MuxState,
    PortInfo,
    Rate,
    RxState,
    encode_frame,
)
from ryu_lag.lacp.member import AGGREGATE_WAIT_TIME, SHORT_TIMEOUT_TIME
from ryu_lag.lacp.pdu import NULL_PORT_INFO

from tests.unit.lacp_sim import Lab, OvsLikePartner

SW = "02:00:00:00:00:aa"
HOST = "02:00:00:00:00:bb"
OTHER = "02:00:00:00:00:cc"


def bond(ports=(1, 2)) -> LacpBond:
    return LacpBond(BondSettings(key=1, rate=Rate.FAST), SW, ports)


def distributing(b: LacpBond) -> set[int]:
    return {p for p, m in b.members.items() if m.enabled}


def roles(update) -> list[tuple[int, bool, bool]]:
    return sorted((c.port, c.collecting, c.distributing) for c in update.changes)


def stored(sessions: dict[int, MemberSession]) -> dict[int, MemberSession]:
    """Through JSON and back, as the caller stores them."""
    text = json.dumps({str(port): s.to_dict() for port, s in sessions.items()})
    return {int(port): MemberSession.from_dict(data) for port, data in json.loads(text).items()}


def negotiated(ports=(1, 2)) -> tuple[Lab, LacpBond, OvsLikePartner]:
    lab = Lab()
    a = bond(ports)
    p = OvsLikePartner(HOST, 7, ports)
    for port in ports:
        lab.connect((a, port), (p, port))
    lab.run(5.0)
    assert distributing(a) == set(ports)
    return lab, a, p


def restarted(lab: Lab, old: LacpBond, up_ports) -> tuple[LacpBond, object]:
    """A new controller: a fresh bond resumes ``old``'s stored sessions and takes its wires."""
    new = bond(tuple(old.members))
    sessions = stored(old.sessions())
    for wire in lab.wires:
        if wire.a[0] is old:
            wire.a = (new, wire.a[1])
    return new, new.resume(sessions, up_ports, lab.now)


def test_sessions_round_trip_through_json():
    lab, a, p = negotiated()
    sessions = a.sessions()
    assert set(sessions) == {1, 2}
    s = sessions[1]
    assert (s.mux, s.rx_state, s.selected, s.standby) == (MuxState.DISTRIBUTING, RxState.CURRENT, True, False)
    assert s.partner == a.members[1].partner and s.partner.system == HOST
    assert s.partner_matched and s.partner_has_our_sync and s.actor_state == 0x3F
    assert s.post_expiry_states is None
    assert stored(sessions) == sessions
    lab.wires[0].silent = True  # member 1 expires: it awaits a fresh echo
    lab.run(SHORT_TIMEOUT_TIME + 0.5)
    s = a.members[1].session()
    assert s.rx_state is RxState.EXPIRED and s.post_expiry_states
    assert stored({1: s}) == {1: s}


def _good() -> dict:
    return MemberSession(
        partner=PortInfo(1, HOST, 7, 1, 1, LacpState(0x3F)),
        partner_matched=True,
        partner_has_our_sync=True,
        selected=True,
        standby=False,
        mux=MuxState.DISTRIBUTING,
        rx_state=RxState.CURRENT,
        actor_state=0x3F,
        post_expiry_states=(0x07, 0x87),
    ).to_dict()


def _with(path: str, value) -> dict:
    data = _good()
    *parents, name = path.split(".")
    target = data
    for parent in parents:
        target = target[parent]
    if value is KeyError:
        del target[name]
    else:
        target[name] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "session",
        _with("mux", "flying"),
        _with("mux", ["distributing"]),
        _with("rx_state", None),
        _with("selected", 1),
        _with("partner_matched", "yes"),
        _with("actor_state", 256),
        _with("actor_state", True),
        _with("post_expiry_states", "07"),
        _with("post_expiry_states", [300]),
        _with("standby", KeyError),
        _with("extra", 1),
        _with("partner", None),
        _with("partner.system", "not a mac"),
        _with("partner.system", 42),
        _with("partner.port", -1),
        _with("partner.key", 0x10000),
        _with("partner.state", 1.5),
        _with("partner.port_priority", KeyError),
    ],
)
def test_from_dict_rejects_anything_malformed(data):
    with pytest.raises(ValueError):
        MemberSession.from_dict(data)


def test_from_dict_accepts_what_to_dict_gives():
    session = MemberSession.from_dict(_good())
    assert session.partner.state == 0x3F and session.post_expiry_states == (0x07, 0x87)
    upper = _with("partner.system", HOST.upper())
    assert MemberSession.from_dict(upper).partner.system == HOST


def test_resume_then_a_confirming_pdu_carries_on_with_no_role_change():
    lab, a, p = negotiated()
    actors = {port: m.actor_info() for port, m in a.members.items()}
    synced_at = {port: m.synced_at for port, m in p.members.items()}
    lab.run(0.3)
    a2, update = restarted(lab, a, up_ports=(1, 2))
    assert roles(update) == [(1, True, True), (2, True, True)]  # the caller builds the pipeline from these
    assert {tx.port: tx.pdu.actor for tx in update.transmit} == actors  # at once, same info and state bits
    assert a2.partner_id == (32768, HOST, 7)
    for _ in range(int(10.0 / lab.step)):
        before = lab.now
        lab.run(lab.step)
        assert distributing(a2) == {1, 2}, before
        assert {m.mux for m in a2.members.values()} == {MuxState.DISTRIBUTING}
    assert all(m.counters.rx >= 9 for m in a2.members.values())  # confirmed by the partner, many times over
    assert {port: m.synced_at for port, m in p.members.items()} == synced_at  # the partner saw no change of ours


def test_resume_with_no_pdu_expires_after_the_timeout():
    lab, a, p = negotiated(ports=(1,))
    a2, update = restarted(lab, a, up_ports=(1,))
    lab.wires[0].silent = True
    resumed_at = lab.now
    assert a2.members[1].rx_state is RxState.CURRENT
    lab.run(SHORT_TIMEOUT_TIME - 0.05)
    assert distributing(a2) == {1}
    lab.run(0.1)
    assert a2.members[1].rx_state is RxState.EXPIRED and distributing(a2) == set()
    assert a2.members[1].counters.expirations == 1
    assert lab.now - resumed_at == pytest.approx(SHORT_TIMEOUT_TIME, abs=0.06)


def _send(bond_: LacpBond, port: int, actor: PortInfo, view: PortInfo, now: float):
    return bond_.receive_frame(port, encode_frame(HOST, Lacpdu(actor, view)), now)


@pytest.mark.parametrize("refusal", ["other partner port", "view of us wrong"])
def test_resume_then_a_non_confirming_pdu_renegotiates_that_member_only(refusal):
    lab, a, p = negotiated()
    a2, _ = restarted(lab, a, up_ports=(1, 2))
    actor = p.actor(1)
    if refusal == "other partner port":  # recabled to another port of the partner while we were away
        actor = PortInfo(actor.system_priority, actor.system, actor.key, actor.port_priority, 9, actor.state)
        view = a2.members[1].actor_info()
    else:  # the partner restarted too: it does not know us
        view = NULL_PORT_INFO
    update = _send(a2, 1, actor, view, lab.now)
    assert roles(update) == [(1, False, False)]
    member = a2.members[1]
    assert member.mux is MuxState.WAITING and member.selected  # detached, then waiting: from scratch
    assert not member.actor_state() & LacpState.SYNCHRONIZATION
    assert distributing(a2) == {2} and a2.members[2].mux is MuxState.DISTRIBUTING
    lab.wires[0].silent = True
    lab.run(AGGREGATE_WAIT_TIME - 0.1)
    assert member.mux is MuxState.WAITING and distributing(a2) == {2}


def test_resume_then_the_same_partner_renegotiates_and_returns_after_the_aggregate_wait():
    lab, a, p = negotiated()
    a2, _ = restarted(lab, a, up_ports=(1, 2))
    _send(a2, 1, p.actor(1), NULL_PORT_INFO, lab.now)  # a partner that lost our session
    assert a2.members[1].mux is MuxState.WAITING
    lab.run(AGGREGATE_WAIT_TIME + 0.5)
    assert distributing(a2) == {1, 2}


def test_resume_only_members_that_are_up_and_start_the_others_afresh():
    lab, a, p = negotiated(ports=(1, 2, 3))
    sessions = stored(a.sessions())
    del sessions[3]
    a2 = bond((1, 2, 3))
    update = a2.resume(sessions, (1, 3), lab.now)
    assert roles(update) == [(1, True, True)]  # 2 is down, 3 has no session
    assert {tx.port for tx in update.transmit} == {1, 3}
    assert not a2.members[2].link_up and a2.members[2].mux is MuxState.DETACHED
    assert a2.members[3].rx_state is RxState.EXPIRED and a2.members[3].mux is MuxState.DETACHED
    assert distributing(a2) == {1}


def test_a_resumed_member_that_was_not_distributing_reports_its_role_too():
    lab, a, p = negotiated(ports=(1, 2))
    lab.set_carrier(lab.wires[1], False)
    lab.set_carrier(lab.wires[1], True)  # member 2 renegotiates: waiting
    assert a.members[2].mux is MuxState.WAITING
    a2, update = restarted(lab, a, up_ports=(1, 2))
    assert roles(update) == [(1, True, True), (2, False, False)]
    lab.run(AGGREGATE_WAIT_TIME + 0.5)
    assert distributing(a2) == {1, 2}


def test_session_changed_on_changes_but_never_on_a_repeated_pdu():
    lab, a, p = negotiated(ports=(1,))
    frame = encode_frame(HOST, Lacpdu(p.actor(1), a.members[1].actor_info()))
    a.receive_frame(1, frame, lab.now)
    for i in range(3):
        update = a.receive_frame(1, frame, lab.now + 0.1 * (i + 1))
        assert not update.session_changed and update.changes == []
    out_of_sync = dataclasses.replace(p.actor(1), state=LacpState(0x07))
    update = a.receive_frame(1, encode_frame(HOST, Lacpdu(out_of_sync, a.members[1].actor_info())), lab.now + 0.5)
    assert update.session_changed and roles(update) == [(1, False, False)]
    assert a.set_link(1, False, lab.now + 0.6).session_changed
