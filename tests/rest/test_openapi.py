"""The OpenAPI document matches the implementation.

Beyond these checks, ``Rig.request`` validates every response of every REST test against
the document (status documented for the route and method, body fits the schema).
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
from webob import Response

from rest import openapi
from rest.api import routes
from ryu_lag.config import BondConfig
from tests.rest.conftest import DOC, Rig
from tests.rest.schema import check_response, validate

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_served_document(rig: Rig):
    r = rig.get("/lag/openapi.json")
    assert r.status_code == 200 and r.json == openapi.document()
    assert r.json["openapi"].startswith("3.")


def test_every_route_is_documented_and_nothing_else():
    implemented = {(path, m.lower()) for path, (methods, _) in routes().items() for m in methods if m != "HEAD"}
    documented = {(path, m) for path, item in DOC["paths"].items() for m in item if m in HTTP_METHODS}
    assert implemented == documented


def test_path_parameters_are_declared():
    for path, item in DOC["paths"].items():
        declared = set()
        for param in item.get("parameters", []):
            param = DOC["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]] if "$ref" in param else param
            if param["in"] == "path":
                declared.add(param["name"])
        assert declared == set(re.findall(r"{(\w+)}", path)), path


def test_path_parameter_patterns_match_the_routes():
    assert DOC["components"]["parameters"]["dpid"]["schema"]["pattern"] == "^" + routes()["/lag/{dpid}"][1]["dpid"] + "$"


def test_references_resolve_and_operation_ids_are_unique():
    for ref in set(refs(DOC)):
        node: Any = DOC
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
    ids = [op["operationId"] for item in DOC["paths"].values() for m, op in item.items() if m in HTTP_METHODS]
    assert len(ids) == len(set(ids))


def test_request_body_fields_are_the_config_fields():
    assert set(DOC["components"]["schemas"]["BondInput"]["properties"]) == set(BondConfig.FIELDS)


def test_document_is_a_copy():
    openapi.document()["paths"].clear()
    assert openapi.document()["paths"]


def test_the_checker_bites(rig: Rig):
    """The per-response check rejects an undocumented status and an off-schema body."""
    route = next(r for r in rig.wsgi.mapper.matchlist if r.routepath == "/lag" and r.defaults.get("action") == "list_switches")
    with pytest.raises(AssertionError, match="not documented"):
        check_response(DOC, route, "GET", Response(status=418))
    bad = Response(status=200, content_type="application/json", body=b'{"switches": [{"dpid": "1"}]}')
    with pytest.raises(AssertionError):
        check_response(DOC, route, "GET", bad)
    with pytest.raises(AssertionError, match="undocumented"):
        validate(DOC, {"$ref": "#/components/schemas/SwitchList"}, {"switches": [], "extra": 1})
