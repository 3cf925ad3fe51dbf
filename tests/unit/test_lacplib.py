"""ryu_lag.lacplib without a switch: add(), the events, Ryu's dispatch, and the shell
driven by a fake datapath against a real LACP engine as partner."""

from __future__ import annotations

import ast
import pathlib
import struct
import types
from typing import Any

import pytest
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_lag import lacplib
from ryu_lag.config import ConfigError
from ryu_lag.lacp import BondSettings, LacpBond, LacpState, Mode, Rate, decode_frame, encode_frame
from ryu_lag.service import system_id_from_dpid

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "simple_switch_lacp_13_ported.py"
OUR_IMPORT = "from ryu_lag import lacplib"
CLASSIC_IMPORT = "from ryu.lib import lacplib"
LOCAL_MAC = "0a:00:00:00:00:fe"
PORT_MACS = {1: "0a:00:00:00:00:01", 2: "0a:00:00:00:00:02", 3: "0a:00:00:00:00:03"}
PARTNER_SYSTEM = "02:00:00:00:00:99"


# ---- add() -----------------------------------------------------------------------
def test_add_defaults_to_an_active_slow_bond_with_its_own_key():
    lib = lacplib.LacpLib()
    first = lib.add(dpid=1, ports=[1, 2])
    second = lib.add(dpid=1, ports=[3, 4])
    other_switch = lib.add(dpid=2, ports=[1, 2])
    assert (first.key, second.key, other_switch.key) == (1, 2, 1)
    assert first.mode is Mode.ACTIVE and first.rate is Rate.SLOW and first.min_links == 1
    assert first.ports == (1, 2)


def test_add_takes_the_richer_options():
    lib = lacplib.LacpLib()
    config = lib.add(
        1, [2, 1], mode="passive", rate="fast", key=7, system_priority=100, port_priority=200, min_links=2
    )
    assert (config.mode, config.rate, config.key) == (Mode.PASSIVE, Rate.FAST, 7)
    assert (config.system_priority, config.port_priority, config.min_links, config.ports) == (100, 200, 2, (1, 2))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dpid": -1, "ports": [1, 2]}, "dpid"),
        ({"dpid": "1", "ports": [1, 2]}, "dpid"),
        ({"dpid": 1, "ports": (1, 2)}, "ports"),
        ({"dpid": 1, "ports": []}, "ports"),
        ({"dpid": 1, "ports": [1, 1]}, "ports"),
        ({"dpid": 1, "ports": [0, 1]}, "ports"),
        ({"dpid": 1, "ports": [1, 2], "mode": "on"}, "mode"),
        ({"dpid": 1, "ports": [1, 2], "rate": "medium"}, "rate"),
        ({"dpid": 1, "ports": [1, 2], "key": 0}, "key"),
        ({"dpid": 1, "ports": [1, 2], "min_links": 3}, "min_links"),
        ({"dpid": 1, "ports": [1, 2], "system_priority": 1 << 16}, "system_priority"),
    ],
)
def test_add_rejects_bad_configuration(kwargs: dict, field: str):
    lib = lacplib.LacpLib()
    with pytest.raises(ConfigError) as err:
        lib.add(**kwargs)
    assert err.value.field == field


def test_add_rejects_a_port_in_two_bonds_or_a_key_used_twice():
    lib = lacplib.LacpLib()
    lib.add(1, [1, 2], key=5)
    with pytest.raises(ConfigError, match="port 2 is already in a bond"):
        lib.add(1, [2, 3])
    with pytest.raises(ConfigError, match="key 5 is already used"):
        lib.add(1, [3, 4], key=5)
    lib.add(2, [1, 2], key=5)  # another switch: no conflict


# ---- events and dispatch ---------------------------------------------------------
def test_event_classes_carry_the_classic_attributes():
    msg, dp = object(), object()
    assert lacplib.EventPacketIn(msg).msg is msg
    ev = lacplib.EventSlaveStateChanged(dp, 3, True)
    assert (ev.datapath, ev.port, ev.enabled) == (dp, 3, True)


class _BookObserver(app_manager.RyuApp):
    """Handlers registered the way the Ryu book and Ryu 4.34's copy of it do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, Any]] = []

    @set_ev_cls(lacplib.EventSlaveStateChanged, lacplib.LAG_EV_DISPATCHER)
    def book(self, ev: Any) -> None:
        self.seen.append(("book", ev))

    @set_ev_cls(lacplib.EventSlaveStateChanged, MAIN_DISPATCHER)
    def ryu_434(self, ev: Any) -> None:
        self.seen.append(("ryu_434", ev))

    @set_ev_cls(lacplib.EventPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev: Any) -> None:
        self.seen.append(("packet_in", ev))


@pytest.fixture
def bricks():
    """A LacpLib and an observer registered as Ryu's manager registers them."""
    lib, observer = lacplib.LacpLib(), _BookObserver()
    for app in (lib, observer):
        app_manager.register_app(app)
    try:
        app_manager.AppManager()._update_bricks()
        yield lib, observer
    finally:
        for app in (lib, observer):
            app_manager.unregister_app(app)


def _deliver(app: app_manager.RyuApp) -> None:
    """What the app's event loop does with each queued event."""
    while not app.events.empty():
        ev, state = app.events.get()
        app._events_sem.release()
        for handler in app.get_handlers(ev, state):
            handler(ev)


def test_observers_find_the_library_by_its_module_name(bricks):
    lib, observer = bricks
    assert lib.name == "lacplib" == lacplib.__name__.split(".")[-1]
    assert set(lib.observers[lacplib.EventSlaveStateChanged]) == {observer.name}
    assert lib.observers[lacplib.EventSlaveStateChanged][observer.name] == {lacplib.LAG_EV_DISPATCHER, MAIN_DISPATCHER}


def test_slave_events_reach_handlers_of_either_dispatcher(bricks):
    lib, observer = bricks
    ev = lacplib.EventSlaveStateChanged(object(), 1, True)
    lib.send_event_to_observers(ev)
    _deliver(observer)
    assert sorted(name for name, _ in observer.seen) == ["book", "ryu_434"]
    assert all(seen is ev for _, seen in observer.seen)


def test_a_main_dispatcher_state_would_starve_the_book_handler(bricks):
    """Why events go out without a state: with one, LAG_EV_DISPATCHER handlers never run."""
    _, observer = bricks
    ev = lacplib.EventSlaveStateChanged(None, 1, True)
    assert [h.__name__ for h in observer.get_handlers(ev, MAIN_DISPATCHER)] == ["ryu_434"]
    assert sorted(h.__name__ for h in observer.get_handlers(ev, None)) == ["book", "ryu_434"]


# ---- the classic app with one changed line ---------------------------------------
def _imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
    return modules


def test_the_ported_app_differs_from_a_classic_one_only_in_its_import_line():
    source = FIXTURE.read_text()
    ours = [line for line in source.splitlines() if "ryu_lag" in line and not line.lstrip().startswith("#")]
    assert ours == [OUR_IMPORT]
    classic = source.replace(OUR_IMPORT, CLASSIC_IMPORT)
    assert sum(a != b for a, b in zip(source.splitlines(), classic.splitlines())) == 1
    modules = _imported_modules(classic)
    assert "ryu.lib" in modules
    assert all(m == "ryu" or m.startswith("ryu.") for m in modules), modules


def test_the_ported_app_uses_the_classic_surface():
    tree = ast.parse(FIXTURE.read_text())
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and getattr(n.value, "id", None) == "lacplib"}
    assert used == {"LacpLib", "EventPacketIn", "EventSlaveStateChanged", "LAG_EV_DISPATCHER"}
    assert all(hasattr(lacplib, name) for name in used)


# ---- the shell, driven by a fake datapath ----------------------------------------
def _parse_sent(dp: Any, buf: bytes) -> Any:
    """One message the lib sent, as the Ryu object (Ryu 4.34's OFPPacketOut.parser is broken)."""
    version, msg_type, length, xid = ofproto_parser.header(buf)
    if msg_type != ofp.OFPT_PACKET_OUT:
        cls = {ofp.OFPT_FLOW_MOD: parser.OFPFlowMod, ofp.OFPT_GROUP_MOD: parser.OFPGroupMod}[msg_type]
        return cls.parser(dp, version, msg_type, length, xid, buf)
    buffer_id, in_port, actions_len = struct.unpack_from("!IIH6x", buf, ofp.OFP_HEADER_SIZE)
    offset, end = ofp.OFP_PACKET_OUT_SIZE, ofp.OFP_PACKET_OUT_SIZE + actions_len
    actions = []
    while offset < end:
        action = parser.OFPAction.parser(buf, offset)
        actions.append(action)
        offset += action.len
    return parser.OFPPacketOut(dp, buffer_id, in_port, actions, buf[end:length])



class FakeDatapath:
    """What LacpLib reads of a Ryu Datapath, recording what it is sent (parsed back by Ryu)."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid: int = 1, local: bool = True) -> None:
        self.id = dpid
        self.xid = 0
        self.ports = {no: _port(no, mac) for no, mac in PORT_MACS.items()}
        if local:
            self.ports[ofp.OFPP_LOCAL] = _port(ofp.OFPP_LOCAL, LOCAL_MAC)
        self.sent: list[Any] = []

    def send(self, buf: bytes) -> None:
        while buf:
            version, msg_type, length, xid = ofproto_parser.header(buf)
            self.sent.append(_parse_sent(self, buf[:length]))
            buf = buf[length:]

    def take(self) -> list[Any]:
        sent, self.sent = self.sent, []
        return sent


def _port(no: int, mac: str, up: bool = True) -> Any:
    return parser.OFPPort(no, mac, f"p{no}", 0, 0 if up else ofp.OFPPS_LINK_DOWN, 0, 0, 0, 0, 0, 0)


def _packet_in(dp: FakeDatapath, port: int, data: bytes) -> Any:
    msg = parser.OFPPacketIn(
        dp, ofp.OFP_NO_BUFFER, len(data), ofp.OFPR_ACTION, 0, 0, parser.OFPMatch(in_port=port), data
    )
    return ofp_event.EventOFPPacketIn(msg)


def _state(dp: FakeDatapath, state: str) -> Any:
    ev = ofp_event.EventOFPStateChange(dp)
    ev.state = state
    return ev


def _lacpdus(sent: list[Any]) -> list[tuple[int, bytes]]:
    return [
        (m.actions[0].port, bytes(m.data))
        for m in sent
        if isinstance(m, parser.OFPPacketOut) and bytes(m.data)[12:14] == b"\x88\x09"
    ]


def _flows(sent: list[Any]) -> list[Any]:
    return [m for m in sent if isinstance(m, parser.OFPFlowMod)]


class Rig:
    """LacpLib on a fake switch, a real engine as its partner, and a hand-cranked clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, local: bool = True, **add: Any) -> None:
        self.now = 100.0
        monkeypatch.setattr(lacplib, "time", types.SimpleNamespace(monotonic=lambda: self.now))
        self.lib = lacplib.LacpLib()
        self.events: list[Any] = []
        monkeypatch.setattr(self.lib, "send_event_to_observers", lambda ev, state=None: self.events.append(ev))
        self.lib.add(1, [1, 2], **add)
        self.dp = FakeDatapath(local=local)
        self.partner = LacpBond(BondSettings(key=9, rate=Rate.FAST), PARTNER_SYSTEM, [1, 2])
        self.wires_up = True

    def connect(self) -> list[Any]:
        self.lib._state_change(_state(self.dp, MAIN_DISPATCHER))
        return self.dp.take()

    def slave_events(self) -> list[tuple[int, bool]]:
        return [(e.port, e.enabled) for e in self.events if isinstance(e, lacplib.EventSlaveStateChanged)]

    def run(self, seconds: float, step: float = lacplib.TICK_INTERVAL) -> None:
        """Advance the clock, carrying LACPDUs both ways over the two wires."""
        for port in (1, 2):
            self._to_switch(self.partner.set_link(port, True, self.now))
        end = self.now + seconds
        while self.now < end:
            self.now += step
            self.lib.tick(self.now)
            self._to_partner()
            self._to_switch(self.partner.tick(self.now))

    def _to_partner(self) -> None:
        for port, frame in _lacpdus(self.dp.take()):
            if self.wires_up:
                self._to_switch(self.partner.receive_frame(port, frame, self.now))

    def _to_switch(self, update: Any) -> None:
        for tx in update.transmit:
            if self.wires_up:
                self.lib._packet_in(_packet_in(self.dp, tx.port, encode_frame(PARTNER_SYSTEM, tx.pdu)))
                self._to_partner()


def test_connect_installs_lacp_punts_and_drops_until_collecting(monkeypatch):
    rig = Rig(monkeypatch)
    flows = _flows(rig.connect())
    assert flows[0].command == ofp.OFPFC_DELETE and flows[0].cookie == lacplib.COOKIE
    punts = [f for f in flows if f.priority == 0xFFFF]
    assert sorted(f.match["in_port"] for f in punts) == [1, 2]
    for flow in punts:
        assert (flow.match["eth_type"], flow.match["eth_dst"]) == (0x8809, "01:80:c2:00:00:02")
        assert flow.instructions[0].actions[0].port == ofp.OFPP_CONTROLLER
    drops = [f for f in flows if f.priority == 0xFFFE]
    assert sorted(f.match["in_port"] for f in drops) == [1, 2]
    assert all(f.command == ofp.OFPFC_ADD and not f.instructions for f in drops)


def test_transmits_active_lacpdus_from_each_members_own_mac(monkeypatch):
    rig = Rig(monkeypatch)
    sent = _lacpdus(rig.connect())  # at once: the links are up
    assert sorted(port for port, _ in sent) == [1, 2]
    for port, frame in sent:
        src, pdu = decode_frame(frame)
        assert src == PORT_MACS[port]
        assert (pdu.actor.system, pdu.actor.key, pdu.actor.port) == (LOCAL_MAC, 1, port)
        assert pdu.actor.state & LacpState.ACTIVITY


def test_actor_system_comes_from_the_dpid_without_a_local_port(monkeypatch):
    rig = Rig(monkeypatch, local=False)
    _, frame = _lacpdus(rig.connect())[0]
    assert decode_frame(frame)[1].actor.system == system_id_from_dpid(1)


def test_negotiates_with_a_partner_and_reports_slaves_enabled(monkeypatch):
    rig = Rig(monkeypatch)
    rig.connect()
    rig.run(4.0)
    assert sorted(rig.slave_events()) == [(1, True), (2, True)]
    assert all(e.datapath is rig.dp for e in rig.events)
    assert rig.partner.distributing_count() == 2


def test_collecting_removes_the_drop_rule(monkeypatch):
    rig = Rig(monkeypatch)
    rig.connect()
    deleted: list[int] = []
    original = rig.dp.send

    def spy(buf: bytes) -> None:
        before = len(rig.dp.sent)
        original(buf)
        new = _flows(rig.dp.sent[before:])
        deleted.extend(m.match["in_port"] for m in new if m.command == ofp.OFPFC_DELETE_STRICT)

    rig.dp.send = spy  # type: ignore[method-assign]
    rig.run(4.0)
    assert sorted(deleted) == [1, 2]


def test_link_down_disables_the_member_at_once(monkeypatch):
    rig = Rig(monkeypatch)
    rig.connect()
    rig.run(4.0)
    rig.events.clear()
    rig.dp.take()
    status = parser.OFPPortStatus(rig.dp, ofp.OFPPR_MODIFY, _port(1, PORT_MACS[1], up=False))
    rig.lib._port_status(ofp_event.EventOFPPortStatus(status))
    assert rig.slave_events() == [(1, False)]
    drops = [f for f in _flows(rig.dp.take()) if f.priority == 0xFFFE]
    assert [(f.match["in_port"], f.command) for f in drops] == [(1, ofp.OFPFC_ADD)]


def test_packet_ins_lacp_kept_data_raised(monkeypatch):
    rig = Rig(monkeypatch)
    rig.connect()
    data = bytes.fromhex("ffffffffffff") + bytes.fromhex(PORT_MACS[3].replace(":", "")) + b"\x08\x06" + bytes(28)
    plain = _packet_in(rig.dp, 3, data)
    rig.lib._packet_in(plain)
    assert [type(e) for e in rig.events] == [lacplib.EventPacketIn] and rig.events[0].msg is plain.msg
    rig.events.clear()
    # A LACPDU on a port outside any bond: neither answered nor raised.
    partner_pdu = rig.partner.set_link(1, True, rig.now).transmit[0].pdu
    rig.dp.take()
    rig.lib._packet_in(_packet_in(rig.dp, 3, encode_frame(PARTNER_SYSTEM, partner_pdu)))
    assert rig.events == [] and rig.dp.take() == []
    # Data on a member that is not collecting yet is discarded.
    rig.lib._packet_in(_packet_in(rig.dp, 1, data))
    assert rig.events == []


def test_disconnect_reports_enabled_slaves_disabled(monkeypatch):
    rig = Rig(monkeypatch)
    rig.connect()
    rig.run(4.0)
    rig.events.clear()
    rig.lib._state_change(_state(rig.dp, DEAD_DISPATCHER))
    assert rig.slave_events() == [(1, False), (2, False)]
    rig.lib.tick(rig.now + 1)
    assert rig.dp.take() == []


def test_a_bond_added_while_connected_starts_at_once(monkeypatch):
    rig = Rig(monkeypatch)
    rig.connect()
    rig.lib.add(1, [3])
    sent = rig.dp.take()
    assert [f.match["in_port"] for f in _flows(sent) if f.priority == 0xFFFF] == [3]
    assert [port for port, _ in _lacpdus(sent)] == [3]


def test_a_reconnection_reports_the_old_connections_slaves_disabled(monkeypatch):
    rig = Rig(monkeypatch)
    rig.connect()
    rig.run(4.0)
    rig.events.clear()
    old, rig.dp = rig.dp, FakeDatapath()
    rig.connect()
    assert rig.slave_events() == [(1, False), (2, False)]
    assert all(e.datapath is old for e in rig.events)
    rig.lib._state_change(_state(old, DEAD_DISPATCHER))  # the old connection's late DEAD
    assert len(rig.events) == 2
    rig.run(4.0)
    assert rig.slave_events()[2:] == [(1, True), (2, True)]
