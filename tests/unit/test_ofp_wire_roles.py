"""ROLE_REQUEST and SET_ASYNC: ``ofp_wire`` packs them into the bytes Ryu's ``OFPRoleRequest`` and
``OFPSetAsync`` serialise, and our enum values are Ryu's ``ofproto_v1_3`` constants."""

from __future__ import annotations

import types

import pytest
from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_lag import mastership, ofp_wire
from ryu_lag import openflow as of

DATAPATH = types.SimpleNamespace(ofproto=ofp, ofproto_parser=parser)
XID = 0xCAFE


def ryu_bytes(msg: object) -> bytes:
    msg.set_xid(XID)  # type: ignore[attr-defined]
    msg.serialize()  # type: ignore[attr-defined]
    return bytes(msg.buf)  # type: ignore[attr-defined]


def test_roles_are_the_wire_values() -> None:
    assert [(r.name, r.value) for r in of.Role] == [
        ("NOCHANGE", ofp.OFPCR_ROLE_NOCHANGE), ("EQUAL", ofp.OFPCR_ROLE_EQUAL),
        ("MASTER", ofp.OFPCR_ROLE_MASTER), ("SLAVE", ofp.OFPCR_ROLE_SLAVE),
    ]


def test_reasons_are_the_wire_values() -> None:
    assert [r.value for r in of.PacketInReason] == [ofp.OFPR_NO_MATCH, ofp.OFPR_ACTION, ofp.OFPR_INVALID_TTL]
    assert [r.value for r in of.PortReason] == [ofp.OFPPR_ADD, ofp.OFPPR_DELETE, ofp.OFPPR_MODIFY]
    assert [r.value for r in of.FlowRemovedReason] == [
        ofp.OFPRR_IDLE_TIMEOUT, ofp.OFPRR_HARD_TIMEOUT, ofp.OFPRR_DELETE, ofp.OFPRR_GROUP_DELETE]


@pytest.mark.parametrize("role", list(of.Role), ids=lambda r: r.name)
@pytest.mark.parametrize("generation", [0, 1, 0x1234_5678_9ABC, (1 << 63) + 5, (1 << 64) - 1])
def test_role_request_bytes_are_ryus(role: of.Role, generation: int) -> None:
    msg = of.RoleRequest(role, generation)
    wire = ofp_wire.encode(msg, XID)
    assert wire == ryu_bytes(parser.OFPRoleRequest(DATAPATH, int(role), generation))
    assert ofproto_parser.header(wire) == (ofp.OFP_VERSION, ofp.OFPT_ROLE_REQUEST, ofp.OFP_ROLE_REQUEST_SIZE, XID)


@pytest.mark.parametrize("masks", [
    ((0, 0), (0, 0), (0, 0)),
    ((3, 2), (7, 7), (15, 0)),
    ((0xFFFFFFFF, 1), (0x80000000, 0xFFFFFFFF), (1, 0x12345678)),
])
def test_set_async_bytes_are_ryus(masks: tuple[tuple[int, int], ...]) -> None:
    msg = of.SetAsync(*masks)
    wire = ofp_wire.encode(msg, XID)
    assert wire == ryu_bytes(parser.OFPSetAsync(DATAPATH, *(list(pair) for pair in masks)))
    assert ofproto_parser.header(wire) == (ofp.OFP_VERSION, ofp.OFPT_SET_ASYNC, ofp.OFP_ASYNC_CONFIG_SIZE, XID)


def test_set_async_keeps_the_master_and_slave_halves_apart() -> None:
    """Index 0 is the master/equal mask, index 1 the slave mask, in each of the three pairs."""
    wire = ofp_wire.encode(of.SetAsync((1, 2), (3, 4), (5, 6)))
    assert wire[8:] == b"".join(n.to_bytes(4, "big") for n in (1, 2, 3, 4, 5, 6))


def test_reasons_mask_sets_one_bit_per_reason() -> None:
    assert of.reasons_mask([]) == 0
    assert of.reasons_mask([of.PacketInReason.ACTION]) == 1 << ofp.OFPR_ACTION
    assert of.reasons_mask(of.PortReason) == (1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY)


def test_standby_async_config_asks_port_status_only_for_slaves() -> None:
    """A slave gets every port status, and no packet-ins and no flow removals; the master gets
    what OpenFlow 1.3 gives a master by default."""
    config = mastership.ASYNC_CONFIG
    assert config.packet_in_mask == (1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION, 0)
    all_ports = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
    assert config.port_status_mask == (all_ports, all_ports)
    all_removals = (1 << ofp.OFPRR_IDLE_TIMEOUT | 1 << ofp.OFPRR_HARD_TIMEOUT | 1 << ofp.OFPRR_DELETE
                    | 1 << ofp.OFPRR_GROUP_DELETE)
    assert config.flow_removed_mask == (all_removals, 0)
    assert ofp_wire.encode(config, XID) == ryu_bytes(parser.OFPSetAsync(
        DATAPATH, list(config.packet_in_mask), list(config.port_status_mask), list(config.flow_removed_mask)))


def test_control_messages_travel_with_table_messages_in_one_buffer() -> None:
    msgs = [of.SetAsync((3, 2), (7, 7), (15, 0)), of.RoleRequest(of.Role.MASTER, 42), of.PacketOut(1, bytes(60))]
    buf, next_xid = ofp_wire.encode_all(msgs, 10)
    assert next_xid == 13
    types_seen = []
    while buf:
        _, msg_type, length, xid = ofproto_parser.header(buf)
        types_seen.append((msg_type, xid))
        buf = buf[length:]
    assert types_seen == [(ofp.OFPT_SET_ASYNC, 10), (ofp.OFPT_ROLE_REQUEST, 11), (ofp.OFPT_PACKET_OUT, 12)]


@pytest.mark.parametrize("generation", [-1, 1 << 64])
def test_generation_out_of_range_is_refused_when_built(generation: int) -> None:
    with pytest.raises(ValueError, match="generation_id"):
        of.RoleRequest(of.Role.MASTER, generation)


@pytest.mark.parametrize("masks", [
    ((1 << 32, 0), (0, 0), (0, 0)),
    ((0, 0), (0, -1), (0, 0)),
    ((0, 0), (0, 0), (0,)),
])
def test_masks_out_of_range_are_refused_when_built(masks: tuple[tuple[int, ...], ...]) -> None:
    with pytest.raises(ValueError, match="mask"):
        of.SetAsync(*masks)  # type: ignore[arg-type]


def test_role_outside_the_enum_is_refused() -> None:
    with pytest.raises(ValueError):
        of.Role(4)
