"""``lagctl cluster``'s table, from a cluster status as ``GET /lag/cluster`` answers it."""

from __future__ import annotations

from typing import Any

from clients.cli import render_cluster

A, B = "ctl-a", "ctl-b"
S1, S2, S3 = "0000000000000001", "0000000000000002", "0000000000000003"


def two_instances() -> dict[str, Any]:
    return {
        "instance": A,
        "store": {"url": "etcd://127.0.0.1:2379,127.0.0.1:2381", "kind": "etcd", "healthy": True, "error": None,
                  "requests": 12, "request_seconds": 0.034},
        "election": {"reachable": True, "lease_ttl": 1, "seconds_since_step": 0.12, "steps": 100, "step_seconds": 1.5},
        "instances": [
            {"id": A, "url": "http://127.0.0.1:8080", "switches": [S1, S2], "masters": [S1]},
            {"id": B, "url": "http://127.0.0.1:8081", "switches": [S1, S2], "masters": [S2]},
        ],
        "switches": [
            {"dpid": S1, "master": A, "generation": 123, "role": "master"},
            {"dpid": S2, "master": B, "generation": None, "role": "slave"},
            {"dpid": S3, "master": B, "generation": 130, "role": None},
        ],
        "takeovers": 3,
        "stepdowns": 1,
    }


def test_two_instances():
    assert render_cluster(two_instances()) == """\
instance ctl-a
store etcd://127.0.0.1:2379,127.0.0.1:2381 (etcd): healthy, 12 requests, mean 2.8 ms
election: reachable, lease 1 s, 100 steps, mean 15.0 ms, last 0.1 s ago
takeovers 3, stepdowns 1

INSTANCE      URL                    SWITCHES  MASTERS
ctl-a (this)  http://127.0.0.1:8080  2         1
ctl-b         http://127.0.0.1:8081  2         1

DPID              MASTER  GENERATION  ROLE HERE
0000000000000001  ctl-a   123         master
0000000000000002  ctl-b   -           slave
0000000000000003  ctl-b   130         -"""


def test_trouble_is_spelled_out():
    status = two_instances()
    status["store"].update(healthy=False, error="no member answered within 2 s")
    status["election"].update(reachable=False, seconds_since_step=None)
    status["switches"][1]["master"] = None
    text = render_cluster(status)
    assert "(etcd): UNHEALTHY (no member answered within 2 s), 12 requests" in text
    assert "election: UNREACHABLE, lease 1 s, 100 steps, mean 15.0 ms, last never" in text
    assert "0000000000000002  -       -           slave" in text


def test_one_instance_without_switches():
    status = {
        "instance": A,
        "store": {"url": "sqlite:/var/lib/ryu-lag/state.sqlite3", "kind": "sqlite", "healthy": True, "error": None,
                  "requests": 0, "request_seconds": 0.0},
        "election": None,
        "instances": [{"id": A, "url": "http://127.0.0.1:8080", "switches": [], "masters": []}],
        "switches": [],
        "takeovers": 0,
        "stepdowns": 0,
    }
    assert render_cluster(status) == """\
instance ctl-a
store sqlite:/var/lib/ryu-lag/state.sqlite3 (sqlite): healthy, 0 requests, mean -
election: none (one instance)
takeovers 0, stepdowns 0

INSTANCE      URL                    SWITCHES  MASTERS
ctl-a (this)  http://127.0.0.1:8080  0         0

no switches connected"""
