"""Where ryu_lag keeps its state: one interface, two stores, chosen by ``--lag-store URL``.

- ``sqlite:PATH``: :class:`ryu_lag.store.BondStore`, a file owned by one process (the default,
  spelled ``--lag-db PATH`` too).
- ``etcd://HOST:PORT[,HOST:PORT...]``: :class:`ryu_lag.etcd_store.EtcdStore`, shared by every
  instance of a controller cluster; each one sees the others' changes.

Both keep the same rules (:class:`Store`):

- **Revisions.** Every change to a switch's bonds gets a store revision, and store revisions
  only grow (etcd's own revision; SQLite counts the same way). A switch's revision is the
  revision of its last change; a switch never changed has revision 0.
- **Conflicts.** ``put_bond``/``delete_bond`` take ``expect``: the switch revision the caller's
  checks were based on. If the switch changed after it, nothing is written and
  :class:`StoreConflict` is raised, so of two writers racing from the same view exactly one
  wins. ``expect=None`` writes over whatever is there (single-instance callers).
- **Changes.** ``poll_changes`` delivers every bond put or delete made by any writer (this
  store object included) after the latest ``load``, in revision order, each exactly once,
  as :class:`BondChange` values carrying the new revision (none before the first ``load``).
  A consumer keeps each switch's last revision, skips a change older than it (its own
  write may come back after a later one) and applies the rest; applying a change equal
  to what it holds does nothing.
- **Sessions** (per-bond LACP session state, opaque JSON objects) are written in batches by
  the switch's master, not conflict-checked, and deleted with their bond.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ryu_lag.config import BondConfig

SQLITE_SCHEME = "sqlite:"
ETCD_SCHEME = "etcd://"
HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
PORT_RE = re.compile(r"[0-9]{1,5}")

T = TypeVar("T")
SessionKey = tuple[int, str]
"""(dpid, bond name)."""


class StoreError(RuntimeError):
    """The store cannot be used, or a change could not be written (nothing was changed)."""


class StoreConflict(StoreError):
    """A conditional write lost: the switch changed after the revision the writer expected."""

    def __init__(self, dpid: int, expected: int, message: str) -> None:
        super().__init__(message)
        self.dpid = dpid
        self.expected = expected


class StoreUrlError(ValueError):
    """A ``--lag-store`` URL that names no store we can open."""


@dataclass(frozen=True)
class BondChange:
    """One bond put (``config`` set) or deleted (``config`` None) on switch ``dpid``."""

    dpid: int
    name: str
    config: BondConfig | None
    revision: int  # the switch's revision after this change


@dataclass(frozen=True)
class Snapshot:
    """Everything in the store at one revision."""

    bonds: list[BondConfig]  # by dpid, then creation order
    sessions: dict[SessionKey, dict[str, Any]]
    revisions: dict[int, int]  # switch revision by dpid, for switches ever changed
    revision: int  # the store revision this snapshot was read at

    def switch_revision(self, dpid: int) -> int:
        """``dpid``'s revision in this snapshot; 0 for a switch never changed."""
        return self.revisions.get(dpid, 0)


class Store(Protocol):
    """What the service needs from a store (both backends implement it)."""

    url: str

    def load(self) -> Snapshot:
        """Everything, consistently; ``poll_changes`` then delivers what changes after it."""

    def put_bond(self, config: BondConfig, *, expect: int | None = None) -> int:
        """Insert or replace one bond; returns the switch's new revision. Raises StoreConflict."""

    def delete_bond(self, dpid: int, name: str, *, expect: int | None = None) -> int:
        """Remove one bond and its session state; returns the switch's revision. Raises StoreConflict.

        Deleting a bond that is not there changes nothing and returns the current revision.
        """

    def put_sessions(self, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """Insert or replace the session state of each (dpid, bond name), as one batch."""

    def load_sessions(self, dpid: int | None = None) -> dict[SessionKey, dict[str, Any]]:
        """Stored session state by (dpid, bond name) (``load().sessions``), or only ``dpid``'s
        (what a new master of that switch resumes from)."""

    def poll_changes(self, timeout: float = 0.0) -> list[BondChange]:
        """The changes since the last call (waiting up to ``timeout`` s for the first), oldest first."""

    def close(self) -> None:
        """Release the store (its file lock, its connections, its watch)."""

    # The single-instance spelling, kept for existing callers.
    def load_all(self) -> list[BondConfig]:
        """Every stored bond (``load().bonds``)."""

    def put(self, config: BondConfig) -> None:
        """``put_bond(config)`` without a revision check."""

    def delete(self, dpid: int, name: str) -> None:
        """``delete_bond(dpid, name)`` without a revision check."""


def take_changes(cond: threading.Condition, pending: list[BondChange], timeout: float) -> list[BondChange]:
    """A store's ``poll_changes``: under ``cond`` (which writers notify), wait up to ``timeout`` s
    for a change if none is ``pending``, then take them all."""
    with cond:
        if not pending and timeout > 0:
            cond.wait(timeout)
        taken = pending[:]
        pending.clear()
    return taken


@dataclass(frozen=True)
class StoreUrl:
    """A parsed ``--lag-store`` URL: a SQLite ``path`` or etcd ``endpoints``."""

    kind: str  # "sqlite" or "etcd"
    path: str = ""
    endpoints: tuple[tuple[str, int], ...] = field(default=())


def sqlite_url(path: str) -> str:
    """The ``--lag-store`` URL of a ``--lag-db`` path."""
    return SQLITE_SCHEME + path


def parse_store_url(url: str) -> StoreUrl:
    """``sqlite:PATH`` or ``etcd://HOST:PORT[,HOST:PORT...]``; StoreUrlError says what is wrong."""
    if url.startswith(SQLITE_SCHEME):
        path = url[len(SQLITE_SCHEME):]
        if not path:
            raise StoreUrlError(f"store URL {url!r}: sqlite: needs a file path, as in sqlite:/var/lib/ryu-lag/state.sqlite3")
        if path.startswith("//"):
            raise StoreUrlError(f"store URL {url!r}: write sqlite:PATH (sqlite:/abs/path or sqlite:rel/path), without '//'")
        if "\0" in path:
            raise StoreUrlError(f"store URL {url!r}: the path holds a NUL byte")
        return StoreUrl("sqlite", path=path)
    if url.startswith(ETCD_SCHEME):
        rest = url[len(ETCD_SCHEME):]
        if not rest:
            raise StoreUrlError(f"store URL {url!r}: etcd:// needs HOST:PORT[,HOST:PORT...]")
        endpoints = []
        for item in rest.split(","):
            endpoints.append(_endpoint(url, item))
        if len(set(endpoints)) != len(endpoints):
            raise StoreUrlError(f"store URL {url!r}: an endpoint is listed twice")
        return StoreUrl("etcd", endpoints=tuple(endpoints))
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise StoreUrlError(
        f"store URL {url!r}: unknown store {scheme!r}; use sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...]"
    )


def _endpoint(url: str, item: str) -> tuple[str, int]:
    """One ``HOST:PORT`` of an etcd URL."""
    host, sep, port = item.rpartition(":")
    if not sep or not host:
        raise StoreUrlError(f"store URL {url!r}: endpoint {item!r} is not HOST:PORT")
    if not HOST_RE.fullmatch(host):
        raise StoreUrlError(f"store URL {url!r}: {host!r} is not a host name or address (IPv6 goes in brackets)")
    if not PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise StoreUrlError(f"store URL {url!r}: port {port!r} of {item!r} is not 1..65535")
    return host.strip("[]"), int(port)


def open_store(url: str, *, fsync: bool = False) -> Store:
    """The store ``url`` names, opened; raises StoreUrlError or StoreError.

    ``fsync`` applies to SQLite (etcd members sync their own log).
    """
    parsed = parse_store_url(url)
    if parsed.kind == "sqlite":
        from ryu_lag.store import BondStore  # here: store.py imports this module

        return BondStore(parsed.path, fsync=fsync)
    from ryu_lag.etcd_store import EtcdStore  # only an etcd run needs etcd3gw

    return EtcdStore(parsed.endpoints)


class TimedStore:
    """A store that counts this process's requests to it, their time and the last failure.

    ``poll_changes`` (which waits) is not counted; everything else goes through as it is.
    """

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.url = store.url
        self.clock = clock
        self.requests = 0
        self.request_seconds = 0.0
        self.error: str | None = None  # the last request's failure; None after a success

    def _timed(self, call: Callable[[], T]) -> T:
        started = self.clock()
        try:
            result = call()
        except StoreError as exc:
            self.error = str(exc)
            raise
        finally:
            self.requests += 1
            self.request_seconds += self.clock() - started
        self.error = None
        return result

    def load(self) -> Snapshot:
        return self._timed(self.store.load)

    def put_bond(self, config: BondConfig, *, expect: int | None = None) -> int:
        return self._timed(lambda: self.store.put_bond(config, expect=expect))

    def delete_bond(self, dpid: int, name: str, *, expect: int | None = None) -> int:
        return self._timed(lambda: self.store.delete_bond(dpid, name, expect=expect))

    def put_sessions(self, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        rows = list(rows)
        self._timed(lambda: self.store.put_sessions(rows))

    def load_sessions(self, dpid: int | None = None) -> dict[SessionKey, dict[str, Any]]:
        return self._timed(lambda: self.store.load_sessions(dpid))

    def poll_changes(self, timeout: float = 0.0) -> list[BondChange]:
        return self.store.poll_changes(timeout)

    def close(self) -> None:
        self.store.close()
