"""Schemathesis against a real ``ryu-lag``: the document it serves, requests through its HTTP server.

The in-process run (tests/rest/test_schemathesis.py) reaches the WSGI application
directly; this one sends the generated requests over loopback through rest/server.py
(header parsing, body reading, limits), with the same checks: no 5xx, responses as
documented, and a refused request leaves the state file's bonds as they were. No switch
is connected; one bond is configured. ``SCHEMATHESIS_EXAMPLES`` sets the examples per
operation here too.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given
from schemathesis.generation.modes import GenerationMode

from tests.rest import live
from tests.rest.test_schemathesis import CHECKS, HYPOTHESIS, OPERATIONS, TOKEN, BearerToken


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[live.Controller]:
    directory = tmp_path_factory.mktemp("served")
    controller = live.start(directory / "state.sqlite3", directory / "ryu-lag.log", token=TOKEN)
    try:
        controller.client().create_bond(1, [1, 2])
        yield controller
    finally:
        controller.stop()
    assert "Traceback" not in controller.log_text(), controller.log_text()


def stored_bonds(db: Path) -> list[tuple[Any, ...]]:
    """The bonds in the state file, as another connection reads them."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT dpid, name, config FROM bonds ORDER BY dpid, name").fetchall()


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS, ids=[f"{m} {p} {g}" for p, m, g in OPERATIONS])
def test_every_operation_over_http_conforms_and_refusals_change_nothing(
    controller: live.Controller, path: str, method: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(
        f"{controller.url}/lag/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    schema.auth.auth()(BearerToken)
    operation = schema[path][method]

    @HYPOTHESIS
    @given(case=operation.as_strategy(generation_mode=mode, auth_storage=schema.auth))
    def fuzz(case: Any) -> None:
        before = stored_bonds(controller.db)
        response = case.call(base_url=controller.url, timeout=10)
        case.validate_response(response, checks=CHECKS)
        if 400 <= response.status_code < 500:
            assert stored_bonds(controller.db) == before, f"{case.method} {case.formatted_path} changed the state file"

    fuzz()
