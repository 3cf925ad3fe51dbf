"""Where ``ryu_lag.openflow`` values meet a Ryu datapath: sending them, and reading Ryu's port descriptions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ryu.ofproto import ofproto_v1_3 as ofp

from ryu_lag import ofp_wire
from ryu_lag.openflow import Message


def port_up(port: Any) -> bool:
    """Whether a Ryu OFPPort has its link up and is not administratively down."""
    return not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)


def send(datapath: Any, msgs: Iterable[Message]) -> None:
    """Send ``msgs`` to ``datapath`` in order, as one write, with xids from the datapath's own counter."""
    buf, next_xid = ofp_wire.encode_all(msgs, (datapath.xid + 1) & ofp.MAX_XID)
    if buf:
        datapath.xid = (next_xid - 1) & ofp.MAX_XID
        datapath.send(buf)
