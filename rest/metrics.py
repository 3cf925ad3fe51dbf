"""Prometheus metrics: LACP and BFD state read from the service at scrape time, this instance's
part in the cluster and its store (from the app's cluster status), and REST requests.

Each :class:`RestMetrics` has its own ``CollectorRegistry``, so several apps (and tests)
never share series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rest.views import ROLE_EQUAL, ROLE_MASTER, known_dpids, selection
from ryu_lag.bfd import BondBfd, State
from ryu_lag.bfd.session import US
from ryu_lag.config import format_dpid
from ryu_lag.lacp import MuxState
from ryu_lag.service import LagService
from ryu_lag.switching import LEARN_DROP_REASONS

SELECTIONS = ("selected", "unselected", "standby")
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})


_BOND = ["dpid", "bond"]
_MEMBER = ["dpid", "bond", "port"]


class LacpCollector(Collector):
    """Switch, bond and member series from the service's current state."""

    def __init__(self, service: LagService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"ryu_lag_{name}", doc, labels=labels)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"ryu_lag_member_{name}", doc, labels=_MEMBER)

        connected = gauge("switch_connected", "1 while the switch is connected", ["dpid"])
        connections = gauge("switches_connected", "switches connected now", [])
        bond_up = gauge("bond_up", "1 while at least min_links members distribute", _BOND)
        bond_members = gauge("bond_members", "configured members of the bond", _BOND)
        distributing = gauge("bond_distributing_members", "members distributing now", _BOND)
        link = gauge("member_link_up", "1 while the member's link is up", _MEMBER)
        mux = gauge("member_mux_state", "1 for the member's current mux state", [*_MEMBER, "state"])
        selected = gauge("member_selection", "1 for the member's current selection", [*_MEMBER, "selection"])
        enabled = gauge("member_enabled", "1 while the member carries traffic (distributing)", _MEMBER)
        timeout = gauge("member_lacp_timeout_seconds", "LACP timeout (3, 90, or 0 before any LACPDU)", _MEMBER)
        actor = gauge("member_actor_state", "actor state octet as sent in LACPDUs", _MEMBER)
        partner = gauge("member_partner_state", "partner state octet as last received", _MEMBER)
        rx = counter("lacpdus_received", "LACPDUs received")
        tx = counter("lacpdus_sent", "LACPDUs sent")
        bad = counter("bad_lacpdus_received", "malformed LACPDUs received")
        expired = counter("expirations", "times the partner's information expired")
        macs = gauge("learned_macs", "MAC addresses learned on the switch now", ["dpid"])
        paused = gauge("learning_paused", "1 while learning is paused because the switch's MAC table is full", ["dpid"])
        learn_dropped = CounterMetricFamily(
            "ryu_lag_learn_dropped", "sources not learned since the switch connected, by reason "
            "(table_full: the MAC table was full; queue_full: the controller's learning queue was full)",
            labels=["dpid", "reason"])
        pdus_dropped = CounterMetricFamily(
            "ryu_lag_lacpdu_out_dropped", "LACPDU packet-outs dropped since the switch connected because the "
            "switch did not read them", labels=["dpid"])

        bfd_bonds: list[tuple[list[str], BondBfd]] = []
        connections.add_metric([], len(self.service.switches))
        for dpid in known_dpids(self.service):
            dpid_s = format_dpid(dpid)
            runtime = self.service.switches.get(dpid)
            connected.add_metric([dpid_s], 1 if runtime is not None else 0)
            if runtime is not None:
                learner = runtime.switch
                macs.add_metric([dpid_s], learner.mac_count())
                paused.add_metric([dpid_s], 0 if learner.learning else 1)
                for reason in LEARN_DROP_REASONS:
                    learn_dropped.add_metric([dpid_s, reason], learner.learn_dropped[reason])
                pdus_dropped.add_metric([dpid_s], learner.packet_outs_dropped)
            for name, config in self.service.configs.get(dpid, {}).items():
                bond = runtime.bonds.get(name) if runtime is not None else None
                engine = bond.engine if bond is not None else None
                bond_members.add_metric([dpid_s, name], len(config.ports))
                bond_up.add_metric([dpid_s, name], 1 if engine is not None and engine.is_up() else 0)
                distributing.add_metric([dpid_s, name], engine.distributing_count() if engine is not None else 0)
                if engine is None:
                    continue
                if bond is not None and bond.bfd is not None:
                    bfd_bonds.append(([dpid_s, name], bond.bfd))
                for port, member in sorted(engine.members.items()):
                    labels = [dpid_s, name, str(port)]
                    link.add_metric(labels, 1 if member.link_up else 0)
                    for state in MuxState:
                        mux.add_metric([*labels, state.value], 1 if member.mux is state else 0)
                    current = selection(member)
                    for choice in SELECTIONS:
                        selected.add_metric([*labels, choice], 1 if current == choice else 0)
                    enabled.add_metric(labels, 1 if member.enabled else 0)
                    timeout.add_metric(labels, member.lacp_timeout_seconds())
                    actor.add_metric(labels, int(member.actor_state()))
                    partner.add_metric(labels, int(member.partner.state))
                    rx.add_metric(labels, member.counters.rx)
                    tx.add_metric(labels, member.counters.tx)
                    bad.add_metric(labels, member.counters.bad_rx)
                    expired.add_metric(labels, member.counters.expirations)
        yield from (connected, connections, bond_up, bond_members, distributing, link, mux, selected, enabled,
                    timeout, actor, partner, rx, tx, bad, expired, macs, paused, learn_dropped, pdus_dropped)
        yield from _bfd_metrics(bfd_bonds)


def _bfd_metrics(bonds: list[tuple[list[str], BondBfd]]) -> Iterator[Metric]:
    """Member series of the bonds running BFD (``bonds``: their dpid and name labels, and their BondBfd)."""

    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"ryu_lag_member_bfd_{name}", doc, labels=_MEMBER)

    def counter(name: str, doc: str) -> CounterMetricFamily:
        return CounterMetricFamily(f"ryu_lag_member_bfd_{name}", doc, labels=_MEMBER)

    state = GaugeMetricFamily(
        "ryu_lag_member_bfd_state", "1 for the member's current BFD session state", labels=[*_MEMBER, "state"])
    gating = gauge("gating", "1 while BFD has a say (the session came Up since the link did)")
    gate_open = gauge("gate_open", "1 while BFD lets the member carry traffic (LACP must say distributing too)")
    detection = gauge("detection_time_seconds", "BFD detection time agreed with the partner (0 before any packet)")
    rx = counter("packets_received", "BFD control packets received and accepted")
    tx = counter("packets_sent", "BFD control packets sent")
    bad = counter("packets_bad", "BFD frames received and discarded (malformed, or not for this session)")
    changes = counter("state_changes", "BFD session state changes")
    for bond_labels, bfd in bonds:
        for port, member in bfd.members.items():
            labels = [*bond_labels, str(port)]
            session = member.session
            for choice in State:
                state.add_metric([*labels, choice.name.lower()], 1 if session.state is choice else 0)
            gating.add_metric(labels, 1 if bfd.gating(port) else 0)
            gate_open.add_metric(labels, 1 if bfd.gate_open(port) else 0)
            detection_us = session.detection_time_us
            detection.add_metric(labels, detection_us * US if detection_us is not None else 0)
            rx.add_metric(labels, session.counters.rx)
            tx.add_metric(labels, session.counters.tx)
            bad.add_metric(labels, session.counters.bad_rx)
            changes.add_metric(labels, session.counters.state_changes)
    yield from (state, gating, gate_open, detection, rx, tx, bad, changes)


class ClusterCollector(Collector):
    """Mastership, takeovers, step-downs and the store's health and load, from ``app.cluster_status()``."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status()
        store = status["store"]
        alone = status["election"] is None
        master = GaugeMetricFamily(
            "ryu_lag_switch_master", "1 while this instance is the switch's master: it holds the OpenFlow MASTER "
            "role, or, alone (no election), the EQUAL role", labels=["dpid"])
        for switch in status["switches"]:
            role = switch["role"]
            master.add_metric([switch["dpid"]], 1 if role == ROLE_MASTER or (alone and role == ROLE_EQUAL) else 0)
        instances = GaugeMetricFamily("ryu_lag_cluster_instances", "live instances of the cluster (this one included)")
        instances.add_metric([], len(status["instances"]))
        takeovers = CounterMetricFamily(
            "ryu_lag_cluster_takeovers", "switches this instance became master of", status["takeovers"])
        stepdowns = CounterMetricFamily(
            "ryu_lag_cluster_stepdowns", "masterships this instance lost or gave up", status["stepdowns"])
        healthy = GaugeMetricFamily(
            "ryu_lag_store_healthy", "1 while the store answers (0 after a failed read or write)",
            int(store["healthy"]))
        requests = CounterMetricFamily(
            "ryu_lag_store_requests", "store reads and writes made by this instance", store["requests"])
        seconds = CounterMetricFamily(
            "ryu_lag_store_request_seconds", "time spent in store reads and writes by this instance",
            store["request_seconds"])
        yield from (master, instances, takeovers, stepdowns, healthy, requests, seconds)
        election = status["election"]
        if election is not None:
            yield GaugeMetricFamily(
                "ryu_lag_election_reachable", "1 while the election (etcd) answers this instance",
                int(election["reachable"]))


class RestMetrics:
    """One app's metrics registry: the LACP and cluster collectors and the REST request counter.

    ``cluster_status``: the app's ``cluster_status`` (read at scrape time).
    """

    def __init__(self, service: LagService, cluster_status: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LacpCollector(service))
        self.registry.register(ClusterCollector(cluster_status))
        self.requests = Counter(
            "ryu_lag_rest_requests",
            "REST requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        # Prometheus's labels() validates and builds a key per call; a dict of children is cheaper.
        self._request_counts: dict[tuple[str, str, int], Counter] = {}

    def observe(self, route: str, method: str, status: int) -> None:
        """Count a request; a method outside HTTP's standard ones counts as ``other``, so that
        clients cannot grow the label set without bound."""
        method = method if method in _HTTP_METHODS else "other"
        key = (route, method, status)
        child = self._request_counts.get(key)
        if child is None:
            child = self._request_counts[key] = self.requests.labels(route=route, method=method, status=str(status))
        child.inc()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
