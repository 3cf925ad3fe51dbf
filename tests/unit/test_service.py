"""The controller core end to end: LagService + a fake switch + an engine playing the partner."""

from __future__ import annotations

import pytest

from ryu_lag.config import BondConfig, ConfigError
from ryu_lag.lacp import BondSettings, Lacpdu, LacpBond, LacpState, PortInfo, Rate, encode_frame
from ryu_lag.openflow import PacketOut
from ryu_lag.service import BondConflict, Effects, LagService, PortDesc, UnknownBond
from ryu_lag.store import BondStore, StoreError
from ryu_lag.switching import BOND_GROUP_MIN, lacp_meter
from tests.unit.fakeoftable import FakeOFTable

DPID = 1
H1 = "02:00:00:00:01:01"  # behind the bond
H2 = "02:00:00:00:02:02"  # on plain port 3
PARTNER_SYSTEM = "02:00:00:00:00:99"
G = BOND_GROUP_MIN  # the group id of the first bond


def port(n: int, up: bool = True) -> PortDesc:
    return PortDesc(n, f"0a:00:00:00:00:{n:02x}", up)


class Rig:
    """The service driving a fake switch whose ports 1, 2 lead to an LACP partner bond."""

    def __init__(self, tmp_path, ports=(1, 2, 3, 4)) -> None:
        self.store = BondStore(str(tmp_path / "state.sqlite3"))
        self.service = LagService(self.store)
        self.switch = FakeOFTable(live_ports=ports)
        self.partner = LacpBond(BondSettings(key=9, rate=Rate.FAST), PARTNER_SYSTEM, (1, 2))
        self.ports = ports
        self.now = 0.0
        self.events: list = []
        self.wire_up = {1: True, 2: True}

    def connect(self) -> None:
        self.apply(self.service.switch_connected(DPID, [port(n) for n in self.ports], "0a:00:00:00:00:fe", True, self.now))
        for p in (1, 2):
            self.to_switch(self.partner.set_link(p, True, self.now))

    def apply(self, effects: Effects) -> None:
        self.events.extend(effects.member_events)
        assert all(dpid == DPID for dpid, _ in effects.messages)
        self.switch.apply(m for _, m in effects.messages if not isinstance(m, PacketOut))
        for _, msg in effects.messages:  # then our LACPDUs reach the partner, which may answer
            if isinstance(msg, PacketOut) and self.wire_up.get(msg.port):
                self.to_switch(self.partner.receive_frame(msg.port, msg.data, self.now))

    def to_switch(self, update) -> None:
        for tx in update.transmit:
            if self.wire_up.get(tx.port):
                frame = encode_frame(PARTNER_SYSTEM, tx.pdu)
                self.apply(self.service.packet_in(DPID, tx.port, frame, self.now))

    def run(self, seconds: float, step: float = 0.05) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + step, 6)
            self.apply(self.service.tick(self.now))
            self.to_switch(self.partner.tick(self.now))

    def learn(self, in_port: int, mac: str) -> None:
        result = self.switch.forward(in_port, mac, "ff:ff:ff:ff:ff:ff")
        if result.controller:
            self.apply(self.service.packet_in(DPID, in_port, _frame(mac), self.now))

    def bond(self):
        return next(iter(self.service.switches[DPID].bonds.values()))


def _frame(src: str, dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x08\x00" + bytes(46)


def fast_bond(name: str = "bond0", ports=(1, 2), key: int = 1) -> BondConfig:
    return BondConfig.from_dict(DPID, {"name": name, "ports": list(ports), "rate": "fast"}, key=key)


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


def test_bond_configured_before_connect_negotiates_and_forwards(rig):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    assert rig.switch.select_groups() == {}  # nothing to send to: no switch yet
    rig.connect()
    rig.run(4.0)
    assert {e.port for e in rig.events if e.enabled} == {1, 2}
    assert rig.switch.select_groups()[G] == (1, 2)
    actor = rig.bond().engine.members[1].actor_info()
    assert actor.system == "0a:00:00:00:00:fe" and actor.key == 1  # the LOCAL port MAC, our key
    rig.learn(1, H1)
    rig.learn(3, H2)
    assert rig.switch.forward(3, H2, H1).outputs in ({1}, {2})
    assert rig.switch.forward(2, H1, H2).outputs == {3}  # from either member: the bond is one port
    flood = rig.switch.forward(4, "02:00:00:00:04:04", "ff:ff:ff:ff:ff:ff").outputs
    assert flood == {3, 1} or flood == {3, 2}  # exactly one member of the bond


def test_link_down_edits_the_group_without_touching_learned_macs(rig):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.connect()
    rig.run(4.0)
    rig.learn(1, H1)
    rig.learn(3, H2)
    learned = len(rig.switch.flows)
    rig.switch.live_ports.discard(1)
    rig.wire_up[1] = False
    rig.apply(rig.service.port_changed(DPID, port(1, up=False), rig.now))
    assert rig.switch.select_groups()[G] == (2,)
    assert len(rig.switch.flows) == learned  # only ingress rules changed, no flow was deleted
    assert rig.switch.forward(3, H2, H1).outputs == {2}
    assert rig.events[-1].port == 1 and not rig.events[-1].enabled


def test_silent_partner_expires_after_fast_timeout(rig):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.connect()
    rig.run(4.0)
    rig.wire_up[2] = False  # carrier stays up, nothing arrives
    last_rx = rig.bond().engine.members[2].counters.last_rx
    rig.run(last_rx + 2.95 - rig.now)
    assert rig.switch.select_groups()[G] == (1, 2)
    rig.run(0.1)
    assert rig.switch.select_groups()[G] == (1,)


def test_a_switch_whose_tables_cannot_be_read_is_set_up_from_scratch(rig):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.connect()
    rig.run(4.0)
    rig.learn(3, H2)
    rig.apply(rig.service.switch_disconnected(DPID))
    assert [e.enabled for e in rig.events[-2:]] == [False, False]
    flows_before = {(f.table, f.priority, f.match) for f in rig.switch.flows if f.mod.cookie_mask == 0 and f.priority != 20000}
    rig.connect()
    rig.run(4.0)
    assert rig.switch.select_groups() == {G: (1, 2)}
    flows_after = {(f.table, f.priority, f.match) for f in rig.switch.flows if f.priority != 20000}
    assert flows_before <= flows_after
    assert H2 not in {f.match.eth_src for f in rig.switch.flows}  # learned state was reset


def test_conflicts_change_nothing(rig, tmp_path):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    with pytest.raises(BondConflict):
        rig.service.put_bond(fast_bond("other", ports=(2, 3), key=2), rig.now)
    with pytest.raises(BondConflict):
        rig.service.put_bond(fast_bond("other", ports=(3, 4), key=1), rig.now)
    with pytest.raises(BondConflict):
        rig.service.put_bond(fast_bond(), rig.now, replace=False)
    assert [c.name for c in rig.store.load_all()] == ["bond0"]
    assert list(rig.service.configs[DPID]) == ["bond0"]
    with pytest.raises(UnknownBond):
        rig.service.delete_bond(DPID, "nope")


def test_delete_bond_returns_ports_to_plain_switching(rig):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.connect()
    rig.run(4.0)
    rig.apply(rig.service.delete_bond(DPID, "bond0"))
    assert rig.switch.select_groups() == {}
    assert rig.service.bond_configs(DPID) == []
    assert rig.service.store.load_all() == []
    rig.learn(3, H2)
    assert rig.switch.forward(3, H2, "ff:ff:ff:ff:ff:ff").outputs == {1, 2, 4}


def test_lacpdu_on_a_plain_port_is_ignored_and_garbage_never_raises(rig):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.connect()
    pdu = Lacpdu(PortInfo(1, PARTNER_SYSTEM, 9, 1, 1, LacpState(0x3F)), PortInfo(0, "00:00:00:00:00:00", 0, 0, 0, LacpState(0)))
    assert rig.service.packet_in(DPID, 3, encode_frame(PARTNER_SYSTEM, pdu), rig.now).messages == []
    for junk in (b"", b"\x01" * 13, bytes.fromhex("0180c2000002") + bytes(6) + b"\x88\x09\x01", b"\xff" * 200):
        rig.service.packet_in(DPID, 1, junk, rig.now)
        rig.service.packet_in(99, 1, junk, rig.now)  # unknown switch
    assert rig.bond().engine.members[1].counters.bad_rx == 1  # the truncated slow-protocols frame


def _lacpdu_ports(effects: Effects) -> list[int]:
    return [msg.port for _, msg in effects.messages if isinstance(msg, PacketOut)]


class CountingTick:
    """Stands in for an engine's ``tick`` and counts the calls."""

    def __init__(self, engine: LacpBond) -> None:
        self.tick, self.calls = engine.tick, 0

    def __call__(self, now: float):
        self.calls += 1
        return self.tick(now)


def test_tick_runs_only_the_engines_with_a_timer_due(rig):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.apply(rig.service.put_bond(fast_bond("idle", ports=(3, 4), key=2), rig.now))  # no partner there
    rig.connect()
    rig.run(4.0)
    counters = []
    for bond in rig.service.switches[DPID].bonds.values():
        bond.engine.tick = CountingTick(bond.engine)
        counters.append(bond.engine.tick)
    rig.run(2.0)  # 40 ticks of the service
    assert all(1 <= c.calls <= 4 for c in counters)  # woken for the periodic timers, about once a second
    assert rig.bond().engine.is_up()


def test_a_deleted_bond_or_a_disconnected_switch_sends_no_more_lacpdus(rig):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.apply(rig.service.put_bond(fast_bond("other", ports=(3, 4), key=2), rig.now))
    rig.connect()
    rig.run(4.0)
    rig.apply(rig.service.delete_bond(DPID, "other"))
    sent = [p for step in range(1, 41) for p in _lacpdu_ports(rig.service.tick(rig.now + step * 0.05))]
    assert sorted(set(sent)) == [1, 2]
    rig.apply(rig.service.switch_disconnected(DPID))
    assert all(rig.service.tick(rig.now + 2 + step * 0.05).messages == [] for step in range(1, 41))


def test_lacpdus_follow_a_bond_whose_ports_change(rig):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.connect()
    rig.run(4.0)
    rig.apply(rig.service.put_bond(fast_bond(ports=(2, 3)), rig.now))
    pdu = Lacpdu(PortInfo(1, PARTNER_SYSTEM, 9, 1, 3, LacpState(0x3F)), PortInfo(0, "00:00:00:00:00:00", 0, 0, 0, LacpState(0)))
    frame = encode_frame(PARTNER_SYSTEM, pdu)
    assert rig.service.packet_in(DPID, 1, frame, rig.now).messages == []  # port 1 left the bond
    assert _lacpdu_ports(rig.service.packet_in(DPID, 3, frame, rig.now)) == [3]  # a stale view: answered
    assert rig.bond().engine.members[3].counters.rx == 1


def test_store_refuses_garbage_and_keeps_it(tmp_path):
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    before = bad.read_bytes()
    with pytest.raises(StoreError, match="bad.sqlite3"):
        BondStore(str(bad))
    assert bad.read_bytes() == before


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError) as err:
        BondConfig.from_dict(DPID, {"ports": [1, 1]}, name="b", key=1)
    assert err.value.field == "ports"
    with pytest.raises(ConfigError) as err:
        BondConfig.from_dict(DPID, {"ports": [1], "colour": "red"}, name="b", key=1)
    assert err.value.field == "colour"
    with pytest.raises(ConfigError) as err:
        BondConfig.from_dict(DPID, {"ports": [1, 2], "min_links": 3}, name="b", key=1)
    assert err.value.field == "min_links"
    config = BondConfig.from_dict(DPID, {"ports": [2, 1], "mode": "passive"}, name="b", key=5)
    stored = {k: v for k, v in config.to_dict().items() if k != "dpid"}
    assert BondConfig.from_dict(DPID, stored) == config


def test_a_bond_whose_timers_fail_does_not_stop_the_others(rig, monkeypatch):
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    rig.apply(rig.service.put_bond(fast_bond("bond1", ports=(3, 4), key=2), rig.now))
    rig.connect()
    rig.run(4.0)
    broken, healthy = (rig.service.switches[DPID].bonds[name] for name in ("bond0", "bond1"))

    def boom(now: float):
        raise RuntimeError("engine bug")

    monkeypatch.setattr(broken.engine, "tick", boom)
    sent_before = healthy.engine.members[3].counters.tx
    errors: list[str] = []
    for _ in range(100):  # 5 s
        rig.now = round(rig.now + 0.05, 6)
        effects = rig.service.tick(rig.now)
        errors += effects.errors
        rig.apply(effects)
    assert healthy.engine.members[3].counters.tx > sent_before  # bond1 (no partner) kept transmitting
    assert errors and all("bond0" in e and "engine bug" in e for e in errors)
    assert 3 <= len(errors) <= 6  # retried about once a second, not on every tick
    monkeypatch.undo()
    rig.run(8.0)
    assert rig.switch.select_groups()[broken.group_id] == (1, 2)  # and it recovers once the bug is gone


def test_lacp_meter_rate_is_the_services(tmp_path):
    rig = Rig(tmp_path)
    rig.service = LagService(rig.store, lacp_meter_pps=7)
    rig.connect()
    rig.apply(rig.service.put_bond(fast_bond(), rig.now))
    lacp = {i: m for i, m in rig.switch.meters.items() if i in (lacp_meter(1), lacp_meter(2))}
    assert {m.rate_pps for m in lacp.values()} == {7} and len(lacp) == 2
