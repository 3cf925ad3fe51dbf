"""Hitless operation of the core: a restart or reconnect resumes, a PUT is a diff, a removed member leaves cleanly."""

from __future__ import annotations

from ryu_lag.config import BondConfig
from ryu_lag.lacp import LacpState, decode_frame
from ryu_lag.openflow import FlowMod, GroupCommand, GroupMod, MeterMod, PacketOut
from ryu_lag.service import LEAVE_TIMEOUT, LagService, SavedBond
from ryu_lag.store import BondStore
from ryu_lag.switching import bond_logical
from tests.unit.test_service import DPID, H1, H2, G, Rig, fast_bond, port

PIPELINE = (FlowMod, GroupMod, MeterMod)


def negotiated(tmp_path, **bond: object) -> Rig:
    rig = Rig(tmp_path)
    rig.apply(rig.service.put_bond(BondConfig.from_dict(DPID, {"name": "bond0", "ports": [1, 2], "rate": "fast", **bond}, key=1), rig.now))
    rig.connect()
    rig.run(4.0)
    rig.learn(1, H1)
    rig.learn(3, H2)
    assert rig.switch.select_groups() == {G: (1, 2)}
    return rig


def pipeline_msgs(effects) -> list:
    return [m for _, m in effects.messages if isinstance(m, PIPELINE)]


def lacpdus(effects) -> dict[int, object]:
    return {m.port: decode_frame(m.data)[1] for _, m in effects.messages if isinstance(m, PacketOut)}


def reconnect(rig: Rig):
    """The switch connects again, reporting what it has; returns the service's effects."""
    effects = rig.service.switch_connected(
        DPID, [port(n) for n in rig.ports], "0a:00:00:00:00:fe", True, rig.now, observed=rig.switch.observed()
    )
    rig.apply(effects)
    return effects


def test_restart_resumes_the_switch_and_the_lacp_sessions_without_touching_either(tmp_path):
    rig = negotiated(tmp_path)
    before = rig.switch.content()
    rig.apply(rig.service.save_sessions(rig.now, everything=True))
    rig.store.close()  # the process is gone; the switch and the partner carry on
    rig.store = BondStore(str(tmp_path / "state.sqlite3"))
    rig.service = LagService(rig.store)
    rig.events.clear()
    effects = reconnect(rig)
    assert pipeline_msgs(effects) == []  # nothing reset, nothing re-added
    sent = lacpdus(effects)
    assert set(sent) == {1, 2}  # a LACPDU at once on each member, with the state it had
    assert all(pdu.actor.state & LacpState.DISTRIBUTING for pdu in sent.values())
    assert rig.switch.content() == before
    assert rig.service.switches[DPID].switch.macs() == {H1: bond_logical(G), H2: 3}
    rig.run(10.0)  # the partner confirms: nobody stops distributing
    assert not [e for e in rig.events if not e.enabled]
    assert rig.switch.select_groups() == {G: (1, 2)}
    assert rig.switch.forward(3, H2, H1).outputs in ({1}, {2})


def test_reconnect_resumes_from_the_sessions_kept_in_memory(tmp_path):
    rig = negotiated(tmp_path)
    before = rig.switch.content()
    rig.apply(rig.service.switch_disconnected(DPID))
    rig.run(0.5)
    effects = reconnect(rig)
    assert pipeline_msgs(effects) == []
    assert rig.switch.content() == before
    rig.run(5.0)
    assert rig.bond().engine.distributing_count() == 2


def test_a_switch_that_changed_while_away_gets_only_the_difference(tmp_path):
    rig = negotiated(tmp_path)
    rig.apply(rig.service.switch_disconnected(DPID))
    rig.switch.apply([GroupMod(GroupCommand.MODIFY, G, (1,))])  # someone edited our group meanwhile
    effects = reconnect(rig)
    msgs = pipeline_msgs(effects)
    assert len(msgs) == 1 and isinstance(msgs[0], GroupMod) and msgs[0].group_id == G and msgs[0].ports == (1, 2)


def test_sessions_are_saved_when_they_change_not_per_lacpdu(tmp_path):
    rig = negotiated(tmp_path)
    rig.apply(rig.service.save_sessions(rig.now))
    saved = rig.store.load_sessions()[(DPID, "bond0")]
    assert SavedBond.from_dict(saved).group_id == G
    assert {s.mux.value for s in SavedBond.from_dict(saved).members.values()} == {"distributing"}
    writes = []
    rig.store.put_sessions = lambda rows: writes.append(list(rows))  # type: ignore[method-assign]
    for _ in range(50):  # steady state: LACPDUs both ways, nothing changes
        rig.run(0.1)
        rig.apply(rig.service.save_sessions(rig.now))
    assert writes == []
    rig.wire_up[2] = False
    rig.run(4.0)  # member 2 expires: its session changed
    rig.apply(rig.service.save_sessions(rig.now))
    assert [[row[:2] for row in rows] for rows in writes] == [[(DPID, "bond0")]]


def test_put_of_rate_mode_or_min_links_sends_no_pipeline_change_and_keeps_members_distributing(tmp_path):
    # Priorities change in place too, but the partner here is our own engine, which follows
    # 802.1AX to the letter: a new partner port priority re-selects its member (Open vSwitch
    # does not; tests/integration/test_hitless.py changes port_priority against it).
    rig = negotiated(tmp_path)
    for change in ({"rate": "slow"}, {"min_links": 2}, {"mode": "passive"}):
        rig.events.clear()
        effects = rig.service.put_bond(
            BondConfig.from_dict(DPID, {"name": "bond0", "ports": [1, 2], "rate": "fast", **change}, key=1), rig.now
        )
        rig.apply(effects)
        assert pipeline_msgs(effects) == []
        assert set(lacpdus(effects)) == {1, 2}  # the change goes out at once
        rig.run(5.0)
        assert not [e for e in rig.events if not e.enabled], change
        assert rig.switch.select_groups() == {G: (1, 2)}


def test_the_same_put_again_sends_nothing(tmp_path):
    rig = negotiated(tmp_path)
    effects = rig.service.put_bond(fast_bond(), rig.now)
    assert effects.messages == [] and effects.member_events == []


def test_a_removed_member_leaves_at_once_and_is_plain_once_the_partner_let_go(tmp_path):
    rig = negotiated(tmp_path)
    effects = rig.service.put_bond(fast_bond(ports=(1,)), rig.now)
    assert rig.switch.select_groups() == {G: (1, 2)}
    rig.switch.apply(m for _, m in effects.messages if not isinstance(m, PacketOut))
    assert rig.switch.select_groups() == {G: (1,)}  # one group edit: member 2 is out
    last = lacpdus(effects)[2]
    assert not last.actor.state & (LacpState.SYNCHRONIZATION | LacpState.COLLECTING | LacpState.DISTRIBUTING)
    assert rig.switch.forward(2, "02:00:00:00:09:09", H2).dropped  # dropped, not learned
    assert 2 in rig.service.switches[DPID].leaving
    rig.apply(effects)  # the last LACPDU reaches the partner, which answers with our Sync off
    rig.run(1.5)
    assert 2 not in rig.service.switches[DPID].leaving
    assert rig.service.switches[DPID].switch.logical_port(2) == 2  # a plain port now
    assert rig.switch.select_groups() == {G: (1,)} and rig.bond().engine.distributing_count() == 1


def test_a_leaving_port_whose_partner_never_answers_is_released_after_the_timeout(tmp_path):
    rig = negotiated(tmp_path)
    rig.wire_up[2] = False
    rig.apply(rig.service.put_bond(fast_bond(ports=(1,)), rig.now))
    rig.run(LEAVE_TIMEOUT - 0.2)
    assert 2 in rig.service.switches[DPID].leaving
    rig.run(0.4)
    assert 2 not in rig.service.switches[DPID].leaving
    assert rig.service.switches[DPID].switch.logical_port(2) == 2


def test_a_member_removed_and_added_back_negotiates_while_the_other_keeps_distributing(tmp_path):
    rig = negotiated(tmp_path)
    rig.events.clear()
    rig.apply(rig.service.put_bond(fast_bond(ports=(1,)), rig.now))
    rig.run(0.5)
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.run(5.0)
    assert [e for e in rig.events if e.port == 1] == []  # member 1 never stopped
    assert rig.switch.select_groups() == {G: (1, 2)}


def test_farewell_sends_one_lacpdu_per_distributing_member(tmp_path):
    rig = negotiated(tmp_path)
    sent = lacpdus(rig.service.farewell())
    assert set(sent) == {1, 2}
    assert all(pdu.actor.state & LacpState.DISTRIBUTING for pdu in sent.values())
