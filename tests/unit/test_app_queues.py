"""The Ryu shell's queues: LACPDUs are handled before queued learning, the learning queue is
bounded, a switch's outbox drops only its oldest LACPDU packet-outs and reports a switch that
takes no writes; meters that cannot count packets a second are not used."""

from __future__ import annotations

import types

from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3 as ofp

from ryu_lag import app as shell
from ryu_lag import ofp_ryu
from ryu_lag.app import LEARN_BUDGET, LEARN_QUEUE_MAX, LagApp
from ryu_lag.bfd import BfdConfig, BondBfd, Discriminators
from ryu_lag.config import BondConfig
from ryu_lag.ofp_ryu import OUTBOX_MAX_PDUS, OUTBOX_STUCK_TIMEOUT, Outbox
from ryu_lag.openflow import Message
from ryu_lag.lacp import Lacpdu, LacpState, PortInfo, encode_frame
from ryu_lag.lacp.pdu import NULL_PORT_INFO
from ryu_lag.service import LagService, PortDesc
from ryu_lag.store import BondStore
from ryu_lag.switching import QUEUE_FULL

DPID = 7
PARTNER = PortInfo(32768, "02:00:00:00:00:99", 9, 32768, 1,
                   LacpState.ACTIVITY | LacpState.TIMEOUT | LacpState.AGGREGATION)


class FakeDatapath:
    def __init__(self) -> None:
        self.id = DPID
        self.xid = 0
        self.sent: list[bytes] = []
        self.gate = hub.Event()  # send blocks until set: a switch that reads nothing
        self.gate.set()

    def send(self, buf: bytes) -> bool:
        self.gate.wait()
        self.sent.append(buf)
        return True


class FakeOutbox:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def put_messages(self, msgs: list[Message]) -> None:
        self.sent.extend(msgs)


def connected_app(tmp_path, bfd: bool = False) -> tuple[LagApp, FakeDatapath]:
    """A LagApp shell (no Ryu around it) over a real service with switch DPID and a fast bond on ports 1, 2
    (with BFD if asked)."""
    store = BondStore(str(tmp_path / "state.sqlite3"))
    body: dict = {"name": "bond0", "ports": [1, 2], "rate": "fast"}
    if bfd:
        body["bfd"] = {}
    store.put(BondConfig.from_dict(DPID, body, key=1))
    app = LagApp.__new__(LagApp)
    app.service = LagService(store)
    datapath = FakeDatapath()
    app.datapaths = {DPID: datapath}
    app.outboxes = {DPID: FakeOutbox()}  # type: ignore[dict-item]
    app._learn_queue = shell.collections.deque()
    app._learn_wake = hub.Event()
    ports = [PortDesc(p, f"0e:00:00:00:00:0{p}", True) for p in (1, 2, 3)]
    app.execute(app.service.switch_connected(DPID, ports, None, True, 0.0))
    return app, datapath


def packet_in(datapath: FakeDatapath, in_port: int, frame: bytes) -> types.SimpleNamespace:
    return types.SimpleNamespace(msg=types.SimpleNamespace(datapath=datapath, match={"in_port": in_port}, data=frame))


def data_frame(n: int) -> bytes:
    return bytes.fromhex("ffffffffffff") + bytes([2, 0]) + n.to_bytes(4, "big") + b"\x08\x00" + bytes(46)


def test_a_lacpdu_is_handled_at_once_behind_a_full_learning_queue(tmp_path):
    app, datapath = connected_app(tmp_path)
    for n in range(LEARN_QUEUE_MAX + 10):
        LagApp._packet_in(app, packet_in(datapath, 3, data_frame(n)))
    lacpdu = encode_frame("02:00:00:00:00:99", Lacpdu(actor=PARTNER, partner=NULL_PORT_INFO))
    LagApp._packet_in(app, packet_in(datapath, 1, lacpdu))

    runtime = app.service.switches[DPID]
    member = runtime.bonds["bond0"].engine.members[1]
    assert member.counters.rx == 1  # handled before any of the learning packet-ins
    assert runtime.switch.mac_count() == 0
    assert len(app._learn_queue) == LEARN_QUEUE_MAX
    assert runtime.switch.learn_dropped[QUEUE_FULL] == 10

    assert app.learn_some() == LEARN_BUDGET  # one round's budget, oldest first
    assert runtime.switch.mac_count() == LEARN_BUDGET
    assert runtime.switch.macs()["02:00:00:00:00:00"] == 3


def test_a_bfd_frame_on_a_member_running_bfd_is_handled_at_once_too(tmp_path):
    app, datapath = connected_app(tmp_path, bfd=True)
    for n in range(LEARN_QUEUE_MAX):
        LagApp._packet_in(app, packet_in(datapath, 3, data_frame(n)))
    peer = BondBfd(BfdConfig(), [1], Discriminators(500), jitter=lambda: 0.5)
    ((port, frame),) = peer.set_link(1, True, 0.0, "02:00:00:00:09:01").transmit
    LagApp._packet_in(app, packet_in(datapath, port, frame))
    bfd = app.service.switches[DPID].bonds["bond0"].bfd
    assert bfd is not None and bfd.members[1].session.remote_discriminator != 0  # it heard the peer already
    LagApp._packet_in(app, packet_in(datapath, 3, frame))  # the same frame from a plain port: learning
    assert len(app._learn_queue) == LEARN_QUEUE_MAX


def test_the_outbox_drops_the_oldest_lacpdus_of_a_stuck_switch_never_a_mod():
    datapath = FakeDatapath()
    datapath.gate.clear()
    drops: list[int] = []
    outbox = Outbox(datapath, lambda: drops.append(1))
    outbox.put(False, b"mod-0")
    hub.sleep(0)  # the drain thread takes mod-0 and blocks on the switch
    assert outbox.writing_since is not None
    for n in range(OUTBOX_MAX_PDUS + 5):
        outbox.put(True, b"pdu-%d" % n)
    outbox.put(False, b"mod-1")
    assert len(drops) == 5
    assert [buf for _, buf in outbox.items][:2] == [b"pdu-5", b"pdu-6"]
    assert outbox.items[-1] == (False, b"mod-1")
    assert outbox.stuck(outbox.writing_since + 1) is None
    assert "no write" in outbox.stuck(outbox.writing_since + OUTBOX_STUCK_TIMEOUT + 1)
    datapath.gate.set()
    for _ in range(OUTBOX_MAX_PDUS + 5):
        hub.sleep(0)
    assert datapath.sent[0] == b"mod-0" and datapath.sent[-1] == b"mod-1" and outbox.empty()
    outbox.close()


def test_the_outbox_reports_a_switch_with_too_many_mods_waiting(monkeypatch):
    monkeypatch.setattr(ofp_ryu, "OUTBOX_MAX_BYTES", 100)
    datapath = FakeDatapath()
    datapath.gate.clear()
    outbox = Outbox(datapath, lambda: None)
    for _ in range(3):
        outbox.put(False, bytes(60))
    assert "bytes of flow, group and meter mods" in outbox.stuck(0.0)
    outbox.close()
    datapath.gate.set()


def test_meters_must_count_packets_with_a_drop_band():
    def features(max_meter: int, band_types: int, capabilities: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(max_meter=max_meter, band_types=band_types, capabilities=capabilities)

    drop = 1 << ofp.OFPMBT_DROP
    assert shell.meters_count_packets(features(64, drop, ofp.OFPMF_PKTPS | ofp.OFPMF_KBPS | ofp.OFPMF_BURST))
    assert not shell.meters_count_packets(features(64, drop, ofp.OFPMF_KBPS | ofp.OFPMF_BURST))  # kbps only
    assert not shell.meters_count_packets(features(64, 1 << ofp.OFPMBT_DSCP_REMARK, ofp.OFPMF_PKTPS))
    assert not shell.meters_count_packets(features(0, drop, ofp.OFPMF_PKTPS))


def test_sources_not_learned_are_logged_at_most_once_a_minute(tmp_path, caplog):
    app, datapath = connected_app(tmp_path)
    app._learn_drops_logged = {}
    for n in range(LEARN_QUEUE_MAX + 3):
        LagApp._packet_in(app, packet_in(datapath, 3, data_frame(n)))
    with caplog.at_level("WARNING", logger="ryu_lag"):
        app._log_learn_drops(100.0)
        for n in range(5):
            LagApp._packet_in(app, packet_in(datapath, 3, data_frame(n)))
        app._log_learn_drops(130.0)  # more drops, but within the minute: nothing
        app._log_learn_drops(160.0)
        app._log_learn_drops(300.0)  # no new drops: nothing
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "3 sources not learned" in lines[0] and "queue_full 3" in lines[0]
    assert "5 sources not learned" in lines[1] and "queue_full 8" in lines[1]
