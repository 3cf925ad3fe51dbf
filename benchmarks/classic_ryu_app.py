"""Classic Ryu baseline: Ryu's stock ``ryu.lib.lacplib`` driving the book's OF1.3 learning switch.

Written the way the Ryu book's ``simple_switch_lacp_13.py`` is: flood with
OFPP_FLOOD, learn each MAC on the physical port it came in on, and delete every
learned flow of the switch when a bond member goes up or down. Only the bonds
are configurable, for benchmarks with many members:

    CLASSIC_LACP_BONDS="1:1,2;2:1,2"   # dpid:port,port;...  (dpid decimal or 0x hex)

The default is ``1:1,2``. Run it with
``.venv/bin/python -m ryu_lag.ryu_manager benchmarks/classic_ryu_app.py --ofp-tcp-listen-port P``.
"""

from __future__ import annotations

import os
from typing import Any

from ryu.app import simple_switch_13
from ryu.controller.handler import MAIN_DISPATCHER, set_ev_cls
from ryu.lib import lacplib
from ryu.lib.packet import ethernet, packet
from ryu.ofproto import ofproto_v1_3

BONDS_ENV = "CLASSIC_LACP_BONDS"
DEFAULT_BONDS = "1:1,2"


def parse_bonds(text: str) -> list[tuple[int, list[int]]]:
    """``"1:1,2;2:3,4"`` as ``[(1, [1, 2]), (2, [3, 4])]``."""
    bonds = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        dpid, _, ports = item.partition(":")
        bonds.append((int(dpid, 0), [int(p) for p in ports.split(",") if p.strip()]))
    return bonds


class ClassicLacpSwitch13(simple_switch_13.SimpleSwitch13):
    """The book's learning switch with lacplib bonds."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"lacplib": lacplib.LacpLib}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mac_to_port: dict[int, dict[str, int]] = {}
        self._lacp = kwargs["lacplib"]
        for dpid, ports in parse_bonds(os.environ.get(BONDS_ENV, DEFAULT_BONDS)):
            self._lacp.add(dpid=dpid, ports=ports)

    def del_flow(self, datapath: Any, match: Any) -> None:
        ofproto = datapath.ofproto
        mod = datapath.ofproto_parser.OFPFlowMod(
            datapath=datapath, command=ofproto.OFPFC_DELETE, out_port=ofproto.OFPP_ANY,
            out_group=ofproto.OFPG_ANY, match=match,
        )
        datapath.send_msg(mod)

    @set_ev_cls(lacplib.EventPacketIn, MAIN_DISPATCHER)
    def _packet_in_handler(self, ev: Any) -> None:
        msg = ev.msg
        datapath = msg.datapath
        ofproto = datapath.ofproto
        parser = datapath.ofproto_parser
        in_port = msg.match["in_port"]

        eth = packet.Packet(msg.data).get_protocols(ethernet.ethernet)[0]
        dst, src = eth.dst, eth.src
        dpid = datapath.id
        self.mac_to_port.setdefault(dpid, {})
        self.logger.info("packet in %s %s %s %s", dpid, src, dst, in_port)

        self.mac_to_port[dpid][src] = in_port
        out_port = self.mac_to_port[dpid].get(dst, ofproto.OFPP_FLOOD)
        actions = [parser.OFPActionOutput(out_port)]
        if out_port != ofproto.OFPP_FLOOD:
            self.add_flow(datapath, 1, parser.OFPMatch(in_port=in_port, eth_dst=dst), actions)

        data = msg.data if msg.buffer_id == ofproto.OFP_NO_BUFFER else None
        out = parser.OFPPacketOut(
            datapath=datapath, buffer_id=msg.buffer_id, in_port=in_port, actions=actions, data=data
        )
        datapath.send_msg(out)

    @set_ev_cls(lacplib.EventSlaveStateChanged, MAIN_DISPATCHER)
    def _slave_state_changed_handler(self, ev: Any) -> None:
        datapath = ev.datapath
        dpid = datapath.id
        self.logger.info("slave state changed port: %d enabled: %s", ev.port, ev.enabled)
        if dpid in self.mac_to_port:
            for mac in self.mac_to_port[dpid]:
                self.del_flow(datapath, datapath.ofproto_parser.OFPMatch(eth_dst=mac))
            del self.mac_to_port[dpid]
        self.mac_to_port.setdefault(dpid, {})
