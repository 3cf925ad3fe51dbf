"""The SQLite store (``sqlite:PATH``): bond configuration in one file (WAL); each change is one transaction.

It keeps the rules of :class:`ryu_lag.stores.Store` within one process: switch revisions
from a store-wide counter (the ``switches`` table holds each switch's), ``expect`` checked
in the write's transaction, and its own writes as the changes ``poll_changes`` delivers.

Opening checks the file: a corrupt or unwritable database raises
:class:`StoreError` with a clear message instead of starting with an empty
configuration. One process owns a state file: opening takes an exclusive lock
on ``PATH.lock`` (holding the owner's pid) for the store's life, so a second
controller on the same file refuses to start instead of sharing switches.

Schema 2 keeps a datapath id as 16 lowercase hex digits, which holds the whole
unsigned 64-bit range (SQLite's INTEGER is signed), and adds ``sessions``: per-bond
LACP session state, a cache beside the configuration. Schema 3 (this version) adds
``switches``: each switch's revision. Older files are migrated when they are opened.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

from ryu_lag.config import BondConfig, ConfigError, format_dpid
from ryu_lag.stores import BondChange, SessionKey, Snapshot, StoreConflict, StoreError, sqlite_url, take_changes

__all__ = ["BondStore", "StoreConflict", "StoreError"]

SCHEMA_VERSION = 3
MAX_DPID = 2**64 - 1
DPID_TEXT_RE = re.compile(r"[0-9a-f]{1,16}")
LOCK_SUFFIX = ".lock"

CREATE_BONDS = (
    "CREATE TABLE bonds (dpid TEXT NOT NULL, name TEXT NOT NULL,"
    " config TEXT NOT NULL, PRIMARY KEY (dpid, name))"
)
CREATE_SESSIONS = (
    "CREATE TABLE sessions (dpid TEXT NOT NULL, name TEXT NOT NULL,"
    " state TEXT NOT NULL, PRIMARY KEY (dpid, name))"
)
CREATE_SWITCHES = "CREATE TABLE switches (dpid TEXT NOT NULL PRIMARY KEY, revision INTEGER NOT NULL)"
UPSERT_BOND = (
    "INSERT INTO bonds (dpid, name, config) VALUES (?, ?, ?)"
    " ON CONFLICT (dpid, name) DO UPDATE SET config = excluded.config"
)
UPSERT_SWITCH = (
    "INSERT INTO switches (dpid, revision) VALUES (?, ?)"
    " ON CONFLICT (dpid) DO UPDATE SET revision = excluded.revision"
)
UPSERT_SESSION = (
    "INSERT INTO sessions (dpid, name, state) VALUES (?, ?, ?)"
    " ON CONFLICT (dpid, name) DO UPDATE SET state = excluded.state"
)


class BondStore:
    """Bond configurations keyed by (dpid, name), their switches' revisions, and their LACP session state.

    A change is committed before its method returns, so it survives the process being
    killed. With ``fsync`` every commit also waits for the disk (``synchronous=FULL``) and
    survives a power loss; without, the write-ahead log is synced at checkpoints only
    (``synchronous=NORMAL``), which keeps a change to microseconds instead of milliseconds.
    Safe to share between threads: one statement or transaction runs at a time.
    """

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.path = path
        self.url = sqlite_url(path)
        self._lock_fd: int | None = None
        # Guards the connection and the pending changes; a writer notifies poll_changes.
        self._cond = threading.Condition()
        self._changes: list[BondChange] = []
        self._feeding = False  # changes are kept for poll_changes from the first load on
        if path != ":memory:":
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the state directory {directory}: {exc}") from exc
            self._lock_fd = _lock(path + LOCK_SUFFIX, path)
        try:
            self._open(fsync)
        except BaseException:
            self._release_lock()
            raise

    def _open(self, fsync: bool) -> None:
        path = self.path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            result = self._db.execute("PRAGMA quick_check").fetchone()
            if result is None or result[0] != "ok":
                raise StoreError(f"state database {path} is corrupt: {result}")
            has_table = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bonds'").fetchone()
            # A schema 1 store set user_version after creating its table: 0 with a table is 1.
            stored_version = self._db.execute("PRAGMA user_version").fetchone()[0]
            self._version = max(stored_version, 1) if has_table else SCHEMA_VERSION
            if self._version > SCHEMA_VERSION:
                raise StoreError(
                    f"state database {path} has schema {self._version}, written by a newer ryu-lag"
                    f" (this one reads up to {SCHEMA_VERSION})"
                )
            if has_table:
                self.load_all()  # every stored row is valid before anything is written
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            if not has_table:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.execute(CREATE_BONDS)
                    self._db.execute(CREATE_SESSIONS)
                    self._db.execute(CREATE_SWITCHES)
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if self._version < 2:
                self._migrate_from_1()
            if self._version < 3:
                self._migrate_from_2()
            # Prove it is writable now, not at the first API call.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"state database {path} cannot be used: {exc}") from exc

    def _migrate_from_1(self) -> None:
        """Schema 1 → 2 in one transaction: dpids become hex text, ``sessions`` is added."""
        rows = self._bond_rows()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ALTER TABLE bonds RENAME TO bonds_v1")
            self._db.execute(CREATE_BONDS)
            self._db.executemany(
                "INSERT INTO bonds (dpid, name, config) VALUES (?, ?, ?)",
                [(format_dpid(dpid), name, text) for dpid, name, text in rows],
            )
            self._db.execute("DROP TABLE bonds_v1")
            self._db.execute(CREATE_SESSIONS)
            self._db.execute("PRAGMA user_version=2")
        self._version = 2

    def _migrate_from_2(self) -> None:
        """Schema 2 → 3: ``switches`` is added; every switch starts at revision 0 (no row)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(CREATE_SWITCHES)
            self._db.execute("PRAGMA user_version=3")
        self._version = 3

    def _bond_rows(self) -> list[tuple[int, str, Any]]:
        """(dpid, name, config column) of every bond, in load order; a bad dpid raises StoreError."""
        rows = self._db.execute("SELECT dpid, name, config FROM bonds ORDER BY rowid").fetchall()
        decoded = []
        for column, name, text in rows:
            dpid = _decode_dpid(column) if self._version >= 2 else column
            if not isinstance(dpid, int) or isinstance(dpid, bool) or not 0 <= dpid <= MAX_DPID:
                raise StoreError(f"state database {self.path}: bond {name!r} has an invalid dpid {column!r}")
            decoded.append((dpid, name, text))
        decoded.sort(key=lambda row: row[0])  # stable: insertion order within a switch
        return decoded

    def load(self) -> Snapshot:
        """Bonds, sessions and switch revisions; changes pending for ``poll_changes`` are dropped."""
        with self._cond:
            bonds = self.load_all()
            sessions = self.load_sessions()
            revisions = {dpid: revision for column, revision in self._read("SELECT dpid, revision FROM switches")
                         if (dpid := _decode_dpid(column)) is not None}
            self._changes.clear()
            self._feeding = True
        return Snapshot(bonds, sessions, revisions, revision=max(revisions.values(), default=0))

    def load_all(self) -> list[BondConfig]:
        """Every stored bond; raises StoreError if a row is not valid configuration."""
        configs = []
        with self._cond:
            rows = self._bond_rows()
        for dpid, name, text in rows:
            try:
                configs.append(BondConfig.from_dict(dpid, json.loads(text)))
            except (ValueError, TypeError, ConfigError) as exc:  # TypeError: a column that is not text
                where = f"state database {self.path}: bond {name!r} of {format_dpid(dpid)}"
                raise StoreError(f"{where} is invalid: {exc}") from exc
        return configs

    def put_bond(self, config: BondConfig, *, expect: int | None = None) -> int:
        """Insert or replace one bond; returns the switch's new revision.

        Raises StoreConflict if the switch changed after revision ``expect``.
        """
        data = config.to_dict()
        del data["dpid"]
        row = (format_dpid(config.dpid), config.name, json.dumps(data, sort_keys=True))
        return self._change(config.dpid, config.name, config, expect, (UPSERT_BOND, row))

    def delete_bond(self, dpid: int, name: str, *, expect: int | None = None) -> int:
        """Remove one bond and its session state; returns the switch's revision.

        Raises StoreConflict if the switch changed after revision ``expect``; a bond that is
        not there changes nothing.
        """
        key = (format_dpid(dpid), name)
        return self._change(dpid, name, None, expect, ("DELETE FROM bonds WHERE dpid = ? AND name = ?", key),
                            ("DELETE FROM sessions WHERE dpid = ? AND name = ?", key))

    def put(self, config: BondConfig) -> None:
        """Insert or replace one bond, whatever the switch's revision."""
        self.put_bond(config)

    def delete(self, dpid: int, name: str) -> None:
        """Remove one bond and its session state, whatever the switch's revision."""
        self.delete_bond(dpid, name)

    def _change(self, dpid: int, name: str, config: BondConfig | None, expect: int | None,
                *statements: tuple[str, tuple[Any, ...]]) -> int:
        """One bond change and the switch's new revision in one transaction; queued for poll_changes."""
        dpid_text = format_dpid(dpid)
        with self._cond:
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    row = self._db.execute("SELECT revision FROM switches WHERE dpid = ?", (dpid_text,)).fetchone()
                    current = row[0] if row else 0
                    if expect is not None and current > expect:
                        raise StoreConflict(dpid, expect, f"switch {dpid_text} changed (revision {current},"
                                            f" the change was based on {expect}); nothing was written")
                    if config is None and not self._db.execute(
                            "SELECT 1 FROM bonds WHERE dpid = ? AND name = ?", (dpid_text, name)).fetchone():
                        return current
                    for sql, args in statements:
                        self._db.execute(sql, args)
                    revision = self._db.execute("SELECT COALESCE(MAX(revision), 0) + 1 FROM switches").fetchone()[0]
                    self._db.execute(UPSERT_SWITCH, (dpid_text, revision))
            except sqlite3.Error as exc:
                raise StoreError(f"state database {self.path}: write failed: {exc}") from exc
            if self._feeding:
                self._changes.append(BondChange(dpid, name, config, revision))
                self._cond.notify_all()
        return revision

    def poll_changes(self, timeout: float = 0.0) -> list[BondChange]:
        """This store's bond changes since the last call or ``load`` (waiting up to ``timeout`` s for one)."""
        return take_changes(self._cond, self._changes, timeout)

    def put_sessions(self, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """Insert or replace the session state of each (dpid, bond name), all in one transaction."""
        args = [(format_dpid(dpid), name, json.dumps(state, sort_keys=True)) for dpid, name, state in rows]
        if args:
            self._write((UPSERT_SESSION, args))

    def load_sessions(self, dpid: int | None = None) -> dict[SessionKey, dict[str, Any]]:
        """Stored session state by (dpid, bond name), of every switch or of ``dpid``'s; a row that
        does not decode is left out.

        Session state is a cache (the configuration is the truth), so a bad row is no error.
        """
        sessions = {}
        query = "SELECT dpid, name, state FROM sessions" + (" WHERE dpid = ?" if dpid is not None else "")
        for column, name, text in self._read(query, () if dpid is None else (format_dpid(dpid),)):
            try:
                state = json.loads(text)
            except (ValueError, TypeError):
                continue
            row_dpid = _decode_dpid(column)
            if row_dpid is not None and isinstance(name, str) and isinstance(state, dict):
                sessions[(row_dpid, name)] = state
        return sessions

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row of one query."""
        try:
            with self._cond:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: read failed: {exc}") from exc

    def _write(self, *statements: tuple[str, list[tuple[Any, ...]]]) -> None:
        """Run each statement once per args tuple, all in one transaction."""
        try:
            with self._cond, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, args in statements:
                    self._db.executemany(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: write failed: {exc}") from exc

    def close(self) -> None:
        """Close the database and release the state file's lock."""
        with self._cond:
            self._db.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the only descriptor releases the flock
            self._lock_fd = None


def _decode_dpid(column: Any) -> int | None:
    """A dpid column of schema 2 (hex text) as an int; None if it is not one."""
    if isinstance(column, str) and DPID_TEXT_RE.fullmatch(column):
        return int(column, 16)
    return None


def _lock(lock_path: str, path: str) -> int:
    """Lock ``lock_path`` exclusively for this process and write our pid in it; returns the fd.

    ``flock`` is separate from the POSIX locks SQLite takes on the database itself, and the
    kernel drops it when the process exits, however it exits.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open the lock file {lock_path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(
            f"state database {path} is in use by another ryu-lag (pid {holder}, lock file {lock_path});"
            " one process per state file"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"cannot lock {lock_path}: {exc}") from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"cannot write our pid to the lock file {lock_path}: {exc}") from exc
    return fd
