"""Bond configuration persisted in SQLite (WAL); each change is one transaction.

Opening checks the file: a corrupt or unwritable database raises
:class:`StoreError` with a clear message instead of starting with an empty
configuration.
"""

from __future__ import annotations

import json
import os
import sqlite3

from ryu_lag.config import BondConfig, ConfigError

SCHEMA_VERSION = 1


class StoreError(RuntimeError):
    """The state database cannot be used."""


class BondStore:
    """Bond configurations keyed by (dpid, name).

    A change is committed before its method returns, so it survives the process being
    killed. With ``fsync`` every commit also waits for the disk (``synchronous=FULL``) and
    survives a power loss; without, the write-ahead log is synced at checkpoints only
    (``synchronous=NORMAL``), which keeps a change to microseconds instead of milliseconds.
    """

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.path = path
        if path != ":memory:":
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the state directory {directory}: {exc}") from exc
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            result = self._db.execute("PRAGMA quick_check").fetchone()
            if result is None or result[0] != "ok":
                raise StoreError(f"state database {path} is corrupt: {result}")
            has_table = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bonds'").fetchone()
            if has_table:
                self.load_all()  # every stored row is valid before anything is written
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            if not has_table:
                self._db.execute(
                    "CREATE TABLE bonds (dpid INTEGER NOT NULL, name TEXT NOT NULL,"
                    " config TEXT NOT NULL, PRIMARY KEY (dpid, name))"
                )
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # Prove it is writable now, not at the first API call.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"state database {path} cannot be used: {exc}") from exc

    def load_all(self) -> list[BondConfig]:
        """Every stored bond; raises StoreError if a row is not valid configuration."""
        rows = self._db.execute("SELECT dpid, name, config FROM bonds ORDER BY dpid, rowid").fetchall()
        configs = []
        for dpid, name, text in rows:
            try:
                configs.append(BondConfig.from_dict(dpid, json.loads(text)))
            except (ValueError, TypeError, ConfigError) as exc:  # TypeError: a column that is not text
                raise StoreError(f"state database {self.path}: bond {name!r} of {dpid:016x} is invalid: {exc}") from exc
        return configs

    def put(self, config: BondConfig) -> None:
        """Insert or replace one bond."""
        data = config.to_dict()
        del data["dpid"]
        self._write(
            "INSERT INTO bonds (dpid, name, config) VALUES (?, ?, ?)"
            " ON CONFLICT (dpid, name) DO UPDATE SET config = excluded.config",
            (config.dpid, config.name, json.dumps(data, sort_keys=True)),
        )

    def delete(self, dpid: int, name: str) -> None:
        self._write("DELETE FROM bonds WHERE dpid = ? AND name = ?", (dpid, name))

    def _write(self, sql: str, args: tuple) -> None:
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: write failed: {exc}") from exc

    def close(self) -> None:
        self._db.close()
