"""The Ryu application: a thin shell around ``ryu_lag.service.LagService``.

Every handler finds the switch, calls the service with the current time, and
sends what comes back; ``_execute`` is the one place that talks to switches.
The LACP clock ticks from one green thread. Nothing here decides anything.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
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
from ryu_lag.config import BondConfig
from ryu_lag.ofp_ryu import port_up, send
from ryu_lag.openflow import OFPP_LOCAL, Table
from ryu_lag.service import Effects, LagService, PortDesc
from ryu_lag.store import BondStore, StoreError

LOG = logging.getLogger("ryu_lag")


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


class LagApp(app_manager.RyuApp):
    """LACP link aggregation and a LAG-aware learning switch for OpenFlow 1.3."""

    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options.register()
        self.tick_interval = CONF.lag_tick_interval
        try:
            store = BondStore(CONF.lag_db, fsync=CONF.lag_db_fsync)
        except StoreError as exc:
            LOG.critical("ryu_lag cannot start: %s", exc)
            raise SystemExit(2) from exc
        self.service = LagService(store, mac_age=CONF.lag_mac_age, lacp_meter_pps=CONF.lag_lacp_meter_pps)
        self.datapaths: dict[int, Any] = {}
        self._pending_meters: dict[int, Any] = {}
        install_rest_api(kwargs["wsgi"], self)
        LOG.info("ryu_lag: state in %s, %d bonds configured", CONF.lag_db, sum(len(v) for v in self.service.configs.values()))

    def start(self) -> Any:
        thread = super().start()
        self.threads.append(hub.spawn(self._ticker))
        # What is loaded by now (Ryu, its libraries, every app) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise stop every switch and
        # REST client for ~80 ms every few seconds under load.
        gc.freeze()
        return thread

    # ---- the one place that sends ------------------------------------------
    def execute(self, effects: Effects) -> None:
        """Send the service's messages to their switches, one write per switch."""
        for dpid, msgs in effects.by_switch().items():
            datapath = self.datapaths.get(dpid)
            if datapath is not None:
                send(datapath, msgs)
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
        while self.is_active:
            hub.sleep(self.tick_interval)
            try:
                self.execute(self.service.tick(time.monotonic()))
            except Exception:  # noqa: BLE001 - keep ticking whatever happens
                LOG.exception("error in LACP tick")

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
            # Ask whether it has meters; the switch is set up when the answer comes.
            request = datapath.ofproto_parser.OFPMeterFeaturesStatsRequest(datapath, 0)
            datapath.set_xid(request)
            self._pending_meters[datapath.id] = request.xid
            datapath.send_msg(request)
            self._connect_when_silent(datapath)
        elif self.datapaths.get(datapath.id) is datapath:
            del self.datapaths[datapath.id]
            LOG.info("switch %016x disconnected", datapath.id)
            self.execute(self.service.switch_disconnected(datapath.id))

    def _connect_when_silent(self, datapath: Any) -> None:
        """Set the switch up without meters if it never answers the meter question."""

        def fallback() -> None:
            hub.sleep(2.0)
            if self._pending_meters.get(datapath.id) is not None and datapath.is_active:
                self._connect(datapath, meters=False)

        hub.spawn(fallback)

    @set_ev_cls(ofp_event.EventOFPMeterFeaturesStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _meter_features(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        meters = any(f.max_meter > 0 for f in ev.msg.body)
        self._connect(datapath, meters)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @_guarded
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        datapath = msg.datapath
        if self._pending_meters.get(datapath.id) == msg.xid:
            self._connect(datapath, meters=False)
            return
        LOG.warning("switch %016x error type %d code %d", datapath.id or 0, msg.type, msg.code)

    def _connect(self, datapath: Any, meters: bool) -> None:
        if self._pending_meters.pop(datapath.id, None) is None:
            return
        self.datapaths[datapath.id] = datapath
        ports = [port_desc(p) for no, p in datapath.ports.items() if no <= datapath.ofproto.OFPP_MAX]
        local = datapath.ports.get(OFPP_LOCAL)
        LOG.info("switch %016x connected: %d ports, meters %s", datapath.id, len(ports), "yes" if meters else "no")
        self.execute(
            self.service.switch_connected(
                datapath.id, ports, local.hw_addr if local is not None else None, meters, time.monotonic()
            )
        )

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
        self.execute(self.service.packet_in(datapath.id, msg.match["in_port"], bytes(msg.data), time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    @_guarded
    def _flow_removed(self, ev: Any) -> None:
        msg = ev.msg
        if msg.table_id != Table.ETH_SRC or msg.reason != msg.datapath.ofproto.OFPRR_IDLE_TIMEOUT:
            return
        match = msg.match
        if "metadata" in match and "eth_src" in match:
            self.execute(self.service.flow_removed(msg.datapath.id, match["metadata"], match["eth_src"]))
