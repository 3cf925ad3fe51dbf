"""The OpenAPI 3 document of the REST API (``GET /lag/openapi.json``).

It must match ``rest.api``: the REST tests check every route and method against it and
validate every response they see against the schema of its route, method and status.
"""

from __future__ import annotations

import copy
from typing import Any

from ryu_lag.bfd import BfdConfig, EncapsulationKind, State
from ryu_lag.bfd.bond import DEFAULT_DST_MAC, MAX_INTERVAL_MS, MAX_MULTIPLIER, MIN_INTERVAL_MS, MIN_MULTIPLIER
from rest import server
from rest.views import ROLES
from ryu_lag.config import MAX_MEMBER_PORT, MAX_MEMBERS, MAX_PORT, NAME_RE

_VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _nullable_ref(name: str, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"allOf": [_ref(name)], "nullable": True}
    if description:
        schema["description"] = description
    return schema


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


_INT16 = {"type": "integer", "minimum": 0, "maximum": 0xFFFF}
_MAC = {"type": "string", "pattern": "^([0-9a-f]{2}:){5}[0-9a-f]{2}$"}
_DPID = {"type": "string", "pattern": "^[0-9a-f]{16}$", "example": "0000000000000001"}
_PORT = {"type": "integer", "minimum": 1, "maximum": MAX_PORT}
_MEMBER_PORT = {"type": "integer", "minimum": 1, "maximum": MAX_MEMBER_PORT}
_NAME_PATTERN = f"^{NAME_RE.pattern}$"
_IPV4 = {"type": "string", "pattern": r"^(\d{1,3}\.){3}\d{1,3}$"}
_BFD_INTERVAL = {"type": "integer", "minimum": MIN_INTERVAL_MS, "maximum": MAX_INTERVAL_MS}
_BFD_MULTIPLIER = {"type": "integer", "minimum": MIN_MULTIPLIER, "maximum": MAX_MULTIPLIER}
_BFD_ENCAPSULATION = {"type": "string", "enum": [kind.value for kind in EncapsulationKind]}
_BFD_STATE = {"type": "string", "enum": [state.name.lower() for state in State]}
_BFD_FIELDS_TEXT = {
    "min_tx_ms": "our Desired Min TX once Up (1000 ms is advertised until then, RFC 5880 6.8.3)",
    "min_rx_ms": "our Required Min RX",
    "multiplier": "our Detect Mult: the partner declares the session down after this many missed packets",
    "encapsulation": "ovs: Open vSwitch's (UDP 3784); rfc7130: micro-BFD (UDP 6784, destination MAC "
    f"{DEFAULT_DST_MAC[EncapsulationKind.RFC7130]})",
    "dst_mac": "Ethernet destination of our packets; default the encapsulation's "
    f"({DEFAULT_DST_MAC[EncapsulationKind.OVS]} for ovs); rfc7130 takes only its own",
    "src_ip": "IPv4 source of our packets",
    "dst_ip": "IPv4 destination of our packets",
}
_STATE_BITS = ("activity", "timeout", "aggregation", "synchronization", "collecting", "distributing", "defaulted",
               "expired")

_SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {
                        "type": "string",
                        "enum": [
                            "invalid_field", "malformed_json", "invalid_dpid", "unauthorized", "unknown_switch",
                            "unknown_bond", "not_found", "method_not_allowed", "conflict", "payload_too_large",
                            "unsupported_media_type", "unknown_port", "internal_error", "store_unavailable",
                            "forbidden_origin", "forbidden_host", "concurrent_change",
                            *sorted(set(server.ERROR_CODES.values())),
                        ],
                    },
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "the offending field, when there is one"},
                },
                required=["code", "message"],
            )
        }
    ),
    "SwitchSummary": _object(
        {"dpid": _DPID, "connected": {"type": "boolean"}, "bond_count": {"type": "integer", "minimum": 0}}
    ),
    "SwitchList": _object({"switches": {"type": "array", "items": _ref("SwitchSummary")}}),
    "Port": _object(
        {
            "port": _PORT,
            "mac": {"type": "string"},
            "up": {"type": "boolean"},
            "bond": _nullable({"type": "string", "description": "the bond this port is a member of"}),
        }
    ),
    "Switch": _object(
        {
            "dpid": _DPID,
            "connected": {"type": "boolean"},
            "master": _nullable(
                {"type": "string", "description": "the instance that is the switch's master, as this one knows; "
                 "null: none (not connected to any instance)"}
            ),
            "system": _nullable({**_MAC, "description": "LACP system id of the switch (null while not connected)"}),
            "bond_count": {"type": "integer", "minimum": 0},
            "ports": {
                "type": "array", "items": _ref("Port"), "description": "physical ports (empty while not connected)"
            },
            "bonds": {"type": "array", "items": _ref("Bond")},
        }
    ),
    "BondInput": _object(
        {
            "name": {"type": "string", "pattern": _NAME_PATTERN, "description": "default (POST): bond0, bond1, ..."},
            "ports": {"type": "array", "items": _MEMBER_PORT, "minItems": 1, "maxItems": MAX_MEMBERS, "uniqueItems": True},
            "mode": {"type": "string", "enum": ["active", "passive"], "default": "active"},
            "rate": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
            "key": {
                "type": "integer", "minimum": 1, "maximum": 0xFFFF,
                "description": "actor key; default: the bond's current key, else the smallest unused",
            },
            "system_priority": {**_INT16, "default": 32768},
            "port_priority": {**_INT16, "default": 32768},
            "min_links": {"type": "integer", "minimum": 1, "maximum": MAX_MEMBERS, "default": 1},
            "system": _nullable({**_MAC, "description": "actor system id; default: the switch's LOCAL port MAC"}),
            "bfd": _nullable_ref(
                "BfdInput",
                "BFD on every member (null or absent: off). Once a member's session has come Up, the member "
                "carries traffic only while LACP distributes and BFD is Up; a session that never came Up "
                "leaves the member on LACP alone",
            ),
        },
        required=["ports"],
    ),
    "BfdInput": _object(
        {
            "min_tx_ms": {**_BFD_INTERVAL, "default": BfdConfig.min_tx_ms, "description": _BFD_FIELDS_TEXT["min_tx_ms"]},
            "min_rx_ms": {**_BFD_INTERVAL, "default": BfdConfig.min_rx_ms, "description": _BFD_FIELDS_TEXT["min_rx_ms"]},
            "multiplier": {
                **_BFD_MULTIPLIER, "default": BfdConfig.multiplier, "description": _BFD_FIELDS_TEXT["multiplier"]
            },
            "encapsulation": {
                **_BFD_ENCAPSULATION, "default": EncapsulationKind.OVS.value,
                "description": _BFD_FIELDS_TEXT["encapsulation"],
            },
            "dst_mac": _nullable({**_MAC, "description": _BFD_FIELDS_TEXT["dst_mac"]}),
            "src_ip": {**_IPV4, "default": BfdConfig.src_ip, "description": _BFD_FIELDS_TEXT["src_ip"]},
            "dst_ip": {**_IPV4, "default": BfdConfig.dst_ip, "description": _BFD_FIELDS_TEXT["dst_ip"]},
        },
        required=[],
    ),
    "BfdConfig": _object(
        {
            "min_tx_ms": _BFD_INTERVAL,
            "min_rx_ms": _BFD_INTERVAL,
            "multiplier": _BFD_MULTIPLIER,
            "encapsulation": _BFD_ENCAPSULATION,
            "dst_mac": _MAC,
            "src_ip": _IPV4,
            "dst_ip": _IPV4,
        }
    ),
    "BondConfig": _object(
        {
            "name": {"type": "string"},
            "ports": {"type": "array", "items": _PORT},
            "mode": {"type": "string", "enum": ["active", "passive"]},
            "rate": {"type": "string", "enum": ["fast", "slow"]},
            "key": {"type": "integer"},
            "system_priority": _INT16,
            "port_priority": _INT16,
            "min_links": {"type": "integer"},
            "system": _nullable(_MAC),
            "bfd": _nullable_ref("BfdConfig", "null: BFD off"),
        }
    ),
    "PartnerSystem": _object({"system": _MAC, "system_priority": _INT16, "key": _INT16}),
    "Bond": _object(
        {
            "dpid": _DPID,
            "name": {"type": "string"},
            "config": _ref("BondConfig"),
            "applied": {"type": "boolean", "description": "the switch is connected and the bond programmed"},
            "up": {"type": "boolean", "description": "at least min_links members distribute"},
            "distributing": {
                "type": "integer", "minimum": 0,
                "description": "members distributing now (BFD, when on, not holding them out)",
            },
            "group_id": _nullable({"type": "integer"}),
            "actor_system": _nullable(_MAC),
            "partner": _nullable_ref("PartnerSystem", "the partner the aggregator chose"),
            "members": {"type": "array", "items": _ref("Member")},
        }
    ),
    "LacpState": _object({bit: {"type": "boolean"} for bit in _STATE_BITS}),
    "PortInfo": _object(
        {
            "system": _MAC,
            "system_priority": _INT16,
            "key": _INT16,
            "port": _INT16,
            "port_priority": _INT16,
            "state": _ref("LacpState"),
        }
    ),
    "Counters": _object(
        {
            "lacpdus_rx": {"type": "integer", "minimum": 0},
            "lacpdus_tx": {"type": "integer", "minimum": 0},
            "bad_rx": {"type": "integer", "minimum": 0},
            "expirations": {"type": "integer", "minimum": 0},
        }
    ),
    "Member": _object(
        {
            "port": _PORT,
            "link": {"type": "string", "enum": ["up", "down"]},
            "mux": {"type": "string", "enum": ["detached", "waiting", "attached", "collecting", "distributing"]},
            "selection": {
                "type": "string",
                "enum": ["selected", "unselected", "standby"],
                "description": "standby: held back, our Synchronization bit off, because fewer than min_links members can aggregate",
            },
            "enabled": {
                "type": "boolean",
                "description": "the member carries traffic: distributing, and BFD (when on) lets it",
            },
            "reason": {"type": "string", "description": "why the member is (not) carrying traffic"},
            "rx_state": _nullable(
                {"type": "string", "enum": ["port_disabled", "expired", "defaulted", "current"]}
            ),
            "lacp_timeout": {"type": "integer", "enum": [0, 3, 90], "description": "0 before any LACPDU"},
            "since_last_lacpdu": _nullable({"type": "number", "minimum": 0, "description": "seconds"}),
            "actor": _nullable_ref("PortInfo", "null while the switch is not connected"),
            "partner": _nullable_ref("PortInfo", "as last received, or the default before any LACPDU"),
            "counters": _ref("Counters"),
            "bfd": _nullable_ref("BfdStatus", "null when the bond runs no BFD or the switch is not connected"),
        }
    ),
    "BfdCounters": _object(
        {
            "packets_rx": {"type": "integer", "minimum": 0, "description": "control packets accepted"},
            "packets_tx": {"type": "integer", "minimum": 0},
            "bad_rx": {"type": "integer", "minimum": 0, "description": "frames or packets discarded"},
            "state_changes": {"type": "integer", "minimum": 0},
        }
    ),
    "BfdStatus": _object(
        {
            "state": _BFD_STATE,
            "remote_state": {**_BFD_STATE, "description": "as the partner's last packet said"},
            "local_discriminator": {"type": "integer", "minimum": 1},
            "remote_discriminator": {"type": "integer", "minimum": 0, "description": "0 while none is known"},
            "local_diag": {"type": "string", "description": "our diagnostic (RFC 5880 4.1) in words"},
            "remote_diag": {"type": "string", "description": "the partner's diagnostic in words"},
            "tx_interval_ms": {"type": "number", "minimum": 0, "description": "agreed: how often we send"},
            "rx_interval_ms": {"type": "number", "minimum": 0, "description": "agreed: how often the partner sends"},
            "detection_time_ms": _nullable(
                {"type": "number", "minimum": 0, "description": "null before any packet from the partner"}
            ),
            "remote_multiplier": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_MULTIPLIER}),
            "polling": {"type": "boolean", "description": "an interval change waits for the partner's Final"},
            "since_last_packet": _nullable({"type": "number", "minimum": 0, "description": "seconds"}),
            "last_down": _nullable({"type": "string", "description": "why the session last went Down or AdminDown"}),
            "gating": {
                "type": "boolean",
                "description": "BFD has a say: the session came Up since the link did, so the member carries "
                "traffic only while BFD is Up",
            },
            "gate_open": {"type": "boolean", "description": "BFD lets the member carry traffic (LACP decides too)"},
            "reason": {"type": "string", "description": "BFD's part in whether the member carries traffic, in words"},
            "counters": _ref("BfdCounters"),
            "last_bad_reason": _nullable({"type": "string", "description": "why the last bad frame was discarded"}),
        }
    ),
    "Mac": _object(
        {
            "mac": _MAC,
            "port": _nullable({**_PORT, "description": "the plain port it was learned on"}),
            "bond": _nullable({"type": "string", "description": "the bond it was learned on"}),
        }
    ),
    "MacList": _object({"dpid": _DPID, "macs": {"type": "array", "items": _ref("Mac")}}),
    "Flushed": _object({"dpid": _DPID, "flushed": {"type": "integer", "minimum": 0}}),
    "StoreStatus": _object(
        {
            "url": {"type": "string", "description": "sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...]"},
            "kind": {"type": "string", "enum": ["sqlite", "etcd"]},
            "healthy": {"type": "boolean", "description": "the store's last read or write succeeded"},
            "error": _nullable({"type": "string", "description": "the last failure (null: none)"}),
            "requests": {"type": "integer", "minimum": 0, "description": "reads and writes made by this instance"},
            "request_seconds": {"type": "number", "minimum": 0, "description": "their total time"},
        }
    ),
    "ElectionStatus": _object(
        {
            "reachable": {"type": "boolean", "description": "etcd answered the last election step"},
            "lease_ttl": {"type": "number", "minimum": 0, "description": "seconds"},
            "seconds_since_step": _nullable(
                {"type": "number", "minimum": 0, "description": "since the last election step (null: none yet)"}
            ),
            "steps": {"type": "integer", "minimum": 0},
            "step_seconds": {"type": "number", "minimum": 0, "description": "total time of the steps"},
        }
    ),
    "Instance": _object(
        {
            "id": {"type": "string"},
            "url": {"type": "string", "description": "its REST API"},
            "switches": {"type": "array", "items": _DPID, "description": "switches connected to it"},
            "masters": {"type": "array", "items": _DPID, "description": "switches it is master of"},
        }
    ),
    "SwitchRole": _object(
        {
            "dpid": _DPID,
            "master": _nullable({"type": "string", "description": "the master instance (null: none)"}),
            "generation": _nullable(
                {"type": "integer", "minimum": 0, "description": "the master's OpenFlow generation id"}
            ),
            "role": _nullable(
                {"type": "string", "enum": list(ROLES),
                 "description": "this instance's OpenFlow role on the switch (null: not connected to it)"}
            ),
        }
    ),
    "Cluster": _object(
        {
            "instance": {"type": "string", "description": "this instance's id"},
            "store": _ref("StoreStatus"),
            "election": _nullable_ref("ElectionStatus", "null with the sqlite store (one instance)"),
            "instances": {"type": "array", "items": _ref("Instance"), "description": "the live instances"},
            "switches": {
                "type": "array", "items": _ref("SwitchRole"),
                "description": "the switches connected to this instance or mastered by another",
            },
            "takeovers": {"type": "integer", "minimum": 0, "description": "switches this instance became master of"},
            "stepdowns": {
                "type": "integer", "minimum": 0, "description": "masterships this instance lost or gave up"
            },
        }
    ),
}

_ERRORS = {
    400: "invalid JSON, field, query parameter (unknown ones too) or dpid",
    401: "missing or invalid bearer token",
    403: "a web page's request: Origin not the API's own or Sec-Fetch-Site cross-site (forbidden_origin), "
    "or, without a token, a Host that does not name the API (forbidden_host: DNS rebinding)",
    404: "unknown switch or bond",
    405: "the path does not take this method (PUT /lag/{dpid}/macs: macs is no bond name); Allow lists those it does",
    409: "a port already in another bond, a key already used, or (POST) the name taken (conflict); "
    "the switch changed through another instance or client meanwhile (concurrent_change): nothing was "
    "changed, read it again and retry",
    413: "body over 64 KiB",
    415: "body not JSON",
    422: "a port the connected switch does not have",
    500: "internal error; the controller log has the details",
    503: "the state database cannot be written; nothing was changed",
}


def _json(schema_name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema_name)}},
    }
    if headers:
        response["headers"] = headers
    return response


def _responses(ok: dict[int, Any], *errors: int) -> dict[str, Any]:
    out = {str(code): value for code, value in ok.items()}
    for code in (*errors, 401, 403, 500):
        out[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    return out


_LOCATION = {"Location": {"description": "the bond's URL", "schema": {"type": "string"}}}
_BODY = {
    "required": True,
    "description": "application/json; a body that parses as JSON is also accepted without a Content-Type "
    "or as application/x-www-form-urlencoded (what curl -d sends)",
    "content": {"application/json": {"schema": _ref("BondInput")}},
}
_DPID_PARAM = {"$ref": "#/components/parameters/dpid"}
_BOND_PARAM = {"$ref": "#/components/parameters/bond"}
_FILTERS = [
    {"name": "bond", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "only MACs learned on this bond"},
    {"name": "port", "in": "query", "required": False, "schema": _PORT,
     "description": "only MACs learned on this plain port (not a bond member)"},
]

_PATHS: dict[str, Any] = {
    "/lag": {
        "get": {
            "operationId": "listSwitches",
            "summary": "Every switch that is connected or has bonds",
            "responses": _responses({200: _json("SwitchList", "the switches")}),
        }
    },
    "/lag/{dpid}": {
        "parameters": [_DPID_PARAM],
        "get": {
            "operationId": "getSwitch",
            "summary": "A switch, its ports and all its bonds with member status",
            "responses": _responses({200: _json("Switch", "the switch")}, 400, 404),
        },
        "post": {
            "operationId": "createBond",
            "summary": "Create a bond (the switch need not be connected yet)",
            "requestBody": _BODY,
            "responses": _responses({201: _json("Bond", "created", _LOCATION)}, 400, 404, 409, 413, 415, 422, 503),
        },
    },
    "/lag/{dpid}/{bond}": {
        "parameters": [_DPID_PARAM, _BOND_PARAM],
        "get": {
            "operationId": "getBond",
            "summary": "A bond with member status",
            "responses": _responses({200: _json("Bond", "the bond")}, 400, 404),
        },
        "put": {
            "operationId": "putBond",
            "summary": "Create or replace a bond; the same body again changes nothing",
            "description": (
                "A live bond is changed in place, applying only what changed: an added member negotiates while "
                "the others keep distributing; a removed member leaves the bond's group at once and gets a last "
                "LACPDU with Synchronization, Collecting and Distributing cleared; priorities, rate, mode and "
                "min_links change without resetting any member. Only a new key or system renegotiates the whole "
                "bond: to the partner it is a new aggregator."
            ),
            "requestBody": _BODY,
            "responses": _responses(
                {200: _json("Bond", "replaced or unchanged"), 201: _json("Bond", "created", _LOCATION)},
                400, 404, 405, 409, 413, 415, 422, 503,
            ),
        },
        "delete": {
            "operationId": "deleteBond",
            "summary": "Delete a bond: its ports become plain ports, its group and flows are gone",
            "responses": _responses({204: {"description": "deleted"}}, 400, 404, 409, 503),
        },
    },
    "/lag/{dpid}/macs": {
        "parameters": [_DPID_PARAM],
        "get": {
            "operationId": "listMacs",
            "summary": "Learned MACs with their logical port (a plain port or a bond)",
            "parameters": _FILTERS,
            "responses": _responses({200: _json("MacList", "the learned MACs")}, 400, 404, 422),
        },
        "delete": {
            "operationId": "flushMacs",
            "summary": "Forget learned MACs and their flows: all, or one bond's or plain port's",
            "parameters": _FILTERS,
            "responses": _responses({200: _json("Flushed", "how many MACs were forgotten")}, 400, 404, 422),
        },
    },
    "/lag/cluster": {
        "get": {
            "operationId": "getCluster",
            "summary": "This instance, the store and its health, the live instances and their masterships",
            "responses": _responses({200: _json("Cluster", "the cluster as this instance sees it")}),
        }
    },
    "/lag/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "responses": _responses(
                {200: {"description": "OpenAPI 3 document",
                       "content": {"application/json": {"schema": {"type": "object"}}}}}
            ),
        }
    },
    "/metrics": {
        "get": {
            "operationId": "getMetrics",
            "summary": "Prometheus metrics: LACP state and counters, bonds, switch connections, mastership, "
            "the store, REST requests",
            "security": [],
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "403": {"$ref": "#/components/responses/E403"},
            },
        }
    },
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "ryu_lag",
        "version": _VERSION,
        "description": (
            "IEEE 802.1AX LACP link aggregation for OpenFlow 1.3 switches. A dpid is 16 lowercase hex "
            "digits. Errors are JSON: {\"error\": {\"code\", \"message\"}}. A method a path does not "
            "support answers 405 with Allow; OPTIONS answers 204 with Allow; GET paths answer HEAD. "
            "With a token configured, every path but /metrics needs 'Authorization: Bearer TOKEN'. "
            "Every path refuses a web page's cross-site request and, without a token, a Host that "
            "does not name the API (403). The HTTP server's own refusals are JSON errors too: "
            "408 request_timeout (headers or body too slow), 413, 414 uri_too_long, 431 headers_too_large, "
            "501 not_implemented, 503 too_many_connections, 505 http_version_not_supported."
        ),
    },
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "parameters": {
            "dpid": {"name": "dpid", "in": "path", "required": True, "schema": _DPID},
            "bond": {
                "name": "bond", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": _NAME_PATTERN, "not": {"enum": ["macs"]}},
            },
        },
        "responses": {f"E{code}": _json("Error", description) for code, description in _ERRORS.items()},
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
}


def document() -> dict[str, Any]:
    """The OpenAPI document (a copy: callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
