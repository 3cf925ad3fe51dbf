"""The core in a cluster: a standby follows the partner without sending, takes over without a reset,
applies other instances' changes from the store, and loses a write race with StoreConflict."""

from __future__ import annotations

import pytest

from ryu_lag.lacp import LacpState, encode_frame
from ryu_lag.openflow import PacketOut
from ryu_lag.service import Effects, LagService
from ryu_lag.stores import StoreConflict
from ryu_lag.switching import bond_logical
from tests.unit.test_service import DPID, G, H1, H2, PARTNER_SYSTEM, Rig, fast_bond, port
from tests.unit.test_service_hitless import lacpdus, pipeline_msgs

LOCAL_MAC = "0a:00:00:00:00:fe"


class Pair(Rig):
    """Two instances on one store and one switch: ``service`` is the master, ``standby`` stands by.

    Every LACPDU the partner sends reaches both (the standby's connection asked for them);
    only the master's messages reach the switch and the partner.
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

    def to_switch(self, update) -> None:
        for tx in update.transmit:
            if self.wire_up.get(tx.port):
                frame = encode_frame(PARTNER_SYSTEM, tx.pdu)
                self.standby_sent += self.standby.packet_in(DPID, tx.port, frame, self.now).messages
                self.apply(self.service.packet_in(DPID, tx.port, frame, self.now))

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


def test_a_standby_keeps_its_engines_current_from_the_partner_and_saves_nothing(tmp_path):
    pair = negotiated_pair(tmp_path)
    assert not pair.standby.is_master(DPID) and pair.service.is_master(DPID)
    bond = pair.standby.switches[DPID].bonds["bond0"]
    assert bond.engine.distributing_count() == 2  # it heard the partner confirm the master's PDUs
    assert bond.group_id == G
    sessions = pair.store.load_sessions()
    pair.standby.save_sessions(pair.now, everything=True)
    assert pair.store.load_sessions() == sessions  # the master saves
    assert pair.standby.farewell().messages == []


def test_the_standby_takes_over_with_a_lacpdu_at_once_and_no_pipeline_change(tmp_path):
    pair = negotiated_pair(tmp_path)
    before = pair.switch.content()
    # The master dies; the standby, accepted as master, reads the switch and takes over.
    old, pair.service = pair.service, pair.standby
    pair.standby = LagService(pair.store)  # nobody else listening now
    effects = pair.service.take_over(DPID, pair.switch.observed(), pair.now)
    pair.events.clear()
    pair.apply(effects)
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
    assert old.is_master(DPID)  # (the dead one never knew)


def test_a_master_that_steps_down_stops_saving_and_saying_goodbye(tmp_path):
    pair = negotiated_pair(tmp_path)
    pair.service.step_down(DPID)
    assert not pair.service.is_master(DPID)
    assert pair.service.farewell().messages == []
    sessions = pair.store.load_sessions()
    pair.run(2.0)  # its engines carry on
    pair.service.save_sessions(pair.now, everything=True)
    assert pair.store.load_sessions() == sessions
    assert pair.service.switches[DPID].bonds["bond0"].engine.distributing_count() == 2


def test_changes_through_another_instance_are_applied_and_our_own_come_back_as_nothing(tmp_path):
    pair = negotiated_pair(tmp_path)
    changed = fast_bond(ports=(1, 2, 4))
    effects = pair.service.put_bond(changed, pair.now)  # through the master
    pair.apply(effects)
    feed = pair.store.poll_changes()
    assert [c.config for c in feed] == [changed]
    assert pair.service.apply_changes(feed, pair.now).messages == []  # our own write: already applied
    applied = pair.standby.apply_changes(feed, pair.now)
    assert pair.standby.configs[DPID]["bond0"] == changed
    assert set(pair.standby.switches[DPID].bonds["bond0"].engine.members) == {1, 2, 4}
    assert applied.messages  # what it would send as master: a diff of the bond
    assert pair.standby.revisions[DPID] == pair.service.revisions[DPID]
    pair.service.delete_bond(DPID, "bond0")
    pair.standby.apply_changes(pair.store.poll_changes(), pair.now)
    assert pair.standby.configs[DPID] == {} and pair.standby.switches[DPID].bonds == {}


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
