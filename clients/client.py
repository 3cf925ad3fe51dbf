"""A Python client of the ryu_lag REST API: one method per endpoint, plain dicts back.

Errors raise :class:`ApiError` subclasses carrying the server's ``code`` and ``message``;
an unreachable controller raises :class:`ConnectionFailed`. Only idempotent calls (GET,
PUT, DELETE) are retried, and only when the connection fails, never after an answer.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from clients.apply import Change

DEFAULT_URL = "http://127.0.0.1:8080"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_DPID_RE = re.compile(r"^[0-9a-f]{16}$")


class LagError(Exception):
    """Any failure of a client call."""


class ConnectionFailed(LagError):
    """The controller could not be reached (after the retries of an idempotent call)."""


class ApiError(LagError):
    """The controller refused a request: HTTP ``status``, the server's ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class ValidationError(ApiError):
    """400, 413, 415 or 422: the request itself is wrong."""


class Unauthorized(ApiError):
    """401: missing or wrong token."""


class NotFound(ApiError):
    """404: no such switch, bond or resource."""


class Conflict(ApiError):
    """409: a port already in another bond, a key already used, or a name taken (``conflict``); or the
    switch changed through another instance or client meanwhile (``concurrent_change``: read again, retry)."""


class ServerError(ApiError):
    """5xx: the controller failed (503: its state database cannot be written)."""


class ApplyError(LagError):
    """A change of :meth:`LagClient.apply` failed: ``change``, the ``error`` it met, the changes ``done`` before."""

    def __init__(self, change: Change, error: LagError, done: list[Change]) -> None:
        super().__init__(f"{change.action} {change.dpid} {change.bond}: {error}")
        self.change = change
        self.error = error
        self.done = done


def error_class(status: int) -> type[ApiError]:
    if status == 401:
        return Unauthorized
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status in (400, 413, 415, 422):
        return ValidationError
    if status >= 500:
        return ServerError
    return ApiError


def format_dpid(dpid: int | str) -> str:
    """A dpid as the API's 16 lowercase hex digits; strings are read as hex (``"1"``, ``"0x1a"``)."""
    if isinstance(dpid, str):
        text = dpid.strip().lower()
        if _DPID_RE.match(text):
            return text
        try:
            dpid = int(text.removeprefix("0x"), 16)
        except ValueError:
            raise ValueError(f"not a dpid: {dpid!r} (hex, e.g. 0000000000000001)") from None
    if not 0 <= dpid < 1 << 64:
        raise ValueError(f"dpid out of range: {dpid}")
    return f"{dpid:016x}"


class LagClient:
    """The ryu_lag REST API at ``base_url``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # ---- switches -------------------------------------------------------------
    def list_switches(self) -> list[dict[str, Any]]:
        """Every switch that is connected or has bonds: dpid, connected, bond_count."""
        return self._call("GET", "/lag")["switches"]

    def get_switch(self, dpid: int | str) -> dict[str, Any]:
        """A switch with its ports and all its bonds (members with status)."""
        return self._call("GET", f"/lag/{format_dpid(dpid)}")

    # ---- bonds ------------------------------------------------------------------
    def create_bond(self, dpid: int | str, ports: list[int], **settings: Any) -> dict[str, Any]:
        """POST a new bond; ``settings``: name, mode, rate, key, system_priority, port_priority, min_links, system, bfd.

        ``bfd``: a dict of BFD fields (min_tx_ms, min_rx_ms, multiplier, encapsulation, dst_mac, src_ip,
        dst_ip), True for the defaults, False to send ``"bfd": null`` (off); None (the default) leaves it out:
        off as well, since a bond's body is its whole configuration.
        """
        return self._call("POST", f"/lag/{format_dpid(dpid)}", body=_bond_body(ports, settings))

    def put_bond(self, dpid: int | str, name: str, ports: list[int], **settings: Any) -> dict[str, Any]:
        """Create or replace bond ``name`` (``settings`` as for :meth:`create_bond`); the same call again changes nothing."""
        return self._call("PUT", f"/lag/{format_dpid(dpid)}/{name}", body=_bond_body(ports, settings))

    def get_bond(self, dpid: int | str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/lag/{format_dpid(dpid)}/{name}")

    def delete_bond(self, dpid: int | str, name: str) -> None:
        """Delete a bond: its ports become plain ports again."""
        self._call("DELETE", f"/lag/{format_dpid(dpid)}/{name}")

    # ---- desired state ------------------------------------------------------------
    def apply(self, desired: Any, *, prune: bool = False, dry_run: bool = False) -> list[Change]:
        """Make the switches and bonds of ``desired`` (a ``lagctl apply`` file's content) so.

        Reads each named switch, plans (:func:`clients.apply.plan`) and, unless
        ``dry_run``, issues only the PUTs and DELETEs of the plan, in its order; returns the
        plan (empty: nothing to do). Raises :class:`clients.apply.InvalidDesiredState`
        before any call for a bad ``desired``, and :class:`ApplyError` at the first change
        the controller refuses (the changes before it stay made).
        """
        from clients import apply  # it imports this module

        wanted = apply.parse_desired(desired)
        current = {dpid: self._bond_configs(dpid) for dpid in wanted}
        changes = apply.plan(wanted, current, prune=prune)
        if not dry_run:
            for done, change in enumerate(changes):
                try:
                    if change.action == apply.DELETE:
                        self.delete_bond(change.dpid, change.bond)
                    else:
                        self.put_bond(change.dpid, change.bond, **(change.body or {}))
                except LagError as exc:
                    raise ApplyError(change, exc, changes[:done]) from exc
        return changes

    def _bond_configs(self, dpid: str) -> dict[str, dict[str, Any]]:
        """Each bond's ``config`` by name; none for a switch the controller does not know."""
        try:
            switch = self.get_switch(dpid)
        except NotFound as exc:
            if exc.code == "unknown_switch":
                return {}
            raise
        return {bond["name"]: bond["config"] for bond in switch["bonds"]}

    # ---- learned MACs --------------------------------------------------------------
    def list_macs(self, dpid: int | str, *, bond: str | None = None, port: int | None = None) -> list[dict[str, Any]]:
        """Learned MACs: ``{"mac", "port", "bond"}`` (one of port and bond is null)."""
        return self._call("GET", f"/lag/{format_dpid(dpid)}/macs", params=_filter(bond, port))["macs"]

    def flush_macs(self, dpid: int | str, *, bond: str | None = None, port: int | None = None) -> int:
        """Forget learned MACs (all, or one bond's or plain port's); returns how many."""
        return self._call("DELETE", f"/lag/{format_dpid(dpid)}/macs", params=_filter(bond, port))["flushed"]

    # ---- cluster ---------------------------------------------------------------------
    def cluster(self) -> dict[str, Any]:
        """The cluster as the instance at ``base_url`` sees it (``GET /lag/cluster``): instance, store,
        election, instances, switches, takeovers, stepdowns."""
        return self._call("GET", "/lag/cluster")

    # ---- documents -------------------------------------------------------------------
    def openapi(self) -> dict[str, Any]:
        return self._call("GET", "/lag/openapi.json")

    def metrics(self) -> str:
        """The Prometheus text exposition."""
        return self._send("GET", "/metrics").text

    # ---- plumbing --------------------------------------------------------------------
    def _call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        response = self._send(method, path, body=body, params=params)
        return response.json() if response.content else None

    def _send(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> requests.Response:
        attempts = 1 + (self.retries if method in _IDEMPOTENT else 0)
        url = self.base_url + path
        for attempt in range(attempts):
            try:
                response = self.session.request(method, url, json=body, params=params, timeout=self.timeout)
                break
            except requests.ConnectionError as exc:
                if attempt + 1 == attempts:
                    raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc
                time.sleep(self.backoff * 2**attempt)
            except requests.Timeout as exc:
                raise ConnectionFailed(f"{method} {url}: no answer within {self.timeout} s") from exc
        if response.status_code >= 400:
            raise _error(response)
        return response


def _bond_body(ports: list[int], settings: dict[str, Any]) -> dict[str, Any]:
    body = {"ports": list(ports), **{k: v for k, v in settings.items() if v is not None and k != "bfd"}}
    bfd = settings.get("bfd")
    if bfd is True:
        body["bfd"] = {}
    elif bfd is False:
        body["bfd"] = None
    elif bfd is not None:
        body["bfd"] = dict(bfd)
    return body


def _filter(bond: str | None, port: int | None) -> dict[str, Any]:
    return {k: v for k, v in (("bond", bond), ("port", port)) if v is not None}


def _error(response: requests.Response) -> ApiError:
    """The typed error of a refused request, from the server's JSON error body when it has one."""
    try:
        error = response.json()["error"]
        code, message, field = str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        code, message, field = "http_error", response.text.strip()[:200] or response.reason, None
    return error_class(response.status_code)(response.status_code, code, message, field)
