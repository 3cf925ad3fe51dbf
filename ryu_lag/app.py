"""The Ryu application: a thin shell around ``ryu_lag.service.LagService``.

Every handler finds the switch, calls the service with the current time, and
sends what comes back; ``execute`` is the one place that talks to switches.
The LACP clock ticks from one green thread. Nothing here decides anything.

A switch that connects is asked whether it has meters that count packets a
second (the only kind ryu_lag's punt meters are), then for our flows, its
groups and its meters; the service resumes it from the answers. SIGTERM and
SIGINT stop the controller as planned: the switches are left forwarding, every
distributing member gets one last LACPDU, the LACP sessions are saved, and the
process exits within ``STOP_DEADLINE`` seconds whatever else is going on.

With ``--lag-store etcd://...`` the instance is one of a cluster (``ryu_lag.cluster``):
it is connected to every switch and acts only for those it is master of; for the
others it keeps the ports, sends nothing but role requests, and takes over (reads the
sessions the master saved and the switch's tables, resumes) the moment the switch
accepts it as master.
Every instance follows the store's changes, whichever instance made them.

Two rules keep LACP timely under load:

- A LACPDU packet-in (or a BFD one on a member running BFD) is handled at once
  in the packet-in handler; any other
  packet-in (learning) goes to a bounded queue that its own green thread works
  off ``LEARN_BUDGET`` at a time, yielding between rounds. A full queue drops
  the newest and counts it (``learn_dropped[QUEUE_FULL]`` of the switch).
- Nothing here blocks on one switch: every switch has an ``Outbox`` (ofp_ryu) drained by
  its own green thread (Ryu's ``Datapath.send`` blocks once 16 writes wait).
  A switch that stops reading loses its oldest LACPDU packet-outs past
  ``OUTBOX_MAX_PDUS`` (counted); flow, group and meter mods are never dropped:
  a switch that has not taken a write for ``OUTBOX_STUCK_TIMEOUT`` seconds, or
  has more than ``OUTBOX_MAX_BYTES`` waiting, is disconnected, and resumed
  when it connects again.
"""

from __future__ import annotations

import collections
import functools
import gc
import logging
import os
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable

from ryu.app.wsgi import WSGIApplication
from ryu.base import app_manager
from ryu.cfg import CONF
from ryu.controller import ofp_event
from ryu.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3

from rest.api import install as install_rest_api
from ryu_lag import options
from ryu_lag.bfd import is_bfd_frame
from ryu_lag.cluster import Cluster
from ryu_lag.config import BondConfig, format_dpid
from ryu_lag.mastership import ROLE_NAMES
from ryu_lag.ofp_read import flows_from_stats, groups_from_desc, meters_from_config
from ryu_lag.ofp_ryu import Outbox, port_up
from ryu_lag.openflow import OFPP_LOCAL, ControlMessage, ObservedSwitch, Role, Table
from ryu_lag.service import Effects, LagService, PortDesc, is_lacpdu
from ryu_lag.stores import StoreError, StoreUrlError, TimedStore, open_store, parse_store_url
from ryu_lag.switching import COOKIE, COOKIE_MASK, QUEUE_FULL

LOG = logging.getLogger("ryu_lag")

HANDSHAKE_TIMEOUT = 3.0
"""Seconds a connecting switch has to answer what it has; then its pipeline is set up from scratch."""
MIN_SLEEP = 0.001
"""The shortest the clock sleeps: a deadline that is already due waits this long for the others' turn."""
STOP_DEADLINE = 1.8
"""Seconds from SIGTERM/SIGINT to the process's exit, at the latest."""
_DRAIN_POLL = 0.01
"""Seconds between looks at the switches' send queues during a planned stop."""
LEARN_QUEUE_MAX = 1024
"""Learning packet-ins waiting at most (all switches); past it the newest are dropped and counted."""
LEARN_BUDGET = 64
"""Learning packet-ins handled in one go before the learning thread lets LACP and the rest run."""
LEARN_DROP_LOG_INTERVAL = 60.0
"""Seconds between log lines about sources not learned (never one per frame)."""
SAVE_INTERVAL = 0.1
"""Seconds between looks for LACP sessions to save (in their own thread: a slow store never holds up LACP)."""
CHANGES_WAIT = 1.0
"""Seconds the store follower waits for changes in one call."""
ONF_EXPERIMENTER = 0x4F4E4600
ONFT_ROLE_STATUS = 1911
"""Open vSwitch's OpenFlow 1.3 extension: the switch tells a controller that its role changed."""


def meters_count_packets(features: Any) -> bool:
    """Whether a meter features reply (one body entry) offers what our punt meters need:
    meters, rates in packets a second, and a drop band."""
    ofp = ofproto_v1_3
    return (features.max_meter > 0 and bool(features.capabilities & ofp.OFPMF_PKTPS)
            and bool(features.band_types & (1 << ofp.OFPMBT_DROP)))


def _guarded(handler: Callable[..., None]) -> Callable[..., None]:
    """Log, never raise: one bad event must not stop the controller."""

    @functools.wraps(handler)
    def wrapper(self: LagApp, ev: Any) -> None:
        try:
            handler(self, ev)
        except Exception:  # noqa: BLE001 - the controller must survive any event
            LOG.exception("error handling %s", type(ev).__name__)

    return wrapper


def port_desc(port: Any) -> PortDesc:
    """A Ryu OFPPort as a PortDesc."""
    return PortDesc(port.port_no, port.hw_addr, port_up(port))


@dataclass
class _Handshake:
    """A connecting switch: whether it has meters, and what it has reported of its tables so far."""

    datapath: Any
    meter_xid: int | None = None
    meters: bool = False
    reads: dict[int, str] = field(default_factory=dict)  # xid -> "flows" | "groups" | "meters", while unanswered
    bodies: dict[str, list[Any]] = field(default_factory=lambda: {"flows": [], "groups": [], "meters": []})
    readable: bool = True  # false once a read was refused: then nothing that was read counts
    taking_over: bool = False  # read to take the switch over as its new master (it is connected already)
    sessions: dict[str, Any] = field(default_factory=dict)  # taking over: the saved LACP sessions by bond name


class LagApp(app_manager.RyuApp):
    """LACP link aggregation and a LAG-aware learning switch for OpenFlow 1.3."""

    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options.register()
        self.tick_interval = CONF.lag_tick_interval
        self.instance_id = options.instance_id()
        try:
            url = options.store_url()
            self.cluster: Cluster | None = None
            parsed = parse_store_url(url)
            if parsed.kind == "etcd":  # first: it checks the instance id
                self.cluster = Cluster(parsed.endpoints, self.instance_id, options.advertise_url(),
                                       send=self._send_control, act=self._take_over, stand_by=self._stand_by)
            self.store = TimedStore(open_store(url, fsync=CONF.lag_db_fsync), time.monotonic)
            self.service = LagService(self.store, mac_age=CONF.lag_mac_age, lacp_meter_pps=CONF.lag_lacp_meter_pps,
                                      learn_meter_pps=CONF.lag_learn_meter_pps, max_macs=CONF.lag_max_macs)
        except (StoreUrlError, StoreError, ValueError) as exc:
            LOG.critical("ryu_lag cannot start: %s", exc)
            raise SystemExit(2) from exc
        self.datapaths: dict[int, Any] = {}
        self.outboxes: dict[int, Outbox] = {}
        self._learn_queue: collections.deque[tuple[Any, int, bytes]] = collections.deque()
        self._learn_wake = hub.Event()
        self._learn_drops_logged: dict[int, tuple[float, int]] = {}  # dpid -> (when, total then)
        self._handshakes: dict[int, _Handshake] = {}
        self._stopping = False
        install_rest_api(kwargs["wsgi"], self)
        LOG.info("ryu_lag: state in %s, %d bonds configured%s", url, sum(len(v) for v in self.service.configs.values()),
                 f"; instance {self.instance_id} of a cluster" if self.cluster is not None else "")

    def start(self) -> Any:
        thread = super().start()
        self.threads.append(hub.spawn(self._ticker))
        self.threads.append(hub.spawn(self._learner))
        self.threads.append(hub.spawn(self._saver))
        self.threads.append(hub.spawn(self._follow_store))
        if self.cluster is not None:
            self.threads.append(hub.spawn(self.cluster.run))
        # What is loaded by now (Ryu, its libraries, every app) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise stop every switch and
        # REST client for ~80 ms every few seconds under load.
        gc.freeze()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop_signal)
        return thread

    def stop(self) -> None:
        """Ryu's manager closes the app (a listener that cannot bind, the tests): end our threads."""
        self.is_active = False
        self._learn_wake.set()  # the learner may be waiting for work
        if self.cluster is not None:
            self.cluster.running = False
        super().stop()

    # ---- planned stop ----------------------------------------------------------
    def _stop_signal(self, signum: int, frame: FrameType | None) -> None:
        """Ask the ticker for a planned stop; exit anyway after STOP_DEADLINE (an OS timer, not a green one)."""
        if self._stopping:
            return
        self._stopping = True
        signal.signal(signal.SIGALRM, lambda *_: os._exit(0))
        signal.setitimer(signal.ITIMER_REAL, STOP_DEADLINE)

    def _planned_stop(self) -> None:
        """Leave the switches forwarding, send every distributing member a last LACPDU, save the sessions, exit."""
        LOG.info("ryu_lag stopping: %d switches left forwarding", len(self.datapaths))
        deadline = time.monotonic() + STOP_DEADLINE / 2
        self.execute(self.service.farewell())
        self.execute(self.service.save_sessions(time.monotonic(), everything=True))
        if self.cluster is not None:
            self.cluster.close()  # the others take our switches over now, not when our lease runs out
        while time.monotonic() < deadline and (
            any(not box.empty() for box in self.outboxes.values())
            or any(dp.send_q and not dp.send_q.empty() for dp in self.datapaths.values())
        ):
            hub.sleep(_DRAIN_POLL)
        hub.sleep(_DRAIN_POLL)  # the send loops write what they took last
        logging.shutdown()
        os._exit(0)

    # ---- the one place that sends ------------------------------------------
    def execute(self, effects: Effects) -> None:
        """Queue the service's messages for their switches: per switch, in order, one write per run
        of LACPDU packet-outs or of other messages. Never blocks. A switch this instance stands by
        for (in a cluster) gets nothing."""
        for dpid, msgs in effects.by_switch().items():
            outbox = self.outboxes.get(dpid)
            if outbox is not None and dpid in self.datapaths and self.service.is_master(dpid):
                outbox.put_messages(msgs)
        for error in effects.errors:
            LOG.error("%s", error)
        for event in effects.member_events:
            LOG.info(
                "switch %016x port %d %s distributing", event.dpid, event.port, "started" if event.enabled else "stopped"
            )

    # ---- Python API (REST and tests use it) ---------------------------------
    def put_bond(self, config: BondConfig, *, replace: bool = True) -> None:
        replaced = config.name in self.service.configs.get(config.dpid, {})
        self.execute(self.service.put_bond(config, time.monotonic(), replace=replace))
        LOG.info("switch %016x bond %s %s: ports %s", config.dpid, config.name,
                 "replaced" if replaced else "created", ",".join(map(str, config.ports)))

    def delete_bond(self, dpid: int, name: str) -> None:
        self.execute(self.service.delete_bond(dpid, name))
        LOG.info("switch %016x bond %s deleted", dpid, name)

    def flush_macs(self, dpid: int, logical: int | None = None) -> None:
        self.execute(self.service.flush_macs(dpid, logical))
        LOG.info("switch %016x learned MACs flushed%s", dpid, "" if logical is None else f" on logical port {logical:#x}")

    # ---- clock -----------------------------------------------------------------
    def _ticker(self) -> None:
        """The clock: wakes at the service's next deadline (BFD's 100 ms hellos need it to the
        millisecond), and at least every ``tick_interval`` for the housekeeping."""
        while self.is_active:
            hub.sleep(max(MIN_SLEEP, min(self.tick_interval, self.service.next_deadline() - time.monotonic())))
            if self._stopping:
                self._planned_stop()
            try:
                now = time.monotonic()
                self.execute(self.service.tick(now))
                self._check_outboxes(now)
                self._log_learn_drops(now)
            except Exception:  # noqa: BLE001 - keep ticking whatever happens
                LOG.exception("error in LACP tick")

    def _saver(self) -> None:
        """Save the LACP sessions that changed (the store may take long: etcd away)."""
        while self.is_active:
            hub.sleep(SAVE_INTERVAL)
            if self._stopping:
                return  # the planned stop saves everything itself
            try:
                self.execute(self.service.save_sessions(time.monotonic()))
            except Exception:  # noqa: BLE001 - keep saving whatever happens
                LOG.exception("error saving LACP sessions")

    def _follow_store(self) -> None:
        """Apply the bond changes other instances make (and drain our own, which come back too)."""
        while self.is_active:
            try:
                changes = self.store.poll_changes(CHANGES_WAIT)
                if changes:
                    self.execute(self.service.apply_changes(changes, time.monotonic()))
            except Exception:  # noqa: BLE001 - keep following whatever happens
                LOG.exception("error applying the store's changes")
                hub.sleep(CHANGES_WAIT)

    def _check_outboxes(self, now: float) -> None:
        """Disconnect a switch that takes no writes (it is resumed when it connects again)."""
        for dpid, outbox in list(self.outboxes.items()):
            reason = outbox.stuck(now)
            if reason is not None:
                LOG.warning("switch %016x disconnected: %s", dpid, reason)
                self._drop_switch(dpid)
                try:
                    outbox.datapath.socket.shutdown(socket.SHUT_RDWR)  # also ends a write blocked on it
                except OSError:
                    pass

    def _count_pdu_drop(self, dpid: int) -> None:
        runtime = self.service.switches.get(dpid)
        if runtime is not None:
            runtime.switch.packet_outs_dropped += 1

    def _drop_switch(self, dpid: int) -> None:
        """Forget a switch's connection; its bonds' sessions are kept for the reconnect."""
        del self.datapaths[dpid]
        self.outboxes.pop(dpid).close()
        if self.cluster is not None:
            self.cluster.disconnected(dpid)
        self.execute(self.service.switch_disconnected(dpid))

    # ---- a cluster: roles and takeovers ------------------------------------------------
    def _send_control(self, dpid: int, msgs: list[ControlMessage]) -> None:
        """Role requests and SET_ASYNC: sent whatever our role on the switch."""
        outbox = self.outboxes.get(dpid)
        if outbox is not None:
            outbox.put_messages(msgs)

    def _take_over(self, dpid: int) -> None:
        """The switch accepted us as master: read the sessions the old master saved (in a green
        thread of its own: etcd may be slow) and what the switch has, then act for it."""
        datapath = self.datapaths.get(dpid)
        runtime = self.service.switches.get(dpid)
        if datapath is None or runtime is None:
            return
        handshake = self._handshakes[dpid] = _Handshake(datapath, taking_over=True)
        hub.spawn(self._read_for_take_over, handshake, runtime.meters)

    def _read_for_take_over(self, handshake: _Handshake, meters: bool) -> None:
        dpid = handshake.datapath.id
        try:
            handshake.sessions = {name: data for (_, name), data in self.store.load_sessions(dpid).items()}
        except StoreError as exc:
            LOG.warning("switch %016x: the saved LACP sessions cannot be read (%s): its members negotiate afresh",
                        dpid, exc)
        if self._handshakes.get(dpid) is handshake:
            self._read_tables(handshake, meters)
            self._handshake_timeout(handshake)

    def _stand_by(self, dpid: int) -> None:
        """Another instance is the switch's master: stop acting for it (its bonds stop; the ports are kept)."""
        handshake = self._handshakes.get(dpid)
        if handshake is not None and handshake.taking_over:
            del self._handshakes[dpid]
        self.service.step_down(dpid)

    def master_of(self, dpid: int) -> str | None:
        """The instance mastering a switch, as this one knows (alone: itself, while connected)."""
        if self.cluster is not None:
            return self.cluster.master_of(dpid)
        return self.instance_id if dpid in self.datapaths else None

    def cluster_status(self) -> dict[str, Any]:
        """This instance, its store, and (in a cluster) the instances, masters and roles as it sees them."""
        store = {"url": self.store.url, "kind": parse_store_url(self.store.url).kind,
                 "healthy": self.store.error is None and (self.cluster is None or self.cluster.reachable),
                 "error": self.store.error or (self.cluster.error if self.cluster is not None else None),
                 "requests": self.store.requests,
                 "request_seconds": round(self.store.request_seconds, 6)}
        if self.cluster is not None:
            return {"instance": self.instance_id, "store": store, **self.cluster.status(self.service.is_master)}
        connected = [format_dpid(d) for d in sorted(self.datapaths)]
        return {
            "instance": self.instance_id, "store": store, "election": None,
            "instances": [{"id": self.instance_id, "url": options.advertise_url(), "switches": connected,
                           "masters": connected}],
            "switches": [{"dpid": d, "master": self.instance_id, "generation": None, "role": ROLE_NAMES[Role.EQUAL]}
                         for d in connected],
            "takeovers": 0, "stepdowns": 0,
        }

    def _log_learn_drops(self, now: float) -> None:
        """One line a minute per switch while sources go unlearned."""
        for dpid, runtime in self.service.switches.items():
            total = sum(runtime.switch.learn_dropped.values())
            when, logged = self._learn_drops_logged.get(dpid, (-LEARN_DROP_LOG_INTERVAL, 0))
            if total > logged and now - when >= LEARN_DROP_LOG_INTERVAL:
                self._learn_drops_logged[dpid] = (now, total)
                LOG.warning("switch %016x: %d sources not learned since the last report (%s); %d MACs learned, "
                            "learning %s", dpid, total - logged,
                            ", ".join(f"{k} {v}" for k, v in sorted(runtime.switch.learn_dropped.items())),
                            runtime.switch.mac_count(), "on" if runtime.switch.learning else "paused (table full)")

    # ---- learning, behind LACP and BFD ---------------------------------------------
    def _is_control(self, dpid: int, in_port: int, data: bytes) -> bool:
        """Whether a packet-in is a LACPDU, or a BFD control frame on a member of a bond running BFD:
        handled at once, never queued behind learning."""
        if is_lacpdu(data):
            return True
        runtime = self.service.switches.get(dpid)
        bond = runtime.bond_of_port(in_port) if runtime is not None else None
        return bond is not None and bond.bfd is not None and is_bfd_frame(data, bond.bfd.config)

    def _learner(self) -> None:
        """Work off the learning queue, LEARN_BUDGET packet-ins at a time, yielding in between."""
        while self.is_active:
            if not self._learn_queue:
                self._learn_wake.clear()
                self._learn_wake.wait()
                continue
            self.learn_some()
            hub.sleep(0)

    def learn_some(self) -> int:
        """Learn from at most LEARN_BUDGET queued packet-ins (oldest first); returns how many were taken."""
        queue = self._learn_queue
        now = time.monotonic()
        taken = min(LEARN_BUDGET, len(queue))
        for _ in range(taken):
            datapath, in_port, data = queue.popleft()
            if self.datapaths.get(datapath.id) is not datapath:
                continue  # disconnected since
            try:
                self.execute(self.service.packet_in(datapath.id, in_port, data, now))
            except Exception:  # noqa: BLE001 - one bad frame must not stop learning
                LOG.exception("error learning from a packet-in")
        return taken

    # ---- OpenFlow events ---------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @_guarded
    def _features(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        if datapath.ofproto.OFP_VERSION != ofproto_v1_3.OFP_VERSION:
            LOG.error(
                "switch %016x speaks OpenFlow version 0x%02x; ryu_lag needs OpenFlow 1.3 (0x04): disconnecting",
                ev.msg.datapath_id,
                datapath.ofproto.OFP_VERSION,
            )
            datapath.close()

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_guarded
    def _state_change(self, ev: Any) -> None:
        datapath = ev.datapath
        if datapath.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            if datapath.ofproto.OFP_VERSION != ofproto_v1_3.OFP_VERSION:
                return
            # Ask whether it has meters; what it has is asked next, and the switch is resumed from the answers.
            handshake = self._handshakes[datapath.id] = _Handshake(datapath)
            request = datapath.ofproto_parser.OFPMeterFeaturesStatsRequest(datapath, 0)
            datapath.set_xid(request)
            handshake.meter_xid = request.xid
            datapath.send_msg(request)
            hub.spawn(self._handshake_timeout, handshake)
        elif self.datapaths.get(datapath.id) is datapath:
            LOG.info("switch %016x disconnected", datapath.id)
            self._drop_switch(datapath.id)

    def _handshake_timeout(self, handshake: _Handshake) -> None:
        """Set the switch up from scratch if it does not say what it has in time."""
        hub.sleep(HANDSHAKE_TIMEOUT)
        datapath = handshake.datapath
        if self._handshakes.get(datapath.id) is handshake and datapath.is_active:
            LOG.warning("switch %016x did not report its tables in %g s: setting it up from scratch",
                        datapath.id, HANDSHAKE_TIMEOUT)
            handshake.readable = False
            self._connect(handshake)

    def _read_tables(self, handshake: _Handshake, meters: bool) -> None:
        """Ask for our flows, every group and (with meters) every meter."""
        handshake.meter_xid = None
        handshake.meters = meters
        datapath = handshake.datapath
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        requests = {
            "flows": parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                                COOKIE, COOKIE_MASK, parser.OFPMatch()),
            "groups": parser.OFPGroupDescStatsRequest(datapath, 0),
        }
        if meters:
            requests["meters"] = parser.OFPMeterConfigStatsRequest(datapath, 0, ofp.OFPM_ALL)
        for what, request in requests.items():
            datapath.set_xid(request)
            handshake.reads[request.xid] = what
        for request in requests.values():
            datapath.send_msg(request)

    def _table_reply(self, msg: Any) -> None:
        """One part of a flow, group or meter reply; the switch is resumed once every reply is complete."""
        handshake = self._handshakes.get(msg.datapath.id)
        if handshake is None or msg.xid not in handshake.reads:
            return
        handshake.bodies[handshake.reads[msg.xid]].extend(msg.body)
        if not msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            del handshake.reads[msg.xid]
            if not handshake.reads:
                self._connect(handshake)

    @set_ev_cls(ofp_event.EventOFPMeterFeaturesStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _meter_features(self, ev: Any) -> None:
        handshake = self._handshakes.get(ev.msg.datapath.id)
        if handshake is not None and handshake.meter_xid == ev.msg.xid:
            meters = any(f.max_meter > 0 for f in ev.msg.body)
            usable = any(meters_count_packets(f) for f in ev.msg.body)
            if meters and not usable:
                LOG.warning("switch %016x: its meters do not count packets a second with a drop band: "
                            "LACP and learning punts go unmetered", handshake.datapath.id)
            self._read_tables(handshake, usable)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _flow_stats(self, ev: Any) -> None:
        self._table_reply(ev.msg)

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _group_desc(self, ev: Any) -> None:
        self._table_reply(ev.msg)

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _meter_config(self, ev: Any) -> None:
        self._table_reply(ev.msg)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @_guarded
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        datapath = msg.datapath
        handshake = self._handshakes.get(datapath.id)
        if handshake is not None and handshake.meter_xid == msg.xid:
            self._read_tables(handshake, meters=False)
            return
        if handshake is not None and msg.xid in handshake.reads:
            LOG.warning("switch %016x refused to report its %s (error type %d code %d): setting it up from scratch",
                        datapath.id, handshake.reads.pop(msg.xid), msg.type, msg.code)
            handshake.readable = False
            if not handshake.reads:
                self._connect(handshake)
            return
        ofp = datapath.ofproto
        refused_as_slave = (msg.type, msg.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE)
        if self.cluster is not None and (refused_as_slave or msg.type == ofp.OFPET_ROLE_REQUEST_FAILED):
            if self.datapaths.get(datapath.id) is datapath:
                self.cluster.refused(datapath.id, "the switch refused us as master" if refused_as_slave
                                     else f"the switch refused our role request (code {msg.code})")
            return
        LOG.warning("switch %016x error type %d code %d", datapath.id or 0, msg.type, msg.code)

    def _connect(self, handshake: _Handshake) -> None:
        datapath = handshake.datapath
        if self._handshakes.pop(datapath.id, None) is not handshake:
            return
        if handshake.taking_over:
            self._resume_as_master(handshake)
            return
        old = self.outboxes.pop(datapath.id, None)
        if old is not None:
            old.close()
        self.datapaths[datapath.id] = datapath
        self.outboxes[datapath.id] = Outbox(datapath, functools.partial(self._count_pdu_drop, datapath.id))
        ports = [port_desc(p) for no, p in datapath.ports.items() if no <= datapath.ofproto.OFPP_MAX]
        local = datapath.ports.get(OFPP_LOCAL)
        observed = self._observed(handshake)
        standby = self.cluster is not None
        LOG.info(
            "switch %016x connected: %d ports, meters %s, %s",
            datapath.id, len(ports), "yes" if handshake.meters else "no",
            "standing by until it accepts us as master" if standby
            else f"resuming over {len(observed.flows)} flows of ours" if observed is not None
            else "pipeline set up from scratch",
        )
        now = time.monotonic()
        self.execute(
            self.service.switch_connected(
                datapath.id, ports, local.hw_addr if local is not None else None, handshake.meters, now,
                observed=observed, master=not standby,
            )
        )
        if self.cluster is not None:
            self.cluster.connected(datapath.id, now)

    @staticmethod
    def _observed(handshake: _Handshake) -> ObservedSwitch | None:
        """What the switch reported of its tables; None when a read was refused or timed out."""
        if not handshake.readable:
            return None
        return ObservedSwitch(
            flows=tuple(flows_from_stats(handshake.bodies["flows"])),
            groups=tuple(groups_from_desc(handshake.bodies["groups"])),
            meters=tuple(meters_from_config(handshake.bodies["meters"])),
        )

    def _resume_as_master(self, handshake: _Handshake) -> None:
        """Take a switch over from its old master, from what the switch reported just now."""
        datapath = handshake.datapath
        if self.datapaths.get(datapath.id) is not datapath or self.cluster is None:
            return
        if self.cluster.roles.role(datapath.id) != Role.MASTER:
            return  # stood down while reading
        observed = self._observed(handshake)
        LOG.info("switch %016x: taking over as master, %s", datapath.id,
                 f"resuming over {len(observed.flows)} flows of ours" if observed is not None
                 else "its tables unreadable: pipeline set up from scratch")
        self.execute(self.service.take_over(datapath.id, observed, handshake.sessions, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @_guarded
    def _port_status(self, ev: Any) -> None:
        msg = ev.msg
        datapath = msg.datapath
        if msg.desc.port_no > datapath.ofproto.OFPP_MAX:
            return
        if msg.reason == datapath.ofproto.OFPPR_DELETE:
            self.execute(self.service.port_deleted(datapath.id, msg.desc.port_no, time.monotonic()))
        else:
            self.execute(self.service.port_changed(datapath.id, port_desc(msg.desc), time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @_guarded
    def _packet_in(self, ev: Any) -> None:
        msg = ev.msg
        datapath = msg.datapath
        if datapath.id not in self.datapaths:
            return
        data = bytes(msg.data)
        if self._is_control(datapath.id, msg.match["in_port"], data):
            self.execute(self.service.packet_in(datapath.id, msg.match["in_port"], data, time.monotonic()))
        elif not self.service.is_master(datapath.id):
            return  # the master learns
        elif len(self._learn_queue) < LEARN_QUEUE_MAX:
            self._learn_queue.append((datapath, msg.match["in_port"], data))
            self._learn_wake.set()
        else:
            runtime = self.service.switches.get(datapath.id)
            if runtime is not None:
                runtime.switch.learn_dropped[QUEUE_FULL] += 1

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    @_guarded
    def _flow_removed(self, ev: Any) -> None:
        msg = ev.msg
        if msg.table_id != Table.ETH_SRC or msg.reason != msg.datapath.ofproto.OFPRR_IDLE_TIMEOUT:
            return
        match = msg.match
        if "metadata" in match and "eth_src" in match:
            self.execute(self.service.flow_removed(msg.datapath.id, match["metadata"], match["eth_src"]))

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    @_guarded
    def _role_reply(self, ev: Any) -> None:
        msg = ev.msg
        if self.cluster is not None and self.datapaths.get(msg.datapath.id) is msg.datapath:
            self.cluster.role_reply(msg.datapath.id, msg.role, msg.generation_id)

    @set_ev_cls(ofp_event.EventOFPExperimenter, MAIN_DISPATCHER)
    @_guarded
    def _experimenter(self, ev: Any) -> None:
        """Open vSwitch's role status: another controller became master, so we are a slave now."""
        msg = ev.msg
        if (self.cluster is None or (msg.experimenter, msg.exp_type) != (ONF_EXPERIMENTER, ONFT_ROLE_STATUS)
                or self.datapaths.get(msg.datapath.id) is not msg.datapath or len(msg.data) < 16):
            return
        role, _, generation = struct.unpack_from("!IB3xQ", bytes(msg.data))
        if role != Role.MASTER:
            self.cluster.refused(msg.datapath.id, f"the switch says another controller is master (generation {generation})")
