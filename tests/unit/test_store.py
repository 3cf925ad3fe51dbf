"""BondStore's durability setting: a commit survives the process; with fsync, a power loss too."""

from __future__ import annotations

from pathlib import Path

import pytest

from ryu_lag.config import BondConfig
from ryu_lag.store import BondStore

SQLITE_SYNCHRONOUS = {"NORMAL": 1, "FULL": 2}


@pytest.mark.parametrize(("fsync", "mode"), [(False, "NORMAL"), (True, "FULL")])
def test_fsync_chooses_sqlite_synchronous_mode(tmp_path: Path, fsync: bool, mode: str) -> None:
    store = BondStore(str(tmp_path / "state.sqlite3"), fsync=fsync)
    try:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == SQLITE_SYNCHRONOUS[mode]
    finally:
        store.close()


def test_a_change_is_visible_to_another_connection_when_put_returns(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    writer = BondStore(path)
    writer.put(BondConfig.from_dict(1, {"name": "bond0", "ports": [1, 2]}, key=1))
    reader = BondStore(path)
    try:
        assert [c.name for c in reader.load_all()] == ["bond0"]
    finally:
        reader.close()
        writer.close()
