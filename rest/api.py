"""The REST API: Ryu WSGI routes, thin over the app (``LagApp`` or anything like it).

A dpid in a path is 16 lowercase hex digits (Ryu's ``DPID_PATTERN``), shown the same way
in JSON. Every handler goes through :meth:`LagController._dispatch`, which checks the
token, maps exceptions to ``{"error": {"code", "message"}}`` with their status (never a
500 for bad input, never a stack trace) and counts the request for ``/metrics``. Every
check runs before the app is called, so a refused request changes nothing.

Before the token, every route (``/metrics`` too) refuses what only a web browser sends for
another site's page (403): an ``Origin`` that is not the API's own, ``Sec-Fetch-Site:
cross-site``; and, when no token is configured, a ``Host`` that does not name the API's bind
address (a page whose own name was made to resolve to 127.0.0.1: DNS rebinding). ``curl``
and the Python client send no ``Origin`` and the address they connect to as ``Host``.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ryu_lag import eventlet_compat, options

eventlet_compat.apply()

from prometheus_client import CONTENT_TYPE_LATEST  # noqa: E402
from ryu.app.wsgi import ControllerBase, Request, Response, WSGIApplication, route  # noqa: E402
from ryu.cfg import CONF  # noqa: E402
from ryu.lib import hub  # noqa: E402
from ryu.lib.dpid import DPID_PATTERN  # noqa: E402

from rest import openapi, server, views  # noqa: E402
from rest.metrics import RestMetrics  # noqa: E402
from ryu_lag.config import MAX_PORT, BondConfig, ConfigError, format_dpid  # noqa: E402
from ryu_lag.service import BondConflict, LagService, UnknownBond  # noqa: E402
from ryu_lag.stores import StoreConflict, StoreError  # noqa: E402
from ryu_lag.switching import bond_logical  # noqa: E402

LOG = logging.getLogger("ryu_lag.rest")

MAX_BODY = server.MAX_BODY
RESERVED_NAMES = frozenset({"macs"})  # path segments beside /lag/{dpid}/{bond}
BOND_PATTERN = r"(?!macs$)[^/]+"  # any segment but "macs"; the handler validates the name
DPID = {"dpid": DPID_PATTERN}
DPID_BOND = {"dpid": DPID_PATTERN, "bond": BOND_PATTERN}
METRICS_PATH = "/metrics"
CLUSTER_PATH = "/lag/cluster"
UNMATCHED = "unmatched"  # the route label of requests that match no route
_LENIENT_TYPES = frozenset({"", "application/x-www-form-urlencoded"})  # curl -d sends the latter
_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="ryu_lag"'}
DEFAULT_BIND = "127.0.0.1"
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_TCP_PORT = 65535
# A Host header or an Origin's authority: a name or IPv4 address, or an IPv6 one in brackets; a port.
_AUTHORITY_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\[\]:/@\s]+)(?::([0-9]{1,5}))?")
# A first path segment that tries to be a dpid: answered 400 invalid_dpid, anything else 404.
_DPID_ATTEMPT_RE = re.compile(r"(0[xX])?[0-9A-Fa-f:]+|.{16}")


class LagAppLike(Protocol):
    """What the REST API needs of its app: ``ryu_lag.app.LagApp`` is one."""

    service: LagService
    instance_id: str

    def master_of(self, dpid: int) -> str | None: ...

    def cluster_status(self) -> dict[str, Any]: ...

    def put_bond(self, config: BondConfig, *, replace: bool = True) -> None: ...

    def delete_bond(self, dpid: int, name: str) -> None: ...

    def flush_macs(self, dpid: int, logical: int | None = None) -> None: ...


class ApiError(Exception):
    """A refused request: HTTP ``status``, a stable ``code`` and a message for people."""

    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


@dataclass(frozen=True)
class HostNames:
    """The names and addresses a request's ``Host`` may give: those of the API's bind address.

    A web page can make a name it owns resolve to 127.0.0.1 (DNS rebinding); its requests then
    reach the API with that name in ``Host``. An IP address in ``Host`` cannot be rebound.
    """

    names: frozenset[str]
    addresses: frozenset[str]
    loopback: bool  # every loopback address (127.0.0.0/8, ::1)
    any_address: bool  # a wildcard bind: whatever address reached us is ours

    @classmethod
    def of_bind(cls, host: str) -> HostNames:
        """For an API listening on ``host`` (``--wsapi-host``); wildcard binds add the machine's names."""
        host = host.strip().lower().strip("[]")
        own_name = socket.gethostname().lower()
        if host in WILDCARD_BINDS:
            names = frozenset({"localhost", own_name, socket.getfqdn().lower()})
            return cls(names, frozenset(), loopback=True, any_address=True)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a name: it and what it resolves to
            loopback = is_loopback(host)
            names = frozenset({host, "localhost", own_name} if loopback else {host})
            return cls(names, _resolve(host), loopback=loopback, any_address=False)
        names = frozenset({"localhost", own_name}) if address.is_loopback else frozenset()
        return cls(names, frozenset({str(address)}), loopback=address.is_loopback, any_address=False)

    def allow(self, hostname: str) -> bool:
        """Whether ``hostname`` (from a ``Host`` header, brackets removed) names this API."""
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            return hostname.lower() in self.names
        return self.any_address or (self.loopback and address.is_loopback) or str(address) in self.addresses


def _resolve(name: str) -> frozenset[str]:
    try:
        return frozenset(str(info[4][0]) for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP))
    except OSError:
        return frozenset()


def split_authority(authority: str) -> tuple[str, int | None] | None:
    """(host, port) of a ``Host`` header or an origin's authority, IPv6 brackets removed; None if malformed."""
    match = _AUTHORITY_RE.fullmatch(authority)
    if match is None:
        return None
    port = int(match.group(2)) if match.group(2) is not None else None
    if port is not None and port > MAX_TCP_PORT:
        return None
    return match.group(1).strip("[]").lower(), port


def check_browser_request(req: Request, hosts: HostNames | None) -> None:
    """Refuse (403) a web page's request to us from another site, or under a name not ours.

    ``hosts`` None (a token is configured) leaves ``Host`` unchecked: such a page cannot send the token.
    """
    if req.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site":
        raise ApiError(403, "forbidden_origin", "a cross-site request from a web page (Sec-Fetch-Site: cross-site)")
    host_header = req.environ.get("HTTP_HOST")
    host = split_authority(host_header.strip()) if host_header is not None else None
    origin = req.headers.get("Origin")
    if origin is not None and not _same_origin(origin.strip(), host):
        raise ApiError(403, "forbidden_origin", f"a request from the web page of another origin ({origin!r})")
    if hosts is not None and host_header is not None and (host is None or not hosts.allow(host[0])):
        message = (
            f"Host {host_header!r} does not name this API; use the address it listens on"
            " (a page on a name made to resolve here is refused: DNS rebinding)"
        )
        raise ApiError(403, "forbidden_host", message)


def _same_origin(origin: str, host: tuple[str, int | None] | None) -> bool:
    """Whether ``origin`` (an Origin header) is this API's, as reached under ``host`` (the Host header)."""
    scheme, separator, authority = origin.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in DEFAULT_PORTS or host is None:
        return False  # also "null": a sandboxed page or a file
    parts = split_authority(authority)
    if parts is None:
        return False
    default = DEFAULT_PORTS[scheme]
    return (parts[0], default if parts[1] is None else parts[1]) == (host[0], default if host[1] is None else host[1])


def as_api_error(exc: Exception) -> ApiError:
    """The API error for an exception raised while handling a request."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BondConflict):
        return ApiError(409, "conflict", str(exc), field=exc.field)
    if isinstance(exc, ConfigError):
        return ApiError(400, "invalid_field", str(exc), field=exc.field)
    if isinstance(exc, UnknownBond):
        return ApiError(404, "unknown_bond", f"no bond {exc.args[0]!r}")
    if isinstance(exc, StoreConflict):
        message = (
            f"switch {format_dpid(exc.dpid)} changed through another instance or client meanwhile; "
            "nothing was changed: read it again and retry"
        )
        return ApiError(409, "concurrent_change", message)
    if isinstance(exc, StoreError):
        LOG.error("state database failed: %s", exc)
        return ApiError(503, "store_unavailable", f"{exc}; nothing was changed")
    LOG.error("REST request failed", exc_info=exc)
    return ApiError(500, "internal_error", server.INTERNAL_ERROR_MESSAGE)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    response = Response(status=status, content_type="application/json", body=(json.dumps(body) + "\n").encode())
    response.headers.update(headers or {})
    return response


def empty_response(status: int, headers: dict[str, str] | None = None) -> Response:
    response = Response(status=status)
    del response.content_type
    response.headers.update(headers or {})
    return response


def error_response(error: ApiError) -> Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.field is not None:
        body["field"] = error.field
    return json_response(error.status, {"error": body}, error.headers)


def api_route(path: str, methods: list[str], requirements: dict[str, str] | None = None) -> Callable[..., Any]:
    """Ryu's ``route`` plus :meth:`LagController._dispatch`; ``GET`` routes answer ``HEAD`` too."""
    methods = [*methods, "HEAD"] if "GET" in methods else methods

    def decorate(handler: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(handler)
        def wrapper(self: LagController, req: Request, **kwargs: Any) -> Response:
            return self._dispatch(path, req, lambda: handler(self, req, **kwargs))

        return route(f"lag.{handler.__name__}", path, methods=methods, requirements=requirements)(wrapper)

    return decorate


class LagController(ControllerBase):
    """The routes; Ryu makes one per request, with the registered data."""

    def __init__(self, req: Request, link: Any, data: dict[str, Any], **config: Any) -> None:
        super().__init__(req, link, data, **config)
        self.app: LagAppLike = data["lag_app"]
        self.token: str | None = data["token"]
        self.metrics: RestMetrics = data["metrics"]
        self.clock: Callable[[], float] = data["clock"]
        self.hosts: HostNames | None = data["hosts"]

    @property
    def service(self) -> LagService:
        return self.app.service

    # ---- plumbing ------------------------------------------------------------
    def _dispatch(self, route_path: str, req: Request, handle: Callable[[], Response]) -> Response:
        # Let every other ready green thread run first. A green socket's read returns without
        # yielding when the next request is already there, so without this one quick client
        # on a keep-alive connection holds the controller and the other clients starve
        # (p99 in the hundreds of ms at 32 clients while p50 stays under 1 ms).
        hub.sleep(0)
        try:
            check_browser_request(req, self.hosts)
            if route_path != METRICS_PATH:
                self._authorize(req)
            response = handle()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            response = error_response(as_api_error(exc))
        self.metrics.observe(route_path, req.method, response.status_code)
        return response

    def _authorize(self, req: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = req.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            message = "missing token: send 'Authorization: Bearer TOKEN'"
            raise ApiError(401, "unauthorized", message, headers=_AUTHENTICATE)
        try:
            presented = given.strip().encode("latin-1")  # WSGI headers are latin-1 decoded bytes
        except UnicodeEncodeError:
            presented = b""
        if not hmac.compare_digest(presented, self.token.encode()):
            raise ApiError(401, "unauthorized", "invalid token", headers=_AUTHENTICATE)

    def method_not_allowed(self, req: Request, route_path: str, allow: str, **_: Any) -> Response:
        """The fallback of every route: 405 with ``Allow`` (``OPTIONS`` answers with it)."""

        def handle() -> Response:
            if req.method == "OPTIONS":
                return empty_response(204, {"Allow": allow})
            message = f"{req.method} is not allowed on {route_path}; use {allow}"
            raise ApiError(405, "method_not_allowed", message, headers={"Allow": allow})

        return self._dispatch(route_path, req, handle)

    def not_found(self, req: Request, path: str, **_: Any) -> Response:
        """Anything under ``/lag/`` that matches no route."""

        def handle() -> Response:
            first = path.split("/", 1)[0]
            if _DPID_ATTEMPT_RE.fullmatch(first) and not re.fullmatch(DPID_PATTERN, first):
                message = f"{first!r} is not a dpid: 16 lowercase hex digits, e.g. 0000000000000001"
                raise ApiError(400, "invalid_dpid", message)
            raise ApiError(404, "not_found", f"no such resource: {req.path}")

        return self._dispatch(UNMATCHED, req, handle)

    # ---- switches --------------------------------------------------------------
    @api_route("/lag", ["GET"])
    def list_switches(self, req: Request, **_: Any) -> Response:
        return json_response(200, views.switch_list(self.service))

    @api_route("/lag/{dpid}", ["GET"], DPID)
    def get_switch(self, req: Request, dpid: str, **_: Any) -> Response:
        dp = self._known(dpid)
        return json_response(200, views.switch_view(self.service, dp, self.clock(), self.app.master_of(dp)))

    # ---- cluster -----------------------------------------------------------------
    @api_route(CLUSTER_PATH, ["GET"])
    def get_cluster(self, req: Request, **_: Any) -> Response:
        return json_response(200, self.app.cluster_status())

    # ---- bonds -------------------------------------------------------------------
    @api_route("/lag/{dpid}", ["POST"], DPID)
    def create_bond(self, req: Request, dpid: str, **_: Any) -> Response:
        dp = int(dpid, 16)
        body = read_json(req)
        name = body.get("name") if isinstance(body, dict) else None
        if isinstance(name, str) and name in RESERVED_NAMES:
            raise ApiError(400, "invalid_field", f"name: {name!r} is reserved", field="name")
        config = BondConfig.from_dict(dp, body, name=self.service.next_name(dp), key=self.service.next_key(dp))
        self._check_ports(config)
        self.app.put_bond(config, replace=False)
        return json_response(201, self._bond_view(config), {"Location": bond_location(config)})

    @api_route("/lag/{dpid}/{bond}", ["GET"], DPID_BOND)
    def get_bond(self, req: Request, dpid: str, bond: str, **_: Any) -> Response:
        return json_response(200, self._bond_view(self._config(dpid, bond)))

    @api_route("/lag/{dpid}/{bond}", ["PUT"], DPID_BOND)
    def put_bond(self, req: Request, dpid: str, bond: str, **_: Any) -> Response:
        dp = int(dpid, 16)
        body = read_json(req)
        if isinstance(body, dict) and "name" in body and body["name"] != bond:
            message = f"name: {body['name']!r} differs from the URL's {bond!r}"
            raise ApiError(400, "invalid_field", message, field="name")
        existing = self.service.configs.get(dp, {}).get(bond)
        key = existing.key if existing is not None else self.service.next_key(dp)
        config = BondConfig.from_dict(dp, body, name=bond, key=key)
        if config == existing:
            return json_response(200, self._bond_view(config))  # unchanged: nothing renegotiates
        self._check_ports(config)
        self.app.put_bond(config, replace=True)
        if existing is None:
            return json_response(201, self._bond_view(config), {"Location": bond_location(config)})
        return json_response(200, self._bond_view(config))

    @api_route("/lag/{dpid}/{bond}", ["DELETE"], DPID_BOND)
    def delete_bond(self, req: Request, dpid: str, bond: str, **_: Any) -> Response:
        config = self._config(dpid, bond)
        self.app.delete_bond(config.dpid, config.name)
        return empty_response(204)

    # ---- learned MACs --------------------------------------------------------------
    @api_route("/lag/{dpid}/macs", ["GET"], DPID)
    def get_macs(self, req: Request, dpid: str, **_: Any) -> Response:
        dp = self._known(dpid)
        logical = self._mac_filter(req, dp)
        if dp not in self.service.switches:
            return json_response(200, {"dpid": dpid, "macs": []})
        return json_response(200, views.macs_view(self.service, dp, logical))

    @api_route("/lag/{dpid}/macs", ["DELETE"], DPID)
    def flush_macs(self, req: Request, dpid: str, **_: Any) -> Response:
        dp = self._known(dpid)
        logical = self._mac_filter(req, dp)
        if dp not in self.service.switches:
            return json_response(200, {"dpid": dpid, "flushed": 0})
        flushed = len(views.learned_macs(self.service, dp, logical))
        self.app.flush_macs(dp, logical)
        return json_response(200, {"dpid": dpid, "flushed": flushed})

    # ---- documents -------------------------------------------------------------------
    @api_route("/lag/openapi.json", ["GET"])
    def get_openapi(self, req: Request, **_: Any) -> Response:
        return json_response(200, openapi.document())

    @api_route(METRICS_PATH, ["GET"])
    def get_metrics(self, req: Request, **_: Any) -> Response:
        response = Response(status=200, body=self.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    # ---- helpers -----------------------------------------------------------------------
    def _known(self, dpid: str) -> int:
        dp = int(dpid, 16)
        if not views.is_known(self.service, dp):
            raise ApiError(404, "unknown_switch", f"switch {dpid} is not connected and has no bonds")
        return dp

    def _config(self, dpid: str, bond: str) -> BondConfig:
        dp = self._known(dpid)
        config = self.service.configs.get(dp, {}).get(bond)
        if config is None:
            raise ApiError(404, "unknown_bond", f"switch {dpid} has no bond {bond!r}")
        return config

    def _bond_view(self, config: BondConfig) -> dict[str, Any]:
        return views.bond_view(self.service, config, self.clock())

    def _check_ports(self, config: BondConfig) -> None:
        """422 for a port the connected switch does not have (a switch not connected has them all)."""
        runtime = self.service.switches.get(config.dpid)
        if runtime is None:
            return
        missing = [port for port in config.ports if port not in runtime.ports]
        if missing:
            raise ApiError(
                422, "unknown_port", f"switch {format_dpid(config.dpid)} has no port {missing[0]}", field="ports"
            )

    def _mac_filter(self, req: Request, dp: int) -> int | None:
        """The logical port that ``?bond=`` or ``?port=`` names, or None for every MAC.

        Only validates for a switch that is not connected (it has no MACs): callers check.
        """
        params = req.GET
        unknown = sorted(set(params) - {"bond", "port"})
        if unknown:
            raise ApiError(400, "invalid_field", f"{unknown[0]}: unknown query parameter", field=unknown[0])
        if len(list(params.items())) > 1:
            raise ApiError(400, "invalid_field", "give at most one of bond= and port=, once")
        runtime = self.service.switches.get(dp)
        if "bond" in params:
            name = params["bond"]
            if name not in self.service.configs.get(dp, {}):
                raise ApiError(404, "unknown_bond", f"switch {format_dpid(dp)} has no bond {name!r}")
            return bond_logical(runtime.bonds[name].group_id) if runtime is not None else None
        if "port" in params:
            text = params["port"]
            if not (text.isascii() and text.isdecimal()) or not 1 <= int(text) <= MAX_PORT:
                raise ApiError(400, "invalid_field", f"port: {text!r} is not a port number", field="port")
            port = int(text)
            member_of = next((c.name for c in self.service.bond_configs(dp) if port in c.ports), None)
            if member_of is not None:
                raise ApiError(
                    400, "invalid_field", f"port: {port} is a member of bond {member_of!r}; use bond={member_of}",
                    field="port",
                )
            if runtime is not None and port not in runtime.ports:
                raise ApiError(422, "unknown_port", f"switch {format_dpid(dp)} has no port {port}", field="port")
            return port
        return None


def bond_location(config: BondConfig) -> str:
    return f"/lag/{format_dpid(config.dpid)}/{config.name}"


def read_json(req: Request) -> Any:
    """The request body as JSON, within ``MAX_BODY``.

    ``application/json`` (or ``+json``) must parse (400 otherwise). No type, or the form type
    that ``curl -d`` sends, is accepted when the body parses as JSON (415 otherwise); any
    other type is 415.
    """
    if req.content_length is not None and req.content_length > MAX_BODY:
        raise ApiError(413, "payload_too_large", f"the request body is over {MAX_BODY} bytes")
    raw = req.body_file.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "payload_too_large", f"the request body is over {MAX_BODY} bytes")
    content_type = (req.content_type or "").lower()
    declared = content_type == "application/json" or content_type.endswith("+json")
    if not declared and content_type not in _LENIENT_TYPES:
        raise ApiError(415, "unsupported_media_type", f"Content-Type {content_type} is not JSON; send application/json")
    try:
        if not raw.strip():
            raise ValueError("the request body is empty")
        return _JSON_DECODER.decode(raw.decode("utf-8"))
    except DuplicateKey as exc:  # JSON, but ambiguous: whichever copy won, the other was meant too
        raise ApiError(400, "malformed_json", f"the request body is ambiguous JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        if declared:
            raise ApiError(400, "malformed_json", f"the request body is not valid JSON: {exc}") from None
        shown = content_type or "no Content-Type"
        message = f"the body is not JSON ({shown}); send application/json"
        raise ApiError(415, "unsupported_media_type", message) from None


class DuplicateKey(ValueError):
    """A JSON object names the same key twice."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"duplicate key {key!r}")
            seen.add(key)
    return obj


# One, not one per request.
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_object_without_duplicates)


def register(
    wsgi: WSGIApplication,
    app: LagAppLike,
    token: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    host: str = DEFAULT_BIND,
) -> RestMetrics:
    """Add the API (listening on ``host``) to Ryu's WSGI application, then a 405 fallback per route
    and a JSON 404 under /lag."""
    metrics = RestMetrics(app.service, lambda: app.cluster_status())  # the app's status at each scrape
    hosts = None if token else HostNames.of_bind(host)
    wsgi.register(LagController, {"lag_app": app, "token": token, "metrics": metrics, "clock": clock, "hosts": hosts})
    for path, (methods, requirements) in routes().items():
        wsgi.mapper.connect(
            None, path, controller=LagController, action="method_not_allowed",
            route_path=path, allow=", ".join(methods), requirements=requirements,
        )
    wsgi.mapper.connect(None, "/lag/{path:.*}", controller=LagController, action="not_found")
    return metrics


def routes() -> dict[str, tuple[list[str], dict[str, str]]]:
    """Every route path with its methods (sorted, HEAD included) and requirements."""
    table: dict[str, tuple[list[str], dict[str, str]]] = {}
    for attr in vars(LagController).values():
        info = getattr(attr, "routing_info", None)
        if info is None:
            continue
        methods, _ = table.setdefault(info["path"], ([], info["requirements"] or {}))
        methods.extend(m for m in info["methods"] if m not in methods)
        methods.sort()
    return table


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_bind(host: str, token: str | None, insecure: bool) -> str | None:
    """Why the API must not listen on ``host``, or None when it may."""
    if token or insecure or is_loopback(host):
        return None
    return (
        f"the REST API would listen on {host} without a token, open to anyone who can reach it: "
        f"set {options.TOKEN_ENV} (or --lag-api-token), listen on 127.0.0.1 (--wsapi-host), "
        "or accept the risk with --lag-insecure"
    )


def install(wsgi: WSGIApplication, app: LagAppLike) -> None:
    """Register the API as ryu_lag's options say, served by :class:`server.QuietWSGIServer`; exit if it
    would listen insecurely."""
    host, token = CONF.wsapi_host, options.api_token()
    problem = insecure_bind(host, token, CONF.lag_insecure)
    if problem is not None:
        LOG.critical("ryu_lag cannot start: %s", problem)
        raise SystemExit(2)
    if token is None and not is_loopback(host):
        LOG.warning("REST API on %s without a token (--lag-insecure): anyone who can reach it can change bonds", host)
    register(wsgi, app, token, host=host)
    server.install()
    LOG.info("REST API on http://%s:%d/lag%s", host, CONF.wsapi_port, " (token required)" if token else "")
