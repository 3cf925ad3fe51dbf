"""The etcd store (``etcd://HOST:PORT[,HOST:PORT...]``): one configuration shared by a controller cluster.

It keeps the rules of :class:`ryu_lag.stores.Store` through etcd's JSON gateway (``/v3``,
reached with ``etcd3gw``'s client, which runs under eventlet), trying the members in turn.

Keys (16 lowercase hex digits for a dpid, the bond's name as configured)::

    /ryu_lag/v1/config/<dpid>/bonds/<name>   JSON of BondConfig.to_dict()
    /ryu_lag/v1/config/<dpid>/rev            id of the last write to the switch (bumped by every write)
    /ryu_lag/v1/sessions/<dpid>/<name>       JSON object: the bond's LACP session state

- A switch's **revision** is the highest mod revision among its ``config/<dpid>/`` keys (a
  deletion is seen through ``rev``, which every write puts in the same transaction).
- A write with ``expect`` is one transaction that compares every key under
  ``config/<dpid>/`` to have a mod revision of at most ``expect``; the loser of a race
  gets :class:`StoreConflict`. Other programs writing bonds should put ``rev`` in the
  same transaction, or their deletions go unseen by that comparison.
- Writes are retried on another member after a connection failure or a timeout, which
  is safe even when the first attempt was applied: ``rev`` holds the write's id, and a
  retry whose comparison fails because of its own first attempt finds that id and
  succeeds.
- The changes ``poll_changes`` delivers come from one watch on ``config/``, resumed on the
  next member from the revision after the last one delivered; a watch that fell behind a
  compaction is resynchronised from a fresh read (the changes it missed arrive as one put
  or delete per bond that differs).
- A value that is not a valid bond (it came from outside this process) is skipped with a
  logged error; the loader and the watch carry on.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import requests
import urllib3.exceptions
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception, InternalServerError

from ryu_lag.config import NAME_RE, BondConfig, format_dpid
from ryu_lag.store import DPID_TEXT_RE
from ryu_lag.stores import ETCD_SCHEME, BondChange, SessionKey, Snapshot, StoreConflict, StoreError, take_changes

LOG = logging.getLogger("ryu_lag.etcd_store")

ROOT = "/ryu_lag/v1/"
CONFIG = ROOT + "config/"
SESSIONS = ROOT + "sessions/"
API_PATH = "/v3/"  # etcd 3.4 and later
CONNECT_TIMEOUT = 1.0
REQUEST_TIMEOUT = 2.0
"""Seconds one member may take to answer. A write forwarded to a leader that just died gets no
answer from etcd for 5 s and more; after this the write is retried (safely) on the next member."""
OPERATION_DEADLINE = 10.0
"""Seconds an operation keeps trying the members before it fails with StoreError."""
RETRY_PAUSE = (0.05, 0.2, 0.5, 1.0)
"""Pauses (the last repeats): a request's after each round over the members, the watch's after each lost stream."""
WATCH_IDLE = 10.0
"""Seconds without a byte after which a watch stream is re-created (catches a member that hangs)."""
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
PAGE = 500  # keys per range request when loading
# Retried on another member: the request may not have reached etcd, or etcd could not commit it.
RETRIED = (ConnectionFailedError, ConnectionTimeoutError, InternalServerError)


class _Compacted(Exception):
    """The watch's next revision was compacted away."""


class _StreamEnded(Exception):
    """The watch stream ended or was refused."""


class EtcdStore:
    """Bonds, switch revisions and LACP sessions in etcd; see the module docstring for the layout."""

    def __init__(self, endpoints: Sequence[tuple[str, int]]) -> None:
        if not endpoints:
            raise StoreError("etcd store: no endpoint")
        self.url = ETCD_SCHEME + ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in endpoints)
        self._clients = [Etcd3Client(host, port, timeout=(CONNECT_TIMEOUT, REQUEST_TIMEOUT), api_path=API_PATH)
                         for host, port in endpoints]
        self._preferred = 0  # the member that answered last
        self._cond = threading.Condition()  # guards _changes and _watch
        self._changes: list[BondChange] = []
        self._watch: _Watch | None = None
        self._call("kv/range", {"key": _b64(ROOT), "range_end": _b64(_prefix_end(ROOT)), "count_only": True},
                   what="reach etcd")

    # ---- reads ---------------------------------------------------------------------------
    def load(self) -> Snapshot:
        """Everything at one revision; ``poll_changes`` then delivers every change after it."""
        snapshot, bonds = self._read_snapshot()
        watch = _Watch(self, snapshot.revision + 1, bonds)
        with self._cond:
            old, self._watch = self._watch, watch
            if old is not None:
                old.stop()
            self._changes.clear()
        watch.start()
        return snapshot

    def _read_snapshot(self) -> tuple[Snapshot, dict[SessionKey, BondConfig]]:
        kvs, revision = self._range_all(CONFIG)
        sessions_kvs, _ = self._range_all(SESSIONS, revision)
        bonds: dict[SessionKey, tuple[int, BondConfig]] = {}
        revisions: dict[int, int] = {}
        for kv in kvs:
            parsed = _parse_config_key(kv["key"])
            if parsed is None:
                continue
            dpid, name = parsed
            revisions[dpid] = max(revisions.get(dpid, 0), int(kv["mod_revision"]))
            if name is not None:
                config = _parse_bond(dpid, name, kv.get("value", b""))
                if config is not None:
                    bonds[(dpid, name)] = (int(kv["create_revision"]), config)
        ordered = sorted(bonds.items(), key=lambda item: (item[0][0], item[1][0]))  # dpid, then creation
        snapshot = Snapshot([config for _, (_, config) in ordered], _sessions(sessions_kvs), revisions, revision)
        return snapshot, {key: config for key, (_, config) in ordered}

    def load_all(self) -> list[BondConfig]:
        """Every valid stored bond (invalid values are logged and skipped)."""
        return self._read_snapshot()[0].bonds

    def load_sessions(self, dpid: int | None = None) -> dict[SessionKey, dict[str, Any]]:
        """Stored session state by (dpid, bond name), of every switch or of ``dpid``'s; a value that
        is not a JSON object is left out."""
        prefix = SESSIONS if dpid is None else f"{SESSIONS}{format_dpid(dpid)}/"
        return _sessions(self._range_all(prefix)[0])

    def _range_all(self, prefix: str, revision: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """Every key-value under ``prefix`` (keys and values decoded to str/bytes) at one revision."""
        kvs: list[dict[str, Any]] = []
        start = prefix
        while True:
            request: dict[str, Any] = {"key": _b64(start), "range_end": _b64(_prefix_end(prefix)), "limit": PAGE}
            if revision is not None:
                request["revision"] = revision
            reply = self._call("kv/range", request, what=f"read {prefix}")
            revision = int(reply["header"]["revision"])
            page = [_decode_kv(kv) for kv in reply.get("kvs", [])]
            kvs.extend(page)
            if not reply.get("more") or not page:
                return kvs, revision
            start = page[-1]["key"] + "\0"

    # ---- writes --------------------------------------------------------------------------
    def put_bond(self, config: BondConfig, *, expect: int | None = None) -> int:
        """Insert or replace one bond; returns the switch's new revision. Raises StoreConflict."""
        put = {"request_put": {"key": _b64(_bond_key(config.dpid, config.name)),
                               "value": _b64(json.dumps(config.to_dict(), sort_keys=True))}}
        return self._change(config.dpid, config.name, expect, [put], deleting=False)

    def delete_bond(self, dpid: int, name: str, *, expect: int | None = None) -> int:
        """Remove one bond and its session state; returns the switch's revision. Raises StoreConflict.

        Deleting a bond that is not there changes nothing and returns the current revision.
        """
        ops = [{"request_delete_range": {"key": _b64(_bond_key(dpid, name))}},
               {"request_delete_range": {"key": _b64(_session_key(dpid, name))}}]
        return self._change(dpid, name, expect, ops, deleting=True)

    def put(self, config: BondConfig) -> None:
        """Insert or replace one bond, whatever the switch's revision."""
        self.put_bond(config)

    def delete(self, dpid: int, name: str) -> None:
        """Remove one bond and its session state, whatever the switch's revision."""
        self.delete_bond(dpid, name)

    def _change(self, dpid: int, name: str, expect: int | None, ops: list[dict[str, Any]], *, deleting: bool) -> int:
        """One bond change plus the switch's ``rev`` key in one transaction; the switch's revision after it."""
        write_id = uuid.uuid4().hex
        switch = CONFIG + format_dpid(dpid) + "/"
        rev_key = _b64(switch + "rev")
        compare = []
        if expect is not None:
            compare.append({"key": _b64(switch), "range_end": _b64(_prefix_end(switch)),
                            "target": "MOD", "result": "LESS", "mod_revision": expect + 1})
        if deleting:
            compare.append({"key": _b64(_bond_key(dpid, name)), "target": "CREATE", "result": "GREATER",
                            "create_revision": 0})
        txn = {
            "compare": compare,
            "success": ops + [{"request_put": {"key": rev_key, "value": _b64(write_id)}}],
            "failure": [
                {"request_range": {"key": rev_key}},
                {"request_range": {"key": _b64(switch), "range_end": _b64(_prefix_end(switch)),
                                   "sort_target": "MOD", "sort_order": "DESCEND", "limit": 1, "keys_only": True}},
            ],
        }
        reply = self._call("kv/txn", txn, what=f"write bond {name!r} of {format_dpid(dpid)}")
        if reply.get("succeeded"):
            return int(reply["header"]["revision"])
        rev_kvs = reply["responses"][0]["response_range"].get("kvs", [])
        if rev_kvs and _decode_kv(rev_kvs[0]).get("value") == write_id.encode():
            return int(rev_kvs[0]["mod_revision"])  # a retry: our first attempt was applied
        latest = reply["responses"][1]["response_range"].get("kvs", [])
        current = int(latest[0]["mod_revision"]) if latest else 0
        if expect is not None and current > expect:
            raise StoreConflict(dpid, expect, f"switch {format_dpid(dpid)} changed (revision {current},"
                                f" the change was based on {expect}); nothing was written")
        return current  # deleting a bond that is not there

    def put_sessions(self, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """Insert or replace the session state of each (dpid, bond name), ``MAX_TXN_OPS`` to a transaction."""
        ops = [{"request_put": {"key": _b64(_session_key(dpid, name)), "value": _b64(json.dumps(state, sort_keys=True))}}
               for dpid, name, state in rows]
        for start in range(0, len(ops), MAX_TXN_OPS):
            self._call("kv/txn", {"compare": [], "success": ops[start:start + MAX_TXN_OPS]}, what="write sessions")

    # ---- changes -------------------------------------------------------------------------
    def poll_changes(self, timeout: float = 0.0) -> list[BondChange]:
        """Every writer's bond changes since the last call or ``load`` (waiting up to ``timeout`` s for one)."""
        return take_changes(self._cond, self._changes, timeout)

    def _deliver(self, watch: _Watch, changes: list[BondChange]) -> bool:
        """Queue ``changes`` from ``watch`` unless a newer ``load`` replaced it; False once replaced."""
        with self._cond:
            if self._watch is not watch:
                return False
            if changes:
                self._changes.extend(changes)
                self._cond.notify_all()
            return True

    def close(self) -> None:
        """Stop the watch and close every connection."""
        with self._cond:
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
            watch.join(REQUEST_TIMEOUT)
        for client in self._clients:
            client.session.close()

    # ---- requests ------------------------------------------------------------------------
    def _call(self, path: str, payload: dict[str, Any], *, what: str) -> dict[str, Any]:
        """POST ``payload`` to the gateway, trying members until one answers or ``OPERATION_DEADLINE``."""
        deadline = time.monotonic() + OPERATION_DEADLINE
        failures: list[str] = []
        first = self._preferred
        for attempt in itertools.count():
            if attempt and attempt % len(self._clients) == 0:  # a round over every member failed
                pause = RETRY_PAUSE[min(attempt // len(self._clients) - 1, len(RETRY_PAUSE) - 1)]
                if time.monotonic() + pause > deadline:
                    break
                time.sleep(pause)
            index = (first + attempt) % len(self._clients)
            client = self._clients[index]
            try:
                reply = client.post(client.get_url(path), json=payload)
            except RETRIED as exc:
                failures.append(f"{client.host}:{client.port}: {_etcd_message(exc)}")
                continue
            except Etcd3Exception as exc:
                raise StoreError(f"etcd store {self.url}: cannot {what}: {_etcd_message(exc)}") from exc
            except ValueError as exc:  # a reply that is not JSON
                raise StoreError(f"etcd store {self.url}: cannot {what}: bad reply: {exc}") from exc
            self._preferred = index
            return reply
        raise StoreError(f"etcd store {self.url}: cannot {what}: no member answered within"
                         f" {OPERATION_DEADLINE:g} s ({'; '.join(failures[-len(self._clients):])})")


class _Watch(threading.Thread):
    """Follows ``config/`` from one revision on, turning events into BondChanges for its store."""

    def __init__(self, store: EtcdStore, next_revision: int, bonds: dict[SessionKey, BondConfig]) -> None:
        super().__init__(name="ryu_lag etcd watch", daemon=True)
        self.store = store
        self.next_revision = next_revision
        self.bonds = dict(bonds)  # what the changes delivered so far add up to: for a resync
        self._stopped = threading.Event()
        self._response: requests.Response | None = None
        self.failures = 0  # streams lost since one was last created

    def stop(self) -> None:
        """Ask the thread to end, and wake it from a blocked read."""
        self._stopped.set()
        response = self._response
        if response is not None:
            _shutdown(response)

    def run(self) -> None:
        member = self.store._preferred
        while not self._stopped.is_set():
            client = self.store._clients[member]
            try:
                self._follow(client)  # returns when an idle stream timed out: simply re-create it
            except _Compacted:
                self._resync()
            except (requests.RequestException, _StreamEnded, StoreError, ValueError, KeyError, OSError) as exc:
                if self._stopped.is_set():
                    return
                # One warning per outage, not one per attempt while every member is down.
                log = LOG.warning if self.failures == 0 else LOG.debug
                log("etcd watch on %s:%s ended (%s); resuming at revision %d on the next member",
                    client.host, client.port, exc, self.next_revision)
                member = (member + 1) % len(self.store._clients)
                self._stopped.wait(RETRY_PAUSE[min(self.failures, len(RETRY_PAUSE) - 1)])
                self.failures += 1

    def _follow(self, client: Etcd3Client) -> None:
        """Read one watch stream until it ends; raises on errors, returns after an idle timeout."""
        request = {"create_request": {"key": _b64(CONFIG), "range_end": _b64(_prefix_end(CONFIG)),
                                      "start_revision": self.next_revision}}
        # hasleader: the member cancels the watch when it loses its leader, instead of going quiet.
        response = client.session.post(client.get_url("watch"), json=request, stream=True,
                                       timeout=(CONNECT_TIMEOUT, WATCH_IDLE),
                                       headers={"Grpc-Metadata-hasleader": "true"})
        self._response = response
        try:
            if self._stopped.is_set():
                return
            if response.status_code != 200:
                raise _StreamEnded(f"HTTP {response.status_code}: {response.text[:200]}")
            buffer = b""
            try:
                for chunk in response.iter_content(chunk_size=None):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self._handle(json.loads(line))
            except requests.ConnectionError as exc:
                idle = bool(exc.args) and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)
                if self._stopped.is_set() or not idle:
                    raise
        finally:
            self._response = None
            response.close()

    def _handle(self, message: dict[str, Any]) -> None:
        """One message of the stream."""
        if "error" in message:
            raise _StreamEnded(message["error"].get("message", message["error"]))
        result = message["result"]
        if result.get("canceled"):
            if int(result.get("compact_revision", 0)):
                raise _Compacted()
            raise _StreamEnded(result.get("cancel_reason") or "the member canceled the watch")
        if result.get("created"):
            if self.failures:
                LOG.info("etcd watch resumed at revision %d", self.next_revision)
            self.failures = 0
        events = result.get("events", [])
        changes = []
        for event in events:
            kv = _decode_kv(event["kv"])
            parsed = _parse_config_key(kv["key"])
            if parsed is None or parsed[1] is None:
                continue
            dpid, name = parsed
            revision = int(kv["mod_revision"])
            if event.get("type") == "DELETE":
                if self.bonds.pop((dpid, name), None) is not None:
                    changes.append(BondChange(dpid, name, None, revision))
                continue
            config = _parse_bond(dpid, name, kv.get("value", b""))
            if config is not None:
                self.bonds[(dpid, name)] = config
                changes.append(BondChange(dpid, name, config, revision))
        if events:
            self.next_revision = int(events[-1]["kv"]["mod_revision"]) + 1
        if not self.store._deliver(self, changes):
            self._stopped.set()

    def _resync(self) -> None:
        """After a compaction: a change for every bond that differs from what was delivered."""
        snapshot, bonds = self.store._read_snapshot()
        LOG.warning("etcd watch fell behind a compaction at revision %d; resynchronised at %d",
                    self.next_revision, snapshot.revision)
        changes = []
        for key in sorted(self.bonds.keys() | bonds.keys()):
            old, new = self.bonds.get(key), bonds.get(key)
            if old != new:
                changes.append(BondChange(key[0], key[1], new, snapshot.revision))
        self.bonds = bonds
        self.next_revision = snapshot.revision + 1
        if not self.store._deliver(self, changes):
            self._stopped.set()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _prefix_end(prefix: str) -> str:
    """The range end covering every key that starts with ``prefix`` (ASCII prefixes only)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _decode_kv(kv: dict[str, Any]) -> dict[str, Any]:
    """A gateway key-value with ``key`` as text and ``value`` as bytes."""
    decoded = dict(kv)
    decoded["key"] = base64.b64decode(kv["key"]).decode("utf-8", "replace")
    decoded["value"] = base64.b64decode(kv.get("value", ""))
    return decoded


def _bond_key(dpid: int, name: str) -> str:
    return f"{CONFIG}{format_dpid(dpid)}/bonds/{name}"


def _session_key(dpid: int, name: str) -> str:
    return f"{SESSIONS}{format_dpid(dpid)}/{name}"


def _parse_dpid(text: str) -> int | None:
    return int(text, 16) if len(text) == 16 and DPID_TEXT_RE.fullmatch(text) else None


def _parse_config_key(key: str) -> tuple[int, str | None] | None:
    """(dpid, bond name) of a bond key, (dpid, None) of a ``rev`` key; None for anything else."""
    parts = key[len(CONFIG):].split("/") if key.startswith(CONFIG) else []
    dpid = _parse_dpid(parts[0]) if parts else None
    if dpid is None:
        return None
    if parts[1:] == ["rev"]:
        return dpid, None
    if len(parts) == 3 and parts[1] == "bonds" and NAME_RE.fullmatch(parts[2]):
        return dpid, parts[2]
    return None


def _parse_session_key(key: str) -> SessionKey | None:
    parts = key[len(SESSIONS):].split("/") if key.startswith(SESSIONS) else []
    dpid = _parse_dpid(parts[0]) if len(parts) == 2 else None
    return (dpid, parts[1]) if dpid is not None else None


def _sessions(kvs: list[dict[str, Any]]) -> dict[SessionKey, dict[str, Any]]:
    """Session keys and values as session state by (dpid, bond name); anything else left out."""
    sessions = {}
    for kv in kvs:
        key = _parse_session_key(kv["key"])
        state = _json_object(kv.get("value", b""))
        if key is not None and state is not None:
            sessions[key] = state
    return sessions


def _json_object(value: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _parse_bond(dpid: int, name: str, value: bytes) -> BondConfig | None:
    """The bond a stored value holds; None (and an error logged) if it is not a valid one for its key."""
    where = f"etcd key {_bond_key(dpid, name)}"
    data = _json_object(value)
    if data is None:
        LOG.error("%s skipped: not a JSON object", where)
        return None
    stored_dpid = data.pop("dpid", format_dpid(dpid))
    try:
        config = BondConfig.from_dict(dpid, data)
    except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
        LOG.error("%s skipped: %s", where, exc)
        return None
    if stored_dpid != format_dpid(dpid) or config.name != name:
        LOG.error("%s skipped: it holds bond %r of %s", where, config.name, stored_dpid)
        return None
    return config


def _etcd_message(exc: Etcd3Exception) -> str:
    """What etcd or the connection said, in one line."""
    detail = exc.detail_text or ""
    try:
        detail = json.loads(detail).get("message", detail)
    except (ValueError, AttributeError):
        pass
    return detail.strip().splitlines()[0] if detail.strip() else type(exc).__name__


def _shutdown(response: requests.Response) -> None:
    """Shut down the socket under a streaming response, waking a thread blocked reading it."""
    try:
        sock = socket.fromfd(response.raw.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, ValueError, AttributeError):
        return  # already closed
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()
