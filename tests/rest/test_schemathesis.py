"""The REST API against its own OpenAPI document, with schemathesis.

The document is the one the API serves (``GET /lag/openapi.json``); requests go to Ryu's
WSGI application over a real LagService and BondStore, switch 1 connected with ports 1-4
and one bond configured, so that generated requests meet existing and missing switches,
bonds and ports. Every operation is fuzzed with valid and invalid data, and a stateful
run chains operations (along ``LINKS``, which this test adds: the document has none, and
schemathesis infers none from it). For every response:
no 5xx, the status, content type, headers and body as the document says, and a refused
request (4xx) leaves the stored and applied state as it was.

CI size: ``SCHEMATHESIS_EXAMPLES`` examples per operation (default 25) and as many
stateful runs; e.g. ``SCHEMATHESIS_EXAMPLES=500 .venv/bin/python -m pytest tests/rest/test_schemathesis.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks as st_checks
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi import checks as oa_checks

from rest import openapi
from tests.rest.conftest import DPID_S, Rig

TOKEN = "schemathesis-token"
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 100,  # the CI-sized run is the same every time
    suppress_health_check=list(HealthCheck),
)
# Conformance to the document, and no server error.
CHECKS: list[Callable[..., Any]] = [
    st_checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_headers_conformance,
    oa_checks.response_schema_conformance,
    oa_checks.negative_data_rejection,
]


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """(path, method, mode) for every operation: valid data for all, invalid data for those
    with something to make invalid (parameters or a body)."""
    cases = []
    for path, item in openapi.document()["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "delete", "patch"}:
                continue
            cases.append((path, method.upper(), GenerationMode.POSITIVE))
            if item.get("parameters") or operation.get("parameters") or operation.get("requestBody"):
                cases.append((path, method.upper(), GenerationMode.NEGATIVE))
    return cases


OPERATIONS = _operations()


def new_fuzzed(directory: Path) -> Rig:
    """Switch 1 connected with ports 1-4, bond0 on ports 1 and 2, the API behind a token."""
    directory.mkdir()
    rig = Rig(directory, token=TOKEN)
    rig.connect()
    assert rig.post(f"/lag/{DPID_S}", {"name": "bond0", "ports": [1, 2]}).status_code == 201
    return rig


@pytest.fixture
def fuzzed(tmp_path: Path) -> Rig:
    return new_fuzzed(tmp_path / "rig")


class BearerToken:
    """The API's token on every generated request (schemathesis's auth provider protocol)."""

    def get(self, case: Any, context: Any) -> str:
        return TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def served_schema(rig: Rig) -> Any:
    """The document the API serves, loaded by schemathesis, its requests going to ``rig``'s app
    with the token."""
    schema = schemathesis.openapi.from_wsgi("/lag/openapi.json", rig.wsgi, headers={"Authorization": f"Bearer {TOKEN}"})
    schema.auth.auth()(BearerToken)
    return schema


def call_and_check(rig: Rig, case: Any) -> Any:
    """Send ``case``; check the response against the document and, if refused, the state."""
    before = rig.snapshot()
    response = case.call()
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        assert rig.snapshot() == before, f"{case.method} {case.formatted_path} refused ({response.status_code}) but changed state"
    return response


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS, ids=[f"{m} {p} {g}" for p, m, g in OPERATIONS])
def test_every_operation_conforms_and_refusals_change_nothing(
    fuzzed: Rig, path: str, method: str, mode: GenerationMode
) -> None:
    operation = served_schema(fuzzed)[path][method]

    @HYPOTHESIS
    @given(case=operation.as_strategy(generation_mode=mode, auth_storage=operation.schema.auth))
    def fuzz(case: Any) -> None:
        call_and_check(fuzzed, case)

    fuzz()


# Links between operations, for the stateful run: the document has none (yet), and
# schemathesis cannot infer them (the path parameter ``bond`` is a bond's ``name``).
_BOND_FROM_BODY = {"dpid": "$response.body#/dpid", "bond": "$response.body#/name"}
LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("/lag", "get", "200"): {
        "GetSwitch": {"operationId": "getSwitch", "parameters": {"dpid": "$response.body#/switches/0/dpid"}},
        "CreateBond": {"operationId": "createBond", "parameters": {"dpid": "$response.body#/switches/0/dpid"}},
    },
    ("/lag/{dpid}", "get", "200"): {
        "GetBond": {"operationId": "getBond",
                    "parameters": {"dpid": "$response.body#/dpid", "bond": "$response.body#/bonds/0/name"}},
        "ListMacs": {"operationId": "listMacs", "parameters": {"dpid": "$response.body#/dpid"}},
    },
    **{
        (path, method, status): {
            "GetBond": {"operationId": "getBond", "parameters": _BOND_FROM_BODY},
            "PutBond": {"operationId": "putBond", "parameters": _BOND_FROM_BODY},
            "DeleteBond": {"operationId": "deleteBond", "parameters": _BOND_FROM_BODY},
        }
        for path, method, status in (
            ("/lag/{dpid}", "post", "201"), ("/lag/{dpid}/{bond}", "put", "200"), ("/lag/{dpid}/{bond}", "put", "201"),
            ("/lag/{dpid}/{bond}", "get", "200"),
        )
    },
}


def linked_schema(rig: Rig, app: Any) -> Any:
    """``rig``'s served document with ``LINKS`` added, its requests going to ``app`` with the token."""
    document = rig.get("/lag/openapi.json").json
    for (path, method, status), links in LINKS.items():
        response = document["paths"][path][method]["responses"][status]
        assert "links" not in response, "the document has links now: drop LINKS here"
        response["links"] = links
    schema = schemathesis.openapi.from_dict(document)
    schema.app = app
    schema.auth.auth()(BearerToken)
    return schema


def test_stateful_sequences_conform_and_refusals_change_nothing(tmp_path: Path) -> None:
    """Each run of the state machine starts from a fresh ``fuzzed`` rig (as hypothesis needs
    to replay a run)."""
    runs = iter(range(1_000_000))
    current: list[Rig] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return current[-1].wsgi(environ, start_response)

    class Checked(linked_schema(new_fuzzed(tmp_path / "document"), app).as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            current.append(new_fuzzed(tmp_path / f"run{next(runs)}"))

        def call(self, case: Any, **kwargs: Any) -> Any:
            return call_and_check(current[-1], case)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            pass  # call_and_check did

    Checked.run(settings=settings(HYPOTHESIS, stateful_step_count=10))
