"""The fake OpenFlow switch itself: the semantics the switching tests rely on."""

from __future__ import annotations

import pytest

from ryu_lag.openflow import (
    OFPG_ALL,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    FlowCommand,
    FlowMod,
    Group,
    GroupCommand,
    GroupMod,
    GroupType,
    Match,
    MeterCommand,
    MeterMod,
    ObservedSwitch,
    Output,
    Table,
)
from ryu_lag.switching import COOKIE

from tests.unit.fakeoftable import FakeOFError, FakeOFTable

A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"


def to_dst(**kw) -> FlowMod:
    """INGRESS: everything to ETH_DST with metadata = 7."""
    return FlowMod(Table.INGRESS, 1, Match(), write_metadata=7, goto=Table.ETH_DST, **kw)


def table_with(*mods) -> FakeOFTable:
    table = FakeOFTable(live_ports={1, 2, 3})
    table.apply([to_dst(), *mods])
    return table


def test_highest_priority_wins_and_add_replaces_same_match():
    table = table_with(
        FlowMod(Table.ETH_DST, 5, Match(), actions=(Output(1),)),
        FlowMod(Table.ETH_DST, 9, Match(eth_dst=B), actions=(Output(2),)),
    )
    assert table.forward(3, A, B).outputs == {2}
    assert table.forward(3, A, A).outputs == {1}
    table.apply([FlowMod(Table.ETH_DST, 9, Match(eth_dst=B), actions=(Output(3), Output(1)))])
    assert table.forward(2, A, B).outputs == {1, 3}
    assert len(table.table(Table.ETH_DST)) == 2


def test_metadata_is_written_and_matched():
    table = table_with(
        FlowMod(Table.ETH_DST, 5, Match(metadata=7), actions=(Output(1),)),
        FlowMod(Table.ETH_DST, 5, Match(metadata=8), actions=(Output(2),)),
    )
    assert table.forward(3, A, B).outputs == {1}


def test_no_flow_drops_and_controller_is_not_an_output():
    table = FakeOFTable()
    assert table.forward(1, A, B).dropped
    table.apply([FlowMod(Table.INGRESS, 0, Match(), actions=(Output(OFPP_CONTROLLER),))])
    result = table.forward(1, A, B)
    assert result.controller and not result.outputs and not result.dropped


def test_output_to_in_port_is_not_delivered_unless_in_port():
    table = table_with(FlowMod(Table.ETH_DST, 5, Match(), actions=(Output(1), Output(2))))
    assert table.forward(1, A, B).outputs == {2}
    table.apply([FlowMod(Table.ETH_DST, 5, Match(), actions=(Output(OFPP_IN_PORT),))])
    assert table.forward(1, A, B).outputs == {1}


def test_non_strict_delete_takes_more_specific_flows_with_cookie_mask():
    table = table_with(
        FlowMod(Table.ETH_DST, 5, Match(metadata=7), cookie=0x11),
        FlowMod(Table.ETH_DST, 6, Match(metadata=7, eth_dst=B), cookie=0x12),
        FlowMod(Table.ETH_DST, 6, Match(metadata=7, eth_dst=A), cookie=0x21),
    )
    table.apply([FlowMod(Table.ETH_DST, 0, Match(metadata=7), FlowCommand.DELETE, cookie=0x10, cookie_mask=0xF0)])
    assert [e.cookie for e in table.table(Table.ETH_DST)] == [0x21]
    assert len(table.table(Table.INGRESS)) == 1


def test_strict_delete_needs_same_priority_and_match():
    mod = FlowMod(Table.ETH_DST, 6, Match(eth_dst=B))
    table = table_with(mod, FlowMod(Table.ETH_DST, 6, Match(eth_dst=B, metadata=7)))
    table.apply([FlowMod(Table.ETH_DST, 5, Match(eth_dst=B), FlowCommand.DELETE_STRICT)])
    assert len(table.table(Table.ETH_DST)) == 2
    table.apply([FlowMod(Table.ETH_DST, 6, Match(eth_dst=B), FlowCommand.DELETE_STRICT)])
    assert [e.mod for e in table.table(Table.ETH_DST)] == [FlowMod(Table.ETH_DST, 6, Match(eth_dst=B, metadata=7))]


def test_delete_filters_on_out_port_and_out_group():
    table = table_with(GroupMod(GroupCommand.ADD, 4, (1,)))
    table.apply([
        FlowMod(Table.ETH_DST, 5, Match(eth_dst=A), actions=(Output(1),)),
        FlowMod(Table.ETH_DST, 5, Match(eth_dst=B), actions=(Group(4),)),
    ])
    table.apply([FlowMod(Table.ETH_DST, 0, Match(), FlowCommand.DELETE, out_port=1)])
    assert [e.match.eth_dst for e in table.table(Table.ETH_DST)] == [B]
    table.apply([FlowMod(Table.ETH_DST, 0, Match(), FlowCommand.DELETE, out_group=5)])
    assert len(table.table(Table.ETH_DST)) == 1
    table.apply([FlowMod(Table.ETH_DST, 0, Match(), FlowCommand.DELETE, out_group=4)])
    assert table.table(Table.ETH_DST) == []


def test_select_group_picks_one_live_bucket():
    table = table_with(GroupMod(GroupCommand.ADD, 4, (1, 2)), FlowMod(Table.ETH_DST, 5, Match(), actions=(Group(4),)))
    picks = {port for n in range(32) for port in table.forward(3, f"02:00:00:00:01:{n:02x}", B).outputs}
    assert picks == {1, 2}
    assert all(len(table.forward(3, f"02:00:00:00:01:{n:02x}", B).outputs) == 1 for n in range(32))
    table.live_ports.discard(2)
    assert {p for n in range(32) for p in table.forward(3, f"02:00:00:00:01:{n:02x}", B).outputs} == {1}
    table.live_ports.discard(1)
    assert table.forward(3, A, B).dropped


def test_group_rules():
    table = table_with()
    with pytest.raises(FakeOFError):
        table.apply([FlowMod(Table.ETH_DST, 5, Match(), actions=(Group(4),))])
    with pytest.raises(FakeOFError):
        table.apply([GroupMod(GroupCommand.MODIFY, 4, (1,))])
    table.apply([GroupMod(GroupCommand.ADD, 4), GroupMod(GroupCommand.ADD, 5)])
    with pytest.raises(FakeOFError):
        table.apply([GroupMod(GroupCommand.ADD, 4)])
    table.apply([FlowMod(Table.ETH_DST, 5, Match(), actions=(Group(4),), notify_removal=True)])
    table.apply([GroupMod(GroupCommand.DELETE, 4)])
    assert table.table(Table.ETH_DST) == [] and set(table.groups) == {5}
    assert [r.reason for r in table.take_removed()] == ["group_delete"]
    table.apply([GroupMod(GroupCommand.DELETE, OFPG_ALL)])
    assert table.groups == {}


def all_group(group_id: int, ports=(), groups=(), command=GroupCommand.ADD) -> GroupMod:
    return GroupMod(command, group_id, tuple(ports), GroupType.ALL, tuple(groups))


def test_all_group_sends_every_bucket_and_chained_groups_but_never_to_in_port():
    table = table_with(
        GroupMod(GroupCommand.ADD, 4, (1, 2)),  # SELECT: one of 1, 2
        all_group(8, (3, 5)),
        all_group(9, (6,), (8, 4)),
        FlowMod(Table.ETH_DST, 5, Match(), actions=(Group(9),)),
    )
    copies = table.forward(3, A, B).copies
    assert sorted(copies) in ([1, 5, 6], [2, 5, 6])  # 3 is the input port, also inside groups
    from_7 = table.forward(7, A, B).copies
    assert len(from_7) == 4 and set(from_7) - {1, 2} == {3, 5, 6}
    table.apply([all_group(8, (3, 5, 6), command=GroupCommand.MODIFY)])
    assert table.forward(3, A, B).copies.count(6) == 2  # a duplicate shows in copies
    assert table.forward(3, A, B).outputs >= {5, 6}
    table.live_ports.clear()  # ALL buckets watch nothing; only the SELECT group goes quiet
    assert sorted(table.forward(3, A, B).copies) == [5, 6, 6]


def test_group_chains_must_name_existing_groups_and_not_loop():
    table = table_with(all_group(8, (1,)))
    with pytest.raises(FakeOFError):
        table.apply([all_group(9, groups=(7,))])
    with pytest.raises(FakeOFError):
        table.apply([all_group(8, groups=(8,), command=GroupCommand.MODIFY)])
    table.apply([all_group(9, groups=(8,))])
    with pytest.raises(FakeOFError):
        table.apply([all_group(8, groups=(9,), command=GroupCommand.MODIFY)])
    with pytest.raises(FakeOFError):
        table.apply([GroupMod(GroupCommand.ADD, 10, (1,), GroupType.SELECT, (8,))])
    assert set(table.groups) == {8, 9}


def test_a_chained_group_cannot_be_deleted_until_unchained():
    table = table_with(all_group(8, (1,)), all_group(9, groups=(8,)))
    table.apply([FlowMod(Table.ETH_DST, 5, Match(), actions=(Group(8),))])
    with pytest.raises(FakeOFError):
        table.apply([GroupMod(GroupCommand.DELETE, 8)])
    assert set(table.groups) == {8, 9} and len(table.table(Table.ETH_DST)) == 1
    table.apply([all_group(9, command=GroupCommand.MODIFY), GroupMod(GroupCommand.DELETE, 8)])
    assert set(table.groups) == {9} and table.table(Table.ETH_DST) == []  # its flow went with it
    table.apply([all_group(8), GroupMod(GroupCommand.MODIFY, 9, (), GroupType.ALL, (8,))])
    table.apply([GroupMod(GroupCommand.DELETE, OFPG_ALL)])  # all at once: nothing left to chain
    assert table.groups == {}


def test_refuses_backward_goto_missing_meter_and_ambiguity():
    table = FakeOFTable()
    with pytest.raises(FakeOFError):
        table.apply([FlowMod(Table.ETH_SRC, 1, Match(), goto=Table.INGRESS)])
    with pytest.raises(FakeOFError):
        table.apply([FlowMod(Table.INGRESS, 1, Match(), meter=1)])
    table.apply([MeterMod(1, 10, 1), FlowMod(Table.INGRESS, 1, Match(), meter=1)])
    assert table.forward(1, A, B).meter == 1
    table.apply([FlowMod(Table.INGRESS, 1, Match(in_port=1))])
    with pytest.raises(FakeOFError):
        table.forward(1, A, B)


def test_idle_timeout_refreshed_by_hits_and_notified():
    table = table_with(
        FlowMod(Table.ETH_DST, 5, Match(eth_src=A), idle_timeout=10, notify_removal=True, actions=(Output(1),)),
        FlowMod(Table.ETH_DST, 5, Match(eth_src=B), idle_timeout=10, actions=(Output(1),)),
    )
    table.advance(8)
    table.forward(3, A, B)
    table.advance(8)
    assert [e.match.eth_src for e in table.table(Table.ETH_DST)] == [A]
    assert table.take_removed() == []  # B's flow did not ask for notification
    table.advance(2)
    assert table.table(Table.ETH_DST) == []
    assert [(r.match.eth_src, r.reason) for r in table.take_removed()] == [(A, "idle_timeout")]
    assert table.take_removed() == []


def test_delete_notifies_flows_that_asked():
    table = table_with(FlowMod(Table.ETH_SRC, 5, Match(eth_src=A), notify_removal=True))
    table.apply([FlowMod(Table.ETH_SRC, 5, Match(), FlowCommand.DELETE)])
    assert [r.reason for r in table.take_removed()] == ["delete"]


def test_meters_are_added_once_modified_in_place_and_deleted():
    table = FakeOFTable()
    table.apply([MeterMod(5, 10, 10)])
    with pytest.raises(FakeOFError):
        table.apply([MeterMod(5, 10, 10)])
    with pytest.raises(FakeOFError):
        table.apply([MeterMod(6, 10, 10, MeterCommand.MODIFY)])
    table.apply([FlowMod(Table.INGRESS, 1, Match(), meter=5, actions=(Output(OFPP_CONTROLLER),)),
                 MeterMod(5, 30, 40, MeterCommand.MODIFY)])
    assert table.meters == {5: MeterMod(5, 30, 40)} and len(table.flows) == 1  # flows keep their meter
    table.apply([MeterMod(5, command=MeterCommand.DELETE)])
    assert table.meters == {} and table.flows == []


def test_read_back_is_every_group_and_meter_and_the_flows_a_cookie_selects_as_their_adds():
    ours = FlowMod(Table.ETH_DST, 3, Match(eth_dst=A), actions=(Group(4),), cookie=COOKIE | 9)
    table = FakeOFTable()
    table.apply([
        GroupMod(GroupCommand.ADD, 4, (1, 2)),
        GroupMod(GroupCommand.ADD, 9, (3,), GroupType.ALL, (4,)),
        MeterMod(2, 5, 5),
        FlowMod(Table.ETH_DST, 3, Match(eth_dst=A), actions=(Group(4),), cookie=COOKIE | 9, cookie_mask=7),
        FlowMod(Table.ETH_DST, 4, Match(eth_dst=B), cookie=0x1234),
    ])
    assert table.observed() == ObservedSwitch(
        flows=(ours,),
        groups=(GroupMod(GroupCommand.ADD, 4, (1, 2)), GroupMod(GroupCommand.ADD, 9, (3,), GroupType.ALL, (4,))),
        meters=(MeterMod(2, 5, 5),),
    )
    assert len(table.observed(cookie=0, cookie_mask=0).flows) == 2


def test_content_compares_tables_without_counters_or_order():
    flows = [FlowMod(Table.ETH_DST, 3, Match(eth_dst=A), actions=(Output(1),), idle_timeout=9),
             FlowMod(Table.ETH_DST, 4, Match(eth_dst=B), actions=(Output(2),))]
    one, other = FakeOFTable(live_ports={1, 2}), FakeOFTable(live_ports={1, 2})
    one.apply([to_dst(), *flows])
    other.advance(5)
    other.apply([*reversed(flows), to_dst()])
    other.forward(3, B, A)
    assert one.content() == other.content()
    other.apply([FlowMod(Table.ETH_DST, 4, Match(eth_dst=B), actions=(Output(1),))])
    assert one.content() != other.content()


def test_a_flow_read_back_with_fields_the_model_does_not_name_matches_no_frame_but_can_be_deleted():
    vlan = Match(in_port=3, other_oxm=bytes.fromhex("80000c021005"))
    table = table_with(FlowMod(Table.INGRESS, 9, vlan, actions=(Output(1),)))
    assert table.forward(3, A, B).outputs == set()
    table.apply([FlowMod(Table.INGRESS, 9, Match(in_port=3), FlowCommand.DELETE_STRICT)])
    assert len(table.table(Table.INGRESS)) == 2
    table.apply([FlowMod(Table.INGRESS, 9, vlan, FlowCommand.DELETE_STRICT)])
    assert len(table.table(Table.INGRESS)) == 1
    table.apply([FlowMod(Table.INGRESS, 9, vlan, actions=(Output(1),)),
                 FlowMod(Table.INGRESS, 0, Match(in_port=3), FlowCommand.DELETE)])  # it is more specific
    assert len(table.table(Table.INGRESS)) == 1
