"""GET /metrics: Prometheus text with LACP state, bonds, switches and REST requests."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.rest.conftest import DPID, DPID_S, Rig

BOND = {"dpid": DPID_S, "bond": "bond0"}


def samples(rig: Rig) -> dict[tuple[str, frozenset], float]:
    r = rig.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.body.decode())
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_lacp_state_and_counters(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    connected.attach_partner([1, 2])
    connected.run(3.0)
    found = samples(connected)
    assert value(found, "ryu_lag_switches_connected") == 1
    assert value(found, "ryu_lag_switch_connected", dpid=DPID_S) == 1
    assert value(found, "ryu_lag_bond_distributing_members", **BOND) == 2
    assert value(found, "ryu_lag_bond_members", **BOND) == 2
    assert value(found, "ryu_lag_bond_up", **BOND) == 1
    member = {**BOND, "port": "1"}
    assert value(found, "ryu_lag_member_mux_state", **member, state="distributing") == 1
    assert value(found, "ryu_lag_member_mux_state", **member, state="detached") == 0
    assert value(found, "ryu_lag_member_selection", **member, selection="selected") == 1
    assert value(found, "ryu_lag_member_enabled", **member) == 1
    assert value(found, "ryu_lag_member_link_up", **member) == 1
    assert value(found, "ryu_lag_member_lacp_timeout_seconds", **member) == 90
    assert value(found, "ryu_lag_member_actor_state", **member) == 0x3D  # active, long timeout, fully up
    assert value(found, "ryu_lag_member_partner_state", **member) == 0x3F
    assert value(found, "ryu_lag_member_lacpdus_received_total", **member) > 0
    assert value(found, "ryu_lag_member_lacpdus_sent_total", **member) > 0
    assert value(found, "ryu_lag_member_bad_lacpdus_received_total", **member) == 0
    assert value(found, "ryu_lag_member_expirations_total", **member) == 0


def test_bonds_of_a_switch_not_connected(rig: Rig):
    rig.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    found = samples(rig)
    assert value(found, "ryu_lag_switch_connected", dpid=DPID_S) == 0
    assert value(found, "ryu_lag_bond_distributing_members", **BOND) == 0
    assert not any(name.startswith("ryu_lag_member_") for name, _ in found)


def test_switch_disconnect(connected: Rig):
    connected.execute(connected.service.switch_disconnected(DPID))
    assert value(samples(connected), "ryu_lag_switches_connected") == 0


def test_rest_requests_by_route_and_status(connected: Rig):
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    connected.post(f"/lag/{DPID_S}", {"ports": [1, 2]})
    connected.get(f"/lag/{DPID_S}/bond0")
    connected.get(f"/lag/{DPID_S}/nope")
    connected.request("PATCH", f"/lag/{DPID_S}/bond0")
    connected.get("/lag/1/2/3")
    found = samples(connected)
    name = "ryu_lag_rest_requests_total"
    assert value(found, name, route="/lag/{dpid}", method="POST", status="201") == 1
    assert value(found, name, route="/lag/{dpid}", method="POST", status="409") == 1
    assert value(found, name, route="/lag/{dpid}/{bond}", method="GET", status="200") == 1
    assert value(found, name, route="/lag/{dpid}/{bond}", method="GET", status="404") == 1
    assert value(found, name, route="/lag/{dpid}/{bond}", method="PATCH", status="405") == 1
    assert value(found, name, route="unmatched", method="GET", status="400") == 1


def test_made_up_methods_share_one_label(connected: Rig):
    for method in ("FOO", "BAR", "BAZ"):
        connected.request(method, f"/lag/{DPID_S}")
    found = samples(connected)
    assert value(found, "ryu_lag_rest_requests_total", route="/lag/{dpid}", method="other", status="405") == 3
    assert value(found, "ryu_lag_rest_requests_total", route="/lag/{dpid}", method="FOO", status="405") is None


def test_each_app_has_its_own_registry(tmp_path: Path):
    a, b = Rig(tmp_path / "a"), Rig(tmp_path / "b")
    a.get("/lag")
    a.get("/lag")
    name = "ryu_lag_rest_requests_total"
    assert value(samples(a), name, route="/lag", method="GET", status="200") == 2
    assert value(samples(b), name, route="/lag", method="GET", status="200") is None
