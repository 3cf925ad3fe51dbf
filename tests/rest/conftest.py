"""In-process REST tests: Ryu's real WSGI application over a real LagService and BondStore.

``Rig`` stands in for LagApp: its ``execute`` records effects (and hands LACPDUs to an
optional simulated partner) instead of sending them; "switch connected" is
``service.switch_connected(...)``. Its cluster status is a single instance's as LagApp
gives it (SQLite, no election, master of every switch connected, in OpenFlow's EQUAL role),
which a test may amend (``Rig.cluster``).
Every response a test sees is checked against the OpenAPI document: its status must be
documented for its route and method, and its body must fit the documented schema.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from ryu.app.wsgi import WSGIApplication  # tests/conftest.py applied the eventlet shim
from webob import Request, Response

from rest import openapi
from rest.api import register
from ryu_lag.config import BondConfig, format_dpid
from ryu_lag.lacp import BondSettings, LacpBond, Rate, Update, encode_frame
from ryu_lag.openflow import Message, PacketOut
from ryu_lag.service import Effects, LagService, PortDesc
from ryu_lag.store import BondStore
from tests.rest.schema import check_response

DPID = 1
DPID_S = "0000000000000001"
SWITCH_SYSTEM = "02:00:00:00:01:00"
PARTNER_SYSTEM = "02:00:00:00:00:99"
PARTNER_KEY = 7
DOC = openapi.document()
INSTANCE = "rig-8080"
INSTANCE_URL = "http://127.0.0.1:8080"


def port_mac(port: int) -> str:
    return f"02:00:00:00:01:{port:02x}"


class Clock:
    """A settable monotonic clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Partner:
    """A simulated LACP partner: a LacpBond whose port N is cabled to switch port N."""

    def __init__(self, rig: Rig, dpid: int, ports: list[int], rate: Rate = Rate.FAST) -> None:
        self.rig = rig
        self.dpid = dpid
        self.bond = LacpBond(BondSettings(key=PARTNER_KEY, rate=rate), PARTNER_SYSTEM, ports)
        self.silent = False

    def link(self, port: int, up: bool) -> None:
        self.send(self.bond.set_link(port, up, self.rig.clock()))

    def receive(self, effects: Effects) -> None:
        for dpid, msg in effects.messages:
            if dpid == self.dpid and isinstance(msg, PacketOut) and msg.port in self.bond.members and not self.silent:
                self.send(self.bond.receive_frame(msg.port, msg.data, self.rig.clock()))

    def send(self, update: Update) -> None:
        for tx in update.transmit:
            if not self.silent:
                frame = encode_frame(PARTNER_SYSTEM, tx.pdu)
                self.rig.execute(self.rig.service.packet_in(self.dpid, tx.port, frame, self.rig.clock()))


class Rig:
    """LagApp's REST protocol over a real service, Ryu's WSGI app, and request helpers."""

    def __init__(self, tmp_path: Path, token: str | None = None) -> None:
        self.clock = Clock()
        self.db = tmp_path / "state.sqlite3"
        self.store = BondStore(str(self.db))
        self.service = LagService(self.store)
        self.effects: list[Effects] = []
        self.partner: Partner | None = None
        self.token = token
        self.instance_id = INSTANCE
        self.cluster: dict[str, Any] = {}  # keys of cluster_status() replaced by a test
        self.wsgi = WSGIApplication()
        self.metrics = register(self.wsgi, self, token=token, clock=self.clock)

    # ---- the app protocol -------------------------------------------------------
    def execute(self, effects: Effects) -> None:
        self.effects.append(effects)
        if self.partner is not None:
            self.partner.receive(effects)

    def put_bond(self, config: BondConfig, *, replace: bool = True) -> None:
        self.execute(self.service.put_bond(config, self.clock(), replace=replace))

    def delete_bond(self, dpid: int, name: str) -> None:
        self.execute(self.service.delete_bond(dpid, name))

    def flush_macs(self, dpid: int, logical: int | None = None) -> None:
        self.execute(self.service.flush_macs(dpid, logical))

    def master_of(self, dpid: int) -> str | None:
        return self.instance_id if dpid in self.service.switches else None

    def cluster_status(self) -> dict[str, Any]:
        """One instance on SQLite, master of the switches connected; then ``self.cluster``'s keys."""
        dpids = [format_dpid(dpid) for dpid in sorted(self.service.switches)]
        status = {
            "instance": self.instance_id,
            "store": {"url": f"sqlite:{self.db}", "kind": "sqlite", "healthy": True, "error": None,
                      "requests": 0, "request_seconds": 0.0},
            "election": None,
            "instances": [{"id": self.instance_id, "url": INSTANCE_URL, "switches": dpids, "masters": dpids}],
            "switches": [{"dpid": dpid, "master": self.instance_id, "generation": None, "role": "equal"}
                         for dpid in dpids],
            "takeovers": 0,
            "stepdowns": 0,
        }
        return {**status, **self.cluster}

    # ---- driving the service ------------------------------------------------------
    def messages(self) -> list[tuple[int, Message]]:
        return [m for effects in self.effects for m in effects.messages]

    def connect(self, dpid: int = DPID, ports: tuple[int, ...] = (1, 2, 3, 4), up: bool = True) -> None:
        descs = [PortDesc(p, port_mac(p), up) for p in ports]
        self.execute(self.service.switch_connected(dpid, descs, SWITCH_SYSTEM, True, self.clock()))

    def attach_partner(self, ports: list[int], dpid: int = DPID, rate: Rate = Rate.FAST) -> Partner:
        """Cable a partner to ``ports`` (links up on its side) and let frames flow."""
        self.partner = Partner(self, dpid, ports, rate)
        for port in ports:
            self.partner.link(port, True)
        return self.partner

    def run(self, seconds: float, step: float = 0.05) -> None:
        """Advance the clock, ticking the service and the partner."""
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            self.clock.now = round(self.clock.now + step, 6)
            self.execute(self.service.tick(self.clock()))
            if self.partner is not None:
                self.partner.send(self.partner.bond.tick(self.clock()))

    def learn(self, port: int, mac: str, dpid: int = DPID) -> None:
        """A data frame from ``mac`` arrives on ``port``."""
        frame = bytes.fromhex("ffffffffffff") + bytes.fromhex(mac.replace(":", "")) + b"\x08\x00" + bytes(46)
        self.execute(self.service.packet_in(dpid, port, frame, self.clock()))

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a refused request must leave alone."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            stored = db.execute("SELECT dpid, name, config FROM bonds ORDER BY dpid, name").fetchall()
        configs = {dpid: dict(bonds) for dpid, bonds in self.service.configs.items() if bonds}
        runtime = {
            dpid: {name: (b.group_id, b.config) for name, b in sw.bonds.items()} for dpid, sw in self.service.switches.items()
        }
        macs = {dpid: sw.switch.macs() for dpid, sw in self.service.switches.items()}
        return stored, configs, runtime, macs, len(self.messages())

    # ---- HTTP -----------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Response:
        """A request through Ryu's WSGI app; ``body`` is sent as JSON, ``raw`` as given."""
        if body is not None:
            raw = json.dumps(body).encode()
            content_type = content_type or "application/json"
        req = Request.blank(path, method=method)
        if raw is not None:
            req.body = raw
        if content_type is not None:
            req.content_type = content_type
        elif "CONTENT_TYPE" in req.environ:
            del req.environ["CONTENT_TYPE"]
        for name, value in (headers or {}).items():
            req.headers[name] = value
        if self.token is not None and auth and "Authorization" not in req.headers:
            req.headers["Authorization"] = f"Bearer {self.token}"
        match = self.wsgi.mapper.routematch(environ=dict(req.environ))
        response = req.get_response(self.wsgi)
        check_response(DOC, match[1] if match else None, method, response)
        return response

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)


def error_of(response: Response) -> dict[str, Any]:
    """The ``error`` object of a JSON error response."""
    assert response.content_type == "application/json", response.body
    return response.json["error"]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


@pytest.fixture
def connected(rig: Rig) -> Rig:
    """Switch 1 connected with ports 1-4, all up."""
    rig.connect()
    return rig
