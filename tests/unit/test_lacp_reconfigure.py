"""LacpBond.reconfigure: a new configuration applied as a diff, without resetting members."""

from __future__ import annotations

import dataclasses

import pytest

from ryu_lag.lacp import BondSettings, LacpBond, LacpState, Lacpdu, Mode, MuxState, Rate, Update, encode_frame
from ryu_lag.lacp.member import AGGREGATE_WAIT_TIME, SHORT_TIMEOUT_TIME

from tests.unit.lacp_sim import Lab, OvsLikePartner

SW = "02:00:00:00:00:aa"
HOST = "02:00:00:00:00:bb"
SETTINGS = BondSettings(key=1, rate=Rate.FAST)
_ATTACHED_BITS = LacpState.SYNCHRONIZATION | LacpState.COLLECTING | LacpState.DISTRIBUTING


def distributing(b: LacpBond) -> set[int]:
    return {p for p, m in b.members.items() if m.enabled}


def negotiated(ports=(1, 2), partner_ports=None) -> tuple[Lab, LacpBond, OvsLikePartner]:
    lab = Lab()
    a = LacpBond(SETTINGS, SW, ports)
    p = OvsLikePartner(HOST, 7, partner_ports or ports)
    for port in ports:
        lab.connect((a, port), (p, port))
    lab.run(5.0)
    assert distributing(a) == set(ports)
    return lab, a, p


def run_distributing(lab: Lab, a: LacpBond, seconds: float, ports) -> None:
    """Run the lab, checking at every step that ``ports`` distribute."""
    end = lab.now + seconds
    while lab.now < end - 1e-9:
        lab.run(lab.step)
        assert distributing(a) >= set(ports), lab.now
        assert all(a.members[port].mux is MuxState.DISTRIBUTING for port in ports)


@pytest.mark.parametrize(
    "change, shows",
    [
        (dict(port_priority=7), lambda pdu: pdu.actor.port_priority == 7),
        (dict(system_priority=9), lambda pdu: pdu.actor.system_priority == 9),
        (dict(rate=Rate.SLOW), lambda pdu: not pdu.actor.state & LacpState.TIMEOUT),
        (dict(mode=Mode.PASSIVE), lambda pdu: not pdu.actor.state & LacpState.ACTIVITY),
        (dict(min_links=2), None),
    ],
    ids=["port_priority", "system_priority", "rate", "mode", "min_links"],
)
def test_an_in_place_change_keeps_distributing_members_distributing(change, shows):
    lab, a, p = negotiated()
    settings = dataclasses.replace(SETTINGS, **change)
    update = a.reconfigure(settings, (1, 2), lab.now)
    assert update.changes == [] and update.session_changed
    assert a.settings == settings
    if shows is None:
        assert update.transmit == []  # nothing the partner sees changed
    else:
        assert sorted(tx.port for tx in update.transmit) == [1, 2]  # at once
        assert all(shows(tx.pdu) for tx in update.transmit)
        assert all(tx.pdu.actor.state & _ATTACHED_BITS == _ATTACHED_BITS for tx in update.transmit)
    run_distributing(lab, a, 40.0, (1, 2))  # at the slow rate, past a fast timeout and a slow period
    assert all(m.counters.expirations == 0 for m in a.members.values())
    if shows is not None:
        assert all(shows(Lacpdu(p.members[port].partner, p.actor(port))) for port in (1, 2))  # the partner has it


def test_a_rate_change_moves_our_receive_timeout():
    lab, a, p = negotiated(ports=(1,))
    a.reconfigure(dataclasses.replace(SETTINGS, rate=Rate.SLOW), (1,), lab.now)
    assert a.members[1].lacp_timeout_seconds() == 90
    lab.run(1.0)
    lab.wires[0].silent = True
    lab.run(60.0)
    assert distributing(a) == {1}  # a fast timeout would have expired it 57 s ago
    a.reconfigure(SETTINGS, (1,), lab.now)
    lab.run(SHORT_TIMEOUT_TIME + 0.1)
    assert distributing(a) == set() and a.members[1].counters.expirations == 1


def _echo(a: LacpBond, port: int, view, now: float) -> Update:
    """The partner's PDU on ``port``, as last heard, with ``view`` as its view of us."""
    return a.receive_frame(port, encode_frame(HOST, Lacpdu(a.members[port].partner, view)), now)


def test_a_partner_echoing_our_previous_actor_info_is_accepted_until_it_echoes_the_new_one():
    lab, a, p = negotiated()
    old = {port: m.actor_info() for port, m in a.members.items()}
    a.reconfigure(dataclasses.replace(SETTINGS, port_priority=7), (1, 2), lab.now)
    new = {port: m.actor_info() for port, m in a.members.items()}
    # PDUs in flight, sent before the partner saw our change: still matched.
    assert _echo(a, 1, old[1], lab.now + 0.01).changes == []
    assert _echo(a, 2, old[2], lab.now + 0.01).changes == []
    assert a.members[1].partner_matched and distributing(a) == {1, 2}
    # Member 1's partner echoes the new info: from then on the old one is somebody else.
    assert _echo(a, 1, new[1], lab.now + 0.02).changes == []
    update = _echo(a, 1, old[1], lab.now + 0.03)
    assert not a.members[1].partner_matched and [(c.port, c.distributing) for c in update.changes] == [(1, False)]
    # Member 2's partner never echoes the new info: the old one is accepted for one timeout only.
    assert _echo(a, 2, old[2], lab.now + SHORT_TIMEOUT_TIME - 0.01).changes == []
    assert a.members[2].partner_matched
    _echo(a, 2, old[2], lab.now + SHORT_TIMEOUT_TIME)
    assert not a.members[2].partner_matched and 2 not in distributing(a)


def test_removing_a_member_sends_its_last_pdu_out_of_sync_and_leaves_the_others_alone():
    lab, a, p = negotiated()
    before, partner = a.members[2].actor_info(), a.members[2].partner
    update = a.reconfigure(SETTINGS, (1,), lab.now)
    [tx] = update.transmit
    assert tx.port == 2
    assert dataclasses.replace(tx.pdu.actor, state=before.state) == before  # same actor info ...
    assert tx.pdu.actor.state == before.state & ~_ATTACHED_BITS  # ... out of sync, neither collecting nor distributing
    assert tx.pdu.partner == partner
    assert [(c.port, c.collecting, c.distributing) for c in update.changes] == [(2, False, False)]
    assert a.ports == (1,) and 2 not in a.members
    del lab.wires[1]
    run_distributing(lab, a, 5.0, (1,))


def test_removing_a_link_down_member_sends_nothing():
    lab, a, p = negotiated()
    lab.set_carrier(lab.wires[1], False)
    del lab.wires[1]
    update = a.reconfigure(SETTINGS, (1,), lab.now)
    assert update.transmit == [] and update.changes == [] and update.session_changed
    assert distributing(a) == {1}


def test_an_added_member_negotiates_while_the_others_keep_distributing():
    lab, a, p = negotiated(ports=(1,), partner_ports=(1, 2))
    update = a.reconfigure(SETTINGS, (2, 1), lab.now)
    assert update.changes == [] and a.ports == (1, 2)
    assert not a.members[2].link_up  # until the caller says otherwise
    lab.connect((a, 2), (p, 2))
    run_distributing(lab, a, AGGREGATE_WAIT_TIME + 1.0, (1,))
    assert distributing(a) == {1, 2}


def test_a_reconfigure_that_changes_nothing_returns_nothing():
    lab, a, p = negotiated()
    assert a.reconfigure(dataclasses.replace(SETTINGS), [2, 1, 2], lab.now) == Update()


def test_a_new_key_is_a_new_bond():
    lab, a, p = negotiated()
    with pytest.raises(ValueError, match="key"):
        a.reconfigure(dataclasses.replace(SETTINGS, key=2, port_priority=1), (1, 2), lab.now)
    assert a.settings == SETTINGS and a.members[1].actor_info().port_priority == SETTINGS.port_priority
