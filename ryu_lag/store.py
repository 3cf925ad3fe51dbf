"""Bond configuration persisted in SQLite (WAL); each change is one transaction.

Opening checks the file: a corrupt or unwritable database raises
:class:`StoreError` with a clear message instead of starting with an empty
configuration. One process owns a state file: opening takes an exclusive lock
on ``PATH.lock`` (holding the owner's pid) for the store's life, so a second
controller on the same file refuses to start instead of sharing switches.

Schema 2 (this version) keeps a datapath id as 16 lowercase hex digits, which
holds the whole unsigned 64-bit range (SQLite's INTEGER is signed), and adds
``sessions``: per-bond LACP session state, a cache beside the configuration.
A schema 1 file (INTEGER dpids, no sessions) is migrated when it is opened.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
from collections.abc import Iterable
from typing import Any

from ryu_lag.config import BondConfig, ConfigError, format_dpid

SCHEMA_VERSION = 2
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
UPSERT_SESSION = (
    "INSERT INTO sessions (dpid, name, state) VALUES (?, ?, ?)"
    " ON CONFLICT (dpid, name) DO UPDATE SET state = excluded.state"
)


class StoreError(RuntimeError):
    """The state database cannot be used."""


class BondStore:
    """Bond configurations keyed by (dpid, name), and their LACP session state.

    A change is committed before its method returns, so it survives the process being
    killed. With ``fsync`` every commit also waits for the disk (``synchronous=FULL``) and
    survives a power loss; without, the write-ahead log is synced at checkpoints only
    (``synchronous=NORMAL``), which keeps a change to microseconds instead of milliseconds.
    """

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.path = path
        self._lock_fd: int | None = None
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
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif self._version < SCHEMA_VERSION:
                self._migrate_from_1()
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
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._version = SCHEMA_VERSION

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

    def load_all(self) -> list[BondConfig]:
        """Every stored bond; raises StoreError if a row is not valid configuration."""
        configs = []
        for dpid, name, text in self._bond_rows():
            try:
                configs.append(BondConfig.from_dict(dpid, json.loads(text)))
            except (ValueError, TypeError, ConfigError) as exc:  # TypeError: a column that is not text
                where = f"state database {self.path}: bond {name!r} of {format_dpid(dpid)}"
                raise StoreError(f"{where} is invalid: {exc}") from exc
        return configs

    def put(self, config: BondConfig) -> None:
        """Insert or replace one bond."""
        data = config.to_dict()
        del data["dpid"]
        self._write((
            "INSERT INTO bonds (dpid, name, config) VALUES (?, ?, ?)"
            " ON CONFLICT (dpid, name) DO UPDATE SET config = excluded.config",
            [(format_dpid(config.dpid), config.name, json.dumps(data, sort_keys=True))],
        ))

    def delete(self, dpid: int, name: str) -> None:
        """Remove one bond and its session state."""
        key = (format_dpid(dpid), name)
        self._write(("DELETE FROM bonds WHERE dpid = ? AND name = ?", [key]),
                    ("DELETE FROM sessions WHERE dpid = ? AND name = ?", [key]))

    def put_sessions(self, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """Insert or replace the session state of each (dpid, bond name), all in one transaction."""
        args = [(format_dpid(dpid), name, json.dumps(state, sort_keys=True)) for dpid, name, state in rows]
        if args:
            self._write((UPSERT_SESSION, args))

    def load_sessions(self) -> dict[tuple[int, str], dict[str, Any]]:
        """Stored session state by (dpid, bond name); a row that does not decode is left out.

        Session state is a cache (the configuration is the truth), so a bad row is no error.
        """
        try:
            rows = self._db.execute("SELECT dpid, name, state FROM sessions").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: read failed: {exc}") from exc
        sessions = {}
        for column, name, text in rows:
            try:
                state = json.loads(text)
            except (ValueError, TypeError):
                continue
            dpid = _decode_dpid(column)
            if dpid is not None and isinstance(name, str) and isinstance(state, dict):
                sessions[(dpid, name)] = state
        return sessions

    def _write(self, *statements: tuple[str, list[tuple[Any, ...]]]) -> None:
        """Run each statement once per args tuple, all in one transaction."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, args in statements:
                    self._db.executemany(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: write failed: {exc}") from exc

    def close(self) -> None:
        """Close the database and release the state file's lock."""
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
