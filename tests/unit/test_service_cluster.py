"""The core in a cluster: a standby runs nothing and sends nothing, takes over from the sessions
the master saved without a reset, applies other instances' changes from the store, and loses a
write race with StoreConflict."""

from __future__ import annotations

import pytest

from ryu_lag.lacp import LacpState
from ryu_lag.openflow import PacketOut
from ryu_lag.service import Effects, LagService
from ryu_lag.stores import StoreConflict
from ryu_lag.switching import bond_logical
from tests.unit.test_service import DPID, G, H1, H2, Rig, fast_bond, port
from tests.unit.test_service_hitless import lacpdus, pipeline_msgs

LOCAL_MAC = "0a:00:00:00:00:fe"


class Pair(Rig):
    """Two instances on one store and one switch: ``service`` is the master, ``standby`` stands by.

    Only the master's messages reach the switch and the partner, and only the master gets
    packet-ins (the standby's connection asked for port status only); ``standby_sent``
    collects what the standby would have sent.
    """

    def __init__(self, tmp_path) -> None:
        super().__init__(tmp_path)
        self.standby = LagService(self.store)
        self.standby_sent: list = []

    def connect(self) -> None:
        ports = [port(n) for n in self.ports]
        self.apply(self.service.switch_connected(DPID, ports, LOCAL_MAC, True, self.now))
        self.standby_sent += self.standby.switch_connected(DPID, ports, LOCAL_MAC, True, self.now,
                                                           observed=self.switch.observed(), master=False).messages
        for p in (1, 2):
            self.to_switch(self.partner.set_link(p, True, self.now))


    def run(self, seconds: float, step: float = 0.05) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + step, 6)
            self.standby_sent += self.standby.tick(self.now).messages
            self.apply(self.service.tick(self.now))
            self.to_switch(self.partner.tick(self.now))


def negotiated_pair(tmp_path) -> Pair:
    pair = Pair(tmp_path)
    pair.apply(pair.service.put_bond(fast_bond(), pair.now))
    pair.standby.apply_changes(pair.store.poll_changes(), pair.now)
    pair.connect()
    pair.run(4.0)
    pair.learn(1, H1)
    pair.learn(3, H2)
    assert pair.switch.select_groups() == {G: (1, 2)}
    return pair


def test_a_standby_runs_no_bond_and_sends_nothing(tmp_path):
    pair = negotiated_pair(tmp_path)
    assert not pair.standby.is_master(DPID) and pair.service.is_master(DPID)
    assert pair.standby_sent == []
    assert pair.standby.switches[DPID].bonds == {}
    assert pair.standby.next_deadline() == float("inf")  # no timers: a standby costs nothing per member
    pair.standby.apply_changes(pair.store.poll_changes(), pair.now)
    changed = fast_bond(ports=(1, 2, 4))
    pair.standby.put_bond(changed, pair.now)  # a write through the standby: stored, applied by the master
    assert pair.standby.switches[DPID].bonds == {}
    pair.apply(pair.service.apply_changes(pair.store.poll_changes(), pair.now))
    assert set(pair.service.switches[DPID].bonds["bond0"].engine.members) == {1, 2, 4}
    sessions = pair.store.load_sessions()
    pair.standby.save_sessions(pair.now, everything=True)
    assert pair.store.load_sessions() == sessions  # the master saves
    assert pair.standby.farewell().messages == []


def take_over(pair: Pair) -> Effects:
    """The master dies; the standby, accepted as master, reads the sessions and the switch, and takes over."""
    pair.apply(pair.service.save_sessions(pair.now))  # what the master's saver thread did at the last change
    sessions = {name: data for (dpid, name), data in pair.store.load_sessions().items() if dpid == DPID}
    pair.service, pair.standby = pair.standby, LagService(pair.store)
    effects = pair.service.take_over(DPID, pair.switch.observed(), sessions, pair.now)
    pair.events.clear()
    pair.apply(effects)
    return effects


def test_the_standby_takes_over_from_the_saved_sessions_with_a_lacpdu_at_once_and_no_pipeline_change(tmp_path):
    pair = negotiated_pair(tmp_path)
    before = pair.switch.content()
    effects = take_over(pair)
    assert pair.service.is_master(DPID)
    assert pipeline_msgs(effects) == []  # the old master's pipeline is ours: learned MACs included
    assert pair.switch.content() == before
    sent = lacpdus(effects)
    assert set(sent) == {1, 2}
    assert all(pdu.actor.state & LacpState.DISTRIBUTING for pdu in sent.values())
    assert pair.service.switches[DPID].switch.macs() == {H1: bond_logical(G), H2: 3}
    pair.run(10.0)
    assert not [e for e in pair.events if not e.enabled]  # nobody stopped distributing
    assert pair.switch.select_groups() == {G: (1, 2)}


def test_a_takeover_without_saved_sessions_negotiates_afresh(tmp_path):
    pair = negotiated_pair(tmp_path)
    pair.service, pair.standby = pair.standby, LagService(pair.store)
    effects = pair.service.take_over(DPID, pair.switch.observed(), {}, pair.now)
    pair.apply(effects)
    sent = lacpdus(effects)
    assert not any(pdu.actor.state & LacpState.SYNCHRONIZATION for pdu in sent.values())  # nothing to resume
    pair.run(6.0)
    assert pair.switch.select_groups() == {G: (1, 2)}  # negotiated again


def test_a_master_that_steps_down_stops_its_bonds_and_saying_goodbye(tmp_path):
    pair = negotiated_pair(tmp_path)
    pair.apply(pair.service.save_sessions(pair.now))
    sessions = pair.store.load_sessions()
    pair.service.step_down(DPID)
    assert not pair.service.is_master(DPID)
    assert pair.service.switches[DPID].bonds == {}
    assert pair.service.tick(pair.now + 5.0).messages == []  # its engines' timers lapse
    assert pair.service.farewell().messages == []
    pair.service.save_sessions(pair.now, everything=True)
    assert pair.store.load_sessions() == sessions  # the new master's to save now


def test_changes_through_another_instance_are_applied_and_our_own_come_back_as_nothing(tmp_path):
    pair = negotiated_pair(tmp_path)
    changed = fast_bond(ports=(1, 2, 4))
    pair.standby.apply_changes(pair.store.poll_changes(), pair.now)
    pair.standby.put_bond(changed, pair.now)  # through the standby
    feed = pair.store.poll_changes()
    assert [c.config for c in feed] == [changed]
    assert pair.standby.apply_changes(feed, pair.now).messages == []  # its own write: already applied
    applied = pair.service.apply_changes(feed, pair.now)  # the master applies it
    pair.apply(applied)
    assert pair.service.configs[DPID]["bond0"] == changed
    assert set(pair.service.switches[DPID].bonds["bond0"].engine.members) == {1, 2, 4}
    assert pipeline_msgs(applied)  # a diff of the bond on the switch
    assert pair.standby.revisions[DPID] == pair.service.revisions[DPID]
    pair.service.delete_bond(DPID, "bond0")
    pair.standby.apply_changes(pair.store.poll_changes(), pair.now)
    assert pair.standby.configs[DPID] == {}


def test_a_write_from_a_stale_view_loses_and_changes_nothing(tmp_path):
    pair = negotiated_pair(tmp_path)
    pair.apply(pair.service.put_bond(fast_bond(ports=(1, 2, 4)), pair.now))
    stored = pair.store.load_all()
    # The standby has not seen that change yet: its write is based on an older revision.
    with pytest.raises(StoreConflict):
        pair.standby.put_bond(fast_bond(ports=(1, 2, 3)), pair.now)
    with pytest.raises(StoreConflict):
        pair.standby.delete_bond(DPID, "bond0")
    assert pair.store.load_all() == stored
    assert pair.standby.configs[DPID]["bond0"] == fast_bond()  # its view: only the feed changes it
    pair.standby.apply_changes(pair.store.poll_changes(), pair.now)
    pair.standby.put_bond(fast_bond(ports=(1, 2, 3)), pair.now)  # from the current view it wins
    assert pair.store.load_all() == [fast_bond(ports=(1, 2, 3))]


def test_a_stored_change_that_conflicts_here_is_reported_not_applied(tmp_path):
    pair = negotiated_pair(tmp_path)
    pair.store.put_bond(fast_bond("other", ports=(2, 3), key=2))  # a writer that skipped the checks
    effects: Effects = pair.service.apply_changes(pair.store.poll_changes(), pair.now)
    assert effects.errors and "port 2 is already in bond 'bond0'" in effects.errors[0]
    assert set(pair.service.configs[DPID]) == {"bond0"}
    assert not [m for _, m in effects.messages if not isinstance(m, PacketOut)]
