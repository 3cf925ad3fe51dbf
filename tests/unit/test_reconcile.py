"""Resuming a switch: ``LagSwitch.resume`` against a fake switch that already holds things.

A switch that reconnects keeps forwarding with what it has; resume reads that back (an
``ObservedSwitch``) and sends only what differs from the desired state. Other
applications' groups, meters and flows are never touched. Also: in-place member changes
of a live bond (``set_members``, ``release``).
"""

from __future__ import annotations

import random

import pytest

from ryu_lag.openflow import (
    OFPG_ALL,
    OFPM_ALL,
    FlowCommand,
    FlowMod,
    Group,
    GroupCommand,
    GroupMod,
    GroupType,
    Match,
    Message,
    MeterCommand,
    MeterMod,
    ObservedSwitch,
    Table,
)
from ryu_lag.switching import (
    BOND_GROUP_MAX,
    BOND_GROUP_MIN,
    COOKIE,
    FLOOD_ALL,
    FLOOD_PLAIN,
    Bond,
    LagSwitch,
    bond_logical,
    flood_from,
    is_our_group,
    is_our_meter,
    lacp_meter,
    learn_meter,
)

from tests.unit.fakeoftable import FakeOFTable
from tests.unit.switch_rig import SwitchRig

MAC_AGE = 300
ALL_BITS = (1 << 64) - 1
LEARNED_COOKIE = COOKIE | 1 << 39  # | logical port: how learned flows are told apart
H1, H3, H4, H5, H7 = "02:00:00:00:00:01", "02:00:00:00:00:03", "02:00:00:00:00:04", "02:00:00:00:00:05", "02:00:00:00:00:07"
PORTS = (1, 2, 3, 4, 5, 6)
B1 = BOND_GROUP_MIN
B2 = BOND_GROUP_MIN + 1
STALE_GROUP = BOND_GROUP_MIN + 5
BOTH = frozenset({1, 2})

FOREIGN_GROUP = GroupMod(GroupCommand.ADD, 1, (4, 5), GroupType.ALL)
FOREIGN_METER = MeterMod(1, 1000, 100)
FOREIGN_FLOW = FlowMod(Table.INGRESS, 5, Match(in_port=6, eth_dst=H7), actions=(Group(1),), cookie=0x1234)


class Switch(SwitchRig):
    """A LagSwitch and the fake switch it drives, with a controller loop for punts and removals."""

    def __init__(self, table: FakeOFTable | None = None) -> None:
        self.lag = LagSwitch(mac_age=MAC_AGE)
        self.table = table if table is not None else FakeOFTable(live_ports=PORTS)

    def resume(self, bonds: list[Bond], ports=PORTS, meters: bool = True) -> list[Message]:
        """A new LagSwitch (a restarted controller) resumes over what the fake switch holds; applied."""
        self.lag = LagSwitch(mac_age=MAC_AGE)
        return self.apply(self.lag.resume(ports, meters, bonds, self.table.observed()))


def installed(bonds: list[Bond], ports=PORTS, meters: bool = True) -> Switch:
    """A switch that got our whole pipeline on an empty table."""
    switch = Switch()
    switch.apply(switch.lag.resume(ports, meters, bonds, ObservedSwitch()))
    return switch


def one_bond(distributing: frozenset[int] = BOTH) -> list[Bond]:
    return [Bond(B1, BOTH, BOTH, distributing)]


def with_foreign(switch: Switch) -> Switch:
    switch.table.apply([FOREIGN_GROUP, FOREIGN_METER, FOREIGN_FLOW])
    return switch


# -- resume over what the switch has ----------------------------------------------------


def test_resume_fixes_exactly_the_stale_entries_and_keeps_learned_macs():
    before = with_foreign(installed(one_bond()))
    before.send(1, H1)
    before.send(3, H3)
    stale_group = GroupMod(GroupCommand.ADD, STALE_GROUP, (6,))
    # a learned destination on a bond that no longer exists, without its source flow
    stale_flow = FlowMod(Table.ETH_DST, 20000, Match(eth_dst=H7), actions=(Group(STALE_GROUP),),
                         cookie=LEARNED_COOKIE | bond_logical(STALE_GROUP))
    before.table.apply([stale_group, stale_flow])

    msgs = before.resume(one_bond())

    assert msgs == [
        FlowMod(Table.ETH_DST, 20000, Match(eth_dst=H7), FlowCommand.DELETE_STRICT,
                cookie=LEARNED_COOKIE | bond_logical(STALE_GROUP), cookie_mask=ALL_BITS),
        GroupMod(GroupCommand.DELETE, STALE_GROUP, group_type=GroupType.SELECT),
    ]
    expected = with_foreign(installed(one_bond()))
    expected.send(1, H1)
    expected.send(3, H3)
    assert before.table.content() == expected.table.content()
    assert before.lag.macs() == {H1: bond_logical(B1), H3: 3}
    assert before.send(4, H4, H3).outputs == {3}
    assert before.send(4, H4, H1).outputs in ({1}, {2})
    assert before.send(3, H3, H1).controller is False  # H3's source flow kept: no punt


def test_resume_over_a_correct_switch_sends_nothing_and_twice_in_a_row_neither():
    switch = with_foreign(installed(one_bond()))
    switch.send(1, H1)
    switch.send(3, H3)
    content = switch.table.content()
    assert switch.resume(one_bond()) == []
    assert switch.resume(one_bond()) == []
    assert switch.table.content() == content


def test_distributing_set_changed_while_away_is_one_group_modify():
    switch = installed(one_bond(distributing=BOTH))
    switch.send(1, H1)
    assert switch.resume(one_bond(distributing=frozenset({1}))) == [GroupMod(GroupCommand.MODIFY, B1, (1,))]
    assert all(switch.send(3, f"02:00:00:00:10:{i:02x}", H1).outputs == {1} for i in range(16))


def test_a_missing_learned_destination_or_hairpin_flow_is_added_alone():
    switch = installed(one_bond())
    switch.send(1, H1)
    switch.send(3, H3)
    dst = next(e.mod for e in switch.table.table(Table.ETH_DST) if e.match == Match(eth_dst=H3))
    hairpin = next(e.mod for e in switch.table.table(Table.ETH_DST)
                   if e.match == Match(metadata=bond_logical(B1), eth_dst=H1))
    switch.table.apply([FlowMod(t.table, t.priority, t.match, FlowCommand.DELETE_STRICT) for t in (dst, hairpin)])
    assert switch.resume(one_bond()) == [dst, hairpin]
    assert switch.send(4, H4, H3).outputs == {3}
    assert switch.send(2, H4, H1).outputs == set()  # a frame for H1 from its own bond goes nowhere


def test_macs_of_logical_ports_that_are_gone_are_forgotten_with_their_flows():
    switch = installed(one_bond())
    switch.send(1, H1)
    switch.send(3, H3)
    switch.send(4, H4)
    # port 3 is now a member of a new bond, port 4 is gone, bond B1 is gone
    msgs = switch.resume([Bond(B2, frozenset({3}))], ports=(1, 2, 3, 5, 6))
    assert switch.lag.macs() == {}
    deleted = {(m.table, m.match) for m in msgs if isinstance(m, FlowMod) and m.command is FlowCommand.DELETE_STRICT}
    assert {(Table.ETH_SRC, Match(metadata=3, eth_src=H3)), (Table.ETH_DST, Match(eth_dst=H3)),
            (Table.ETH_SRC, Match(metadata=4, eth_src=H4)), (Table.ETH_DST, Match(eth_dst=H4)),
            (Table.ETH_SRC, Match(metadata=bond_logical(B1), eth_src=H1)),
            (Table.ETH_DST, Match(eth_dst=H1)), (Table.ETH_DST, Match(metadata=bond_logical(B1), eth_dst=H1))} <= deleted
    assert not [e for e in switch.table.flows if e.cookie & LEARNED_COOKIE == LEARNED_COOKIE]
    assert set(switch.table.groups) == {B2, flood_from(B2), FLOOD_PLAIN, FLOOD_ALL}
    assert set(switch.table.meters) == {lacp_meter(3), learn_meter(bond_logical(B2)), *map(learn_meter, (1, 2, 5, 6))}
    assert switch.send(5, H5, H1).outputs == {1, 2, 6}  # flooded, B2 does not distribute


def test_resume_without_meters_deletes_ours_only():
    switch = with_foreign(installed(one_bond(), meters=True))
    msgs = switch.resume(one_bond(), meters=False)
    meter_msgs = [m for m in msgs if isinstance(m, MeterMod)]
    ours = sorted([lacp_meter(1), lacp_meter(2), learn_meter(bond_logical(B1)), *map(learn_meter, (3, 4, 5, 6))])
    assert meter_msgs == [MeterMod(m, command=MeterCommand.DELETE) for m in ours]
    assert msgs.index(meter_msgs[0]) > max(i for i, m in enumerate(msgs) if isinstance(m, FlowMod))
    assert switch.table.meters == {1: FOREIGN_METER}
    assert switch.lacpdu(1).controller and switch.lacpdu(1).meter is None


def test_a_meter_at_the_wrong_rate_is_modified_in_place():
    switch = installed(one_bond())
    switch.lag = LagSwitch(mac_age=MAC_AGE, lacp_meter_pps=7)
    msgs = switch.apply(switch.lag.resume(PORTS, True, one_bond(), switch.table.observed()))
    assert msgs == [MeterMod(lacp_meter(p), 7, 7, MeterCommand.MODIFY) for p in (1, 2)]
    assert switch.lacpdu(1).meter == lacp_meter(1)


def test_cold_start_touches_nothing_of_other_applications():
    switch = with_foreign(installed(one_bond()))
    switch.send(1, H1)
    switch.table.apply([GroupMod(GroupCommand.ADD, STALE_GROUP, (6,))])
    switch.lag = LagSwitch(mac_age=MAC_AGE)
    msgs = switch.apply(switch.lag.resume(PORTS, True, one_bond(), None))
    assert not [m for m in msgs if isinstance(m, GroupMod) and not is_our_group(m.group_id)]
    assert not [m for m in msgs if isinstance(m, MeterMod) and not is_our_meter(m.meter_id)]
    assert OFPG_ALL not in {m.group_id for m in msgs if isinstance(m, GroupMod)}
    assert OFPM_ALL not in {m.meter_id for m in msgs if isinstance(m, MeterMod)}
    fresh = with_foreign(installed(one_bond()))
    fresh.table.apply([GroupMod(GroupCommand.ADD, STALE_GROUP, (6,))])  # left for a resume that can read
    assert switch.table.content() == fresh.table.content()
    assert switch.lag.macs() == {}


def test_resume_refuses_inconsistent_bonds_and_keeps_its_state():
    switch = installed(one_bond())
    switch.send(3, H3)
    for bonds in (
        [Bond(B1, BOTH), Bond(B2, frozenset({2, 3}))],  # a port in two bonds
        [Bond(B1, BOTH), Bond(B1, frozenset({3}))],  # one group id twice
        [Bond(B1, BOTH, distributing=frozenset({3}))],  # distributing but no member
        [Bond(BOND_GROUP_MAX + 1, BOTH)],  # not a bond's group id
        [Bond(B1, frozenset())],
    ):
        with pytest.raises(ValueError):
            switch.lag.resume(PORTS, True, bonds, switch.table.observed())
    assert switch.lag.macs() == {H3: 3} and switch.lag.bonds() == {B1: one_bond()[0]}


def _static(switch: Switch) -> tuple:
    return ({e.mod for e in switch.table.flows if e.cookie == COOKIE}, switch.table.content().groups,
            switch.table.content().meters)


def _random_config(rng: random.Random) -> tuple[tuple[int, ...], list[Bond], bool]:
    ports = tuple(p for p in range(1, 11) if rng.random() < 0.8)
    free = list(range(1, 11))
    rng.shuffle(free)
    bonds = []
    for n in range(rng.randint(0, 3)):
        members = frozenset(free.pop() for _ in range(min(len(free), rng.randint(1, 3))))
        if members:
            collecting = frozenset(p for p in members if rng.random() < 0.7)
            bonds.append(Bond(B1 + rng.randint(0, 9) * 3 + n, members, collecting,
                              frozenset(p for p in collecting if rng.random() < 0.7)))
    return ports, bonds, rng.random() < 0.7


@pytest.mark.parametrize("seed", range(8))
def test_resume_from_any_state_ends_where_a_fresh_install_would_and_then_rests(seed):
    rng = random.Random(seed)
    ports, bonds, meters = _random_config(rng)
    switch = with_foreign(installed(bonds, ports, meters))
    switch.table.live_ports = set(range(1, 11))
    for _ in range(12):
        switch.send(rng.randint(1, 10), f"02:00:00:00:20:{rng.randint(0, 7):02x}")
    ports, bonds, meters = _random_config(rng)
    switch.resume(bonds, ports, meters)
    fresh = with_foreign(installed(bonds, ports, meters))
    assert _static(switch) == _static(fresh)
    learned_src = {(e.match.metadata, e.match.eth_src) for e in switch.table.table(Table.ETH_SRC) if e.match.eth_src}
    assert learned_src == {(logical, mac) for mac, logical in switch.lag.macs().items()}
    assert switch.resume(bonds, ports, meters) == []


# -- in-place member changes ------------------------------------------------------------


@pytest.fixture
def live() -> Switch:
    """Bond B1 = ports 1, 2 (both collecting and distributing), plain ports 3..6, H1 learned on B1, H3 on 3."""
    switch = installed(one_bond())
    switch.send(1, H1)
    switch.send(3, H3)
    return switch


def test_set_members_moves_a_port_out_and_one_in_with_one_edit_of_the_bond_group(live):
    flows_of_2 = {e.mod for e in live.table.flows if e.match.in_port == 2}
    msgs = live.apply(live.lag.set_members(B1, [2, 3]))
    group_msgs = [m for m in msgs if isinstance(m, GroupMod)]
    assert group_msgs == [GroupMod(GroupCommand.MODIFY, FLOOD_PLAIN, (4, 5, 6), GroupType.ALL),
                          GroupMod(GroupCommand.MODIFY, B1, (2,))]
    assert {e.mod for e in live.table.flows if e.match.in_port == 2} == flows_of_2  # the staying member
    assert live.lag.leaving_ports() == {1} and live.lag.logical_port(3) == bond_logical(B1)
    assert live.lag.macs() == {H1: bond_logical(B1)}  # H3 was learned on 3 as a plain port

    # the leaving port: LACP still punted (through its meter), all else dropped and not learned
    assert live.lacpdu(1).controller and live.lacpdu(1).meter == lacp_meter(1)
    assert live.send(1, H5).dropped and H5 not in live.lag.macs()
    # the new member: LACP punted, data dropped until it collects; in no flood
    assert live.lacpdu(3).controller and live.lacpdu(3).meter == lacp_meter(3)
    assert live.send(3, H5).dropped
    assert live.send(4, H4).outputs == {2, 5, 6}
    live.apply(live.lag.set_member(B1, 3, collecting=True, distributing=True))
    assert live.send(3, H5).outputs == {4, 5, 6} and live.lag.macs()[H5] == bond_logical(B1)
    assert live.send(4, H4).outputs in ({2, 5, 6}, {3, 5, 6})


def test_release_makes_a_leaving_port_plain_as_if_never_a_member(live):
    live.apply(live.lag.set_members(B1, [2]))
    msgs = live.apply(live.lag.release(1))
    assert MeterMod(lacp_meter(1), command=MeterCommand.DELETE) == msgs[-1]  # once no flow uses it
    assert live.lag.leaving_ports() == frozenset() and live.lag.plain_ports() == {1, 3, 4, 5, 6}
    assert live.lacpdu(1).dropped
    assert live.send(1, H5).outputs == {2, 3, 4, 5, 6} and live.lag.macs()[H5] == 1
    assert live.lag.release(1) == [] and live.lag.release(3) == []
    fresh = installed([Bond(B1, frozenset({2}), frozenset({2}), frozenset({2}))])
    assert _static(live) == _static(fresh)


def test_same_members_is_nothing_and_the_last_distributing_member_leaving_edits_the_floods(live):
    assert live.lag.set_members(B1, [1, 2]) == []
    live.apply(live.lag.set_member(B1, 2, collecting=True, distributing=False))
    msgs = live.apply(live.lag.set_members(B1, [2]))
    assert {m.group_id for m in msgs if isinstance(m, GroupMod)} == {B1, FLOOD_ALL}  # its own flood_from chains others
    assert not [m for m in msgs if isinstance(m, FlowMod) and m.match.in_port == 2]
    assert live.send(4, H4).outputs == {3, 5, 6}


def test_set_members_validates_and_leaves_state_alone(live):
    live.apply(live.lag.add_bond(B2, [5]))
    before = (live.lag.bonds(), live.lag.plain_ports(), live.lag.leaving_ports())
    for members in ([1, 5], [], [1, 0x10000]):
        with pytest.raises(ValueError):
            live.lag.set_members(B1, members)
    with pytest.raises(ValueError):
        live.lag.set_members(B2 + 1, [6])
    assert (live.lag.bonds(), live.lag.plain_ports(), live.lag.leaving_ports()) == before


def test_a_leaving_port_stays_leaving_across_port_events_and_can_join_a_bond(live):
    live.apply(live.lag.set_members(B1, [2]))
    live.apply(live.lag.port_removed(1))
    assert live.lag.port_removed(1) == [] and live.lag.port_added(1) == []
    live.apply(live.lag.port_added(1))
    assert live.lag.leaving_ports() == {1} and live.lacpdu(1).controller and live.send(1, H5).dropped
    live.apply(live.lag.add_bond(B2, [1]))
    assert live.lag.leaving_ports() == frozenset() and live.lag.logical_port(1) == bond_logical(B2)
    assert live.lag.release(1) == []


def test_a_removed_port_that_is_absent_is_cleaned_up_on_release(live):
    live.apply(live.lag.set_members(B1, [2]))
    live.apply(live.lag.port_removed(1))
    live.apply(live.lag.release(1))
    assert not [e for e in live.table.flows if e.match.in_port == 1]
    assert lacp_meter(1) not in live.table.meters and 1 not in live.lag.plain_ports()
    assert live.lag.port_added(1) != [] and live.lag.plain_ports() >= {1}


def test_a_port_leaving_when_the_switch_reconnects_stays_leaving(live):
    live.apply(live.lag.set_members(B1, [2]))
    live.send(1, H5)
    content = live.table.content()
    bond = Bond(B1, frozenset({2}), frozenset({2}), frozenset({2}))
    live.lag = LagSwitch(mac_age=MAC_AGE)
    assert live.lag.resume(PORTS, True, [bond], live.table.observed(), leaving=[1]) == []
    assert live.table.content() == content and live.lag.leaving_ports() == {1}
    assert live.lacpdu(1).controller and live.send(1, H5).dropped
    live.apply(live.lag.release(1))
    assert live.send(1, H5).outputs == {2, 3, 4, 5, 6}
    with pytest.raises(ValueError, match="leaving"):
        live.lag.resume(PORTS, True, [bond], None, leaving=[2])


def test_foreign_entries_survive_member_changes(live):
    with_foreign(live)
    live.apply(live.lag.set_members(B1, [2, 3]))
    live.apply(live.lag.release(1))
    assert live.table.groups[1].ports == (4, 5) and live.table.meters[1] == FOREIGN_METER
    assert sum(e.mod == FOREIGN_FLOW for e in live.table.flows) == 1
