"""Per-switch master election in etcd: the I/O side of ``ryu_lag.mastership``.

Keys (next to the etcd store's, under the same root)::

    /ryu_lag/v1/instances/<id>      JSON {"url": REST URL, "dpids": [connected dpids]}; bound to the instance's lease
    /ryu_lag/v1/masters/<dpid>      the master's instance id; bound to the master's lease

- Each instance holds one lease of :data:`LEASE_TTL` seconds and renews it every
  :data:`STEP_INTERVAL`. When an instance dies or is cut off from etcd, etcd revokes the
  lease and with it the instance's keys, its election keys included, in one revision.
- A switch's **generation id** is the mod revision of its ``masters/<dpid>`` key: every
  write to that key (a claim, a takeover) takes etcd's next revision, which grows
  cluster-wide, so each new master of a switch has a higher generation than every earlier one.
- A **claim** creates the key if absent; a **takeover** replaces it only if it still holds the
  master read (value and mod revision); a **release** deletes it only if it is still ours.
  Each is one transaction, which also reads the key back when its comparison fails: a
  write that timed out on one member and is retried on the next recognises its own first
  attempt (our id and our lease), so a retry never loses a race it has won.
- :meth:`Election.step` is the whole cycle, for the caller's green thread to run every
  :data:`STEP_INTERVAL`: renew the lease (or take a new one after it expired), publish our
  connected switches when they changed, read both prefixes at one revision, and carry out
  ``mastership.plan``. When no member answers, the step says so (``reachable`` false) and
  returns the last view read: the caller keeps the roles it has and claims nothing. That
  is the right thing in both cases it cannot tell apart: with etcd wholly down nobody can
  be elected, so the current masters keep LACP running; cut off alone, our lease expires at
  etcd within ``LEASE_TTL`` + 0.5 s and another instance claims our switches, whose
  ROLE_REQUEST with its higher generation makes the switch refuse us (IS_SLAVE).

etcd grants at least 1.5 × its election timeout (rounded up to whole seconds): a lease of
1 s needs members run with ``--election-timeout`` of 600 ms or less (``--heartbeat-interval
100 --election-timeout 500``); the granted TTL is in :attr:`Election.lease_ttl`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3.exceptions
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception, InternalServerError

from ryu_lag import mastership
from ryu_lag.config import format_dpid
from ryu_lag.etcd_store import API_PATH, RETRY_PAUSE, ROOT, WATCH_IDLE
from ryu_lag.mastership import Instance, Master, Plan

LOG = logging.getLogger("ryu_lag.election")

INSTANCES = ROOT + "instances/"
MASTERS = ROOT + "masters/"

LEASE_TTL = 1
"""Seconds an instance's lease (and so its masterships) outlives its last renewal. etcd revokes
an expired lease within another 0.5 s (its lessor checks twice a second); with a step every
STEP_INTERVAL another instance then claims the switches within 2 s of the last renewal."""
STEP_INTERVAL = 0.3
"""Seconds between two steps: lease renewals and reads of the election keys."""
CONNECT_TIMEOUT = 0.25
REQUEST_TIMEOUT = 0.5
"""Seconds one member may take to answer before the next member is tried: a step over three
members stays within LEASE_TTL even when two of them hang."""
# The request may not have reached etcd, or etcd could not commit it: try the next member.
_RETRIED = (ConnectionFailedError, ConnectionTimeoutError, InternalServerError, requests.RequestException, ValueError)
_DPID_HEX_LEN = 16
_LEASE_NOT_FOUND = "requested lease not found"  # etcd's refusal of a write on an expired lease
_LEASE_GONE = "election: lease of %s expired at etcd; its masterships are gone"


class EtcdUnavailable(Exception):
    """No etcd member answered in time (or one refused the request)."""


class LeaseExpired(Exception):
    """etcd refused a write on our lease: it has expired, and our keys are gone with it."""


@dataclass(frozen=True)
class ClusterView:
    """The election keys at one etcd revision."""

    revision: int
    instances: Mapping[str, Instance] = field(default_factory=dict)
    masters: Mapping[int, Master] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`Election.step` found and did."""

    reachable: bool
    """False: no member answered. ``view`` is then the last one read; keep the current roles, claim nothing."""
    view: ClusterView
    """The keys as read in this step, with this step's own writes applied."""
    lease_lost: bool = False
    """Our lease had expired at etcd (we could not renew it in time): every switch we mastered
    was released by etcd, and may already have another master. A new lease is in place."""
    won: Mapping[int, Master] = field(default_factory=dict)
    """Switches this step made ours (claims and takeovers), with their new generation."""
    released: tuple[int, ...] = ()
    """Switches we gave up because we are no longer connected to them."""
    plan: Plan | None = None
    error: str = ""
    """Why no member answered (``reachable`` false)."""


class Election:
    """One instance's side of the election: its lease, its instance key, its claims.

    Not thread-safe: one green thread steps it (the caller's election loop).
    """

    def __init__(self, endpoints: Sequence[tuple[str, int]], instance_id: str, url: str = "", *,
                 ttl: int = LEASE_TTL) -> None:
        if not endpoints:
            raise ValueError("election: no etcd endpoint")
        if ttl < 1:
            raise ValueError(f"election: lease TTL {ttl} s: etcd leases last whole seconds, at least 1")
        if not mastership.valid_instance_id(instance_id):
            raise ValueError(f"election: bad instance id {instance_id!r} (letters, digits, '.', '_', '-'; at most 64)")
        self.instance_id = instance_id
        self.url = url
        self.ttl = ttl
        self._clients = [Etcd3Client(host, port, timeout=(CONNECT_TIMEOUT, REQUEST_TIMEOUT), api_path=API_PATH)
                         for host, port in endpoints]
        self._preferred = 0  # the member that answered last
        self._lease: int | None = None
        self.lease_ttl: int | None = None
        """The TTL etcd granted our lease (etcd may raise the one asked for to its minimum)."""
        self._published: frozenset[int] | None = None
        self._view = ClusterView(0)

    @property
    def lease_id(self) -> int | None:
        return self._lease

    # ---- the cycle -----------------------------------------------------------------------
    def step(self, now: float, connected_since: Mapping[int, float]) -> StepResult:
        """Renew, publish, read, and carry out the plan for ``now``.

        ``connected_since``: the switches this instance is connected to, each with the time its
        connection came up (the clock of ``now``).
        """
        try:
            lease_lost = False
            if self._lease is None:
                self.register(connected_since)
            elif not self.keepalive():
                lease_lost = True
                LOG.warning(_LEASE_GONE, self.instance_id)
                self.register(connected_since)
            elif frozenset(connected_since) != self._published:
                self.publish(connected_since)
            view = self.read()
            decided = mastership.plan(self.instance_id, now, view.instances, view.masters, connected_since)
            masters = dict(view.masters)
            released: list[int] = []
            for dpid, held in decided.releases:
                if self.release(dpid, held):
                    masters.pop(dpid, None)
                    released.append(dpid)
            won: dict[int, Master] = {}
            for dpid in decided.claims:
                master = self.claim(dpid)
                if master is not None:
                    won[dpid] = masters[dpid] = master
            for dpid, expected in decided.takeovers:
                master = self.take_over(dpid, expected)
                if master is not None:
                    won[dpid] = masters[dpid] = master
        except EtcdUnavailable as exc:
            LOG.warning("election: %s", exc)
            return StepResult(False, self._view, error=str(exc))
        except LeaseExpired:  # between our renewal and a write: the next step takes a new lease
            LOG.warning(_LEASE_GONE, self.instance_id)
            self._lease = None
            return StepResult(True, self._view, lease_lost=True)
        self._view = ClusterView(view.revision, view.instances, masters)
        return StepResult(True, self._view, lease_lost, won, tuple(released), decided)

    # ---- lease and instance key ----------------------------------------------------------
    def register(self, dpids: Iterable[int]) -> None:
        """Take a new lease and put our instance key on it."""
        reply = self._post("lease/grant", {"TTL": self.ttl, "ID": 0})
        try:
            self._lease, self.lease_ttl = int(reply["ID"]), int(reply["TTL"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EtcdUnavailable(f"lease grant: unexpected reply {reply!r}") from exc
        self._published = None
        self.publish(dpids)

    def keepalive(self) -> bool:
        """Renew our lease; False when it had already expired (etcd answers without a TTL)."""
        if self._lease is None:
            return False
        reply = self._post("lease/keepalive", {"ID": self._lease})
        result = reply.get("result")
        try:
            if isinstance(result, dict) and int(result.get("TTL", 0)) > 0:
                return True
        except ValueError as exc:
            raise EtcdUnavailable(f"lease keepalive: unexpected reply {reply!r}") from exc
        self._lease = None
        return False

    def publish(self, dpids: Iterable[int]) -> None:
        """Put our instance key (REST URL, connected switches) on our lease."""
        connected = frozenset(dpids)
        value = json.dumps({"url": self.url, "dpids": sorted(connected)}, sort_keys=True)
        self._post("kv/put", {"key": _b64(INSTANCES + self.instance_id), "value": _b64(value), "lease": self._lease})
        self._published = connected

    def close(self) -> None:
        """Revoke our lease: our instance key and every switch we master are released at once."""
        if self._lease is None:
            return
        try:
            self._post("kv/lease/revoke", {"ID": self._lease})
        except EtcdUnavailable as exc:
            LOG.warning("election: lease not revoked (it expires in %s s): %s", self.lease_ttl, exc)
        self._lease = None

    # ---- reads ---------------------------------------------------------------------------
    def read(self) -> ClusterView:
        """Live instances and masters, at one revision. Keys or values that are not ours are skipped (logged)."""
        reply = self._post("kv/txn", {"success": [
            {"request_range": {"key": _b64(INSTANCES), "range_end": _b64(_prefix_end(INSTANCES))}},
            {"request_range": {"key": _b64(MASTERS), "range_end": _b64(_prefix_end(MASTERS))}},
        ]})
        try:
            revision = int(reply["header"]["revision"])
            instance_kvs, master_kvs = (r["response_range"].get("kvs", []) for r in reply["responses"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EtcdUnavailable(f"read: unexpected reply {reply!r}") from exc
        instances: dict[str, Instance] = {}
        for kv in instance_kvs:
            instance = _parse_instance(kv)
            if instance is not None:
                instances[instance.instance_id] = instance
        masters: dict[int, Master] = {}
        for kv in master_kvs:
            parsed = _parse_master(kv)
            if parsed is not None:
                masters[parsed[0]] = parsed[1]
        return ClusterView(revision, instances, masters)

    # ---- writes --------------------------------------------------------------------------
    def claim(self, dpid: int) -> Master | None:
        """Become the switch's master if it has none: our Master (the generation) or None."""
        key = _b64(_master_key(dpid))
        return self._write_master(dpid, [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0}])

    def take_over(self, dpid: int, expected: Master) -> Master | None:
        """Become the switch's master if ``expected`` still is: our Master or None."""
        key = _b64(_master_key(dpid))
        return self._write_master(dpid, [
            {"key": key, "target": "VALUE", "result": "EQUAL", "value": _b64(expected.instance)},
            {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": expected.generation},
        ])

    def release(self, dpid: int, held: Master) -> bool:
        """Delete the switch's key if it still is ``held`` (ours); True when the key is not ours any more."""
        key = _b64(_master_key(dpid))
        reply = self._post("kv/txn", {
            "compare": [{"key": key, "target": "VALUE", "result": "EQUAL", "value": _b64(self.instance_id)},
                        {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": held.generation}],
            "success": [{"request_delete_range": {"key": key}}],
            "failure": [{"request_range": {"key": key}}],
        })
        if reply.get("succeeded"):
            return True
        current = _read_back(reply)
        return current is None or _text(current.get("value", "")) != self.instance_id

    def _write_master(self, dpid: int, compare: list[dict[str, Any]]) -> Master | None:
        if self._lease is None:
            return None
        key = _b64(_master_key(dpid))
        reply = self._post("kv/txn", {
            "compare": compare,
            "success": [{"request_put": {"key": key, "value": _b64(self.instance_id), "lease": self._lease}}],
            "failure": [{"request_range": {"key": key}}],
        })
        try:
            if reply.get("succeeded"):
                return Master(self.instance_id, int(reply["header"]["revision"]))
            current = _read_back(reply)
            if (current is not None and _text(current.get("value", "")) == self.instance_id
                    and int(current.get("lease", 0)) == self._lease):
                return Master(self.instance_id, int(current["mod_revision"]))  # our own retried write
        except (KeyError, TypeError, ValueError) as exc:
            raise EtcdUnavailable(f"claim of {format_dpid(dpid)}: unexpected reply {reply!r}") from exc
        return None

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to the first member that answers, starting with the one that answered last."""
        failures = []
        for attempt in range(len(self._clients)):
            index = (self._preferred + attempt) % len(self._clients)
            client = self._clients[index]
            try:
                reply = client.post(client.get_url(path), json=payload)
            except _RETRIED as exc:
                failures.append(f"{client.host}:{client.port}: {type(exc).__name__}")
                continue
            except Etcd3Exception as exc:  # a refusal (a request etcd does not take); nothing to retry
                if _LEASE_NOT_FOUND in (exc.detail_text or ""):
                    raise LeaseExpired(f"{path}: lease {self._lease} not found") from exc
                raise EtcdUnavailable(f"{path}: refused by {client.host}:{client.port}: {exc}") from exc
            if not isinstance(reply, dict):
                failures.append(f"{client.host}:{client.port}: reply is not an object")
                continue
            self._preferred = index
            return reply
        raise EtcdUnavailable(f"{path}: no etcd member answered ({'; '.join(failures)})")


class MasterWatch(threading.Thread):
    """Calls ``wake()`` the moment a master key changes at etcd (a dead or cut-off master's key
    deleted with its lease, a claim, a takeover), so that the election loop steps at once
    instead of at its next poll: a takeover after a master dies is up to STEP_INTERVAL sooner.
    Best effort: the loop polls anyway, so a lost stream only costs that time."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], wake: Callable[[], None]) -> None:
        super().__init__(name="ryu_lag election watch", daemon=True)
        self._clients = [Etcd3Client(host, port, timeout=(CONNECT_TIMEOUT, WATCH_IDLE), api_path=API_PATH)
                         for host, port in endpoints]
        self._wake = wake
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        member, failures = 0, 0
        while not self._stopped.is_set():
            client = self._clients[member]
            try:
                self._follow(client)  # returns after an idle stream timed out: simply re-create it
                failures = 0
            except (requests.RequestException, ValueError, KeyError, OSError) as exc:
                if failures == 0:
                    LOG.info("election watch on %s:%s ended (%s); polling until it is back", client.host, client.port,
                             type(exc).__name__)
                member = (member + 1) % len(self._clients)
                self._stopped.wait(RETRY_PAUSE[min(failures, len(RETRY_PAUSE) - 1)])
                failures += 1

    def _follow(self, client: Etcd3Client) -> None:
        request = {"create_request": {"key": _b64(MASTERS), "range_end": _b64(_prefix_end(MASTERS))}}
        with client.session.post(client.get_url("watch"), json=request, stream=True,
                                 timeout=(CONNECT_TIMEOUT, WATCH_IDLE),
                                 headers={"Grpc-Metadata-hasleader": "true"}) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            try:
                for line in response.iter_lines():
                    if self._stopped.is_set():
                        return
                    if line and json.loads(line).get("result", {}).get("events"):
                        self._wake()
            except requests.ConnectionError as exc:
                if not (exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)):
                    raise


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode("utf-8", "replace")


def _prefix_end(prefix: str) -> str:
    """The range end covering every key that starts with ``prefix`` (ASCII prefixes only)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _master_key(dpid: int) -> str:
    return MASTERS + format_dpid(dpid)


def _read_back(reply: dict[str, Any]) -> dict[str, Any] | None:
    """The key a failed transaction read back, or None when it is absent."""
    try:
        kvs = reply["responses"][0]["response_range"].get("kvs", [])
    except (KeyError, IndexError, TypeError):
        return None
    return kvs[0] if kvs else None


def _parse_instance(kv: dict[str, Any]) -> Instance | None:
    key = _text(kv.get("key", ""))
    instance_id = key[len(INSTANCES):]
    try:
        record = json.loads(_text(kv.get("value", "")))
        dpids = frozenset(record["dpids"])
        url = record["url"]
        if (not mastership.valid_instance_id(instance_id) or not isinstance(url, str)
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 64 for d in dpids)):
            raise ValueError("not an instance record")
    except (ValueError, KeyError, TypeError) as exc:
        LOG.error("election: skipping %s: %s", key, exc)
        return None
    return Instance(instance_id, dpids, url)


def _parse_master(kv: dict[str, Any]) -> tuple[int, Master] | None:
    key = _text(kv.get("key", ""))
    suffix = key[len(MASTERS):]
    holder = _text(kv.get("value", ""))
    try:
        if len(suffix) != _DPID_HEX_LEN or suffix != suffix.lower():
            raise ValueError("not a dpid")
        dpid = int(suffix, 16)
        if not mastership.valid_instance_id(holder):
            raise ValueError(f"not an instance id: {holder!r}")
        return dpid, Master(holder, int(kv["mod_revision"]))
    except (ValueError, KeyError) as exc:
        LOG.error("election: skipping %s: %s", key, exc)
        return None
