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
    MeterMod,
    Output,
    Table,
)

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
