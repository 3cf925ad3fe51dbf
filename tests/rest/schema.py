"""Check responses against the OpenAPI document: the subset of JSON Schema it uses."""

from __future__ import annotations

import re
from typing import Any

from routes.route import Route


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` (local references only)."""
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> None:
    """Raise AssertionError where ``value`` does not fit ``schema``."""
    schema = resolve(doc, schema)
    if value is None:
        assert schema.get("nullable"), f"{where}: null is not allowed"
        return
    for part in schema.get("allOf", []):
        validate(doc, part, value, where)
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        missing = set(schema.get("required", [])) - set(value)
        assert not missing, f"{where}: missing {sorted(missing)}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(props)
            assert not extra, f"{where}: undocumented {sorted(extra)}"
        for name, sub in props.items():
            if name in value:
                validate(doc, sub, value[name], f"{where}.{name}")
    elif kind == "array":
        assert isinstance(value, list), f"{where}: {value!r} is not an array"
        assert len(value) >= schema.get("minItems", 0), f"{where}: too few items"
        assert len(value) <= schema.get("maxItems", len(value)), f"{where}: too many items"
        if schema.get("uniqueItems"):
            assert len(set(map(repr, value))) == len(value), f"{where}: items not unique"
        for i, item in enumerate(value):
            validate(doc, schema.get("items", {}), item, f"{where}[{i}]")
    elif kind == "string":
        assert isinstance(value, str), f"{where}: {value!r} is not a string"
        if "pattern" in schema:
            assert re.search(schema["pattern"], value), f"{where}: {value!r} does not match {schema['pattern']}"
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is not an integer"
    elif kind == "number":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is not a number"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{where}: {value!r} is not a boolean"
    if kind in ("integer", "number"):
        assert value >= schema.get("minimum", value), f"{where}: {value} below minimum"
        assert value <= schema.get("maximum", value), f"{where}: {value} above maximum"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "not" in schema:
        assert value not in schema["not"].get("enum", []), f"{where}: {value!r} is excluded"


def check_response(doc: dict[str, Any], route: Route | None, method: str, response: Any) -> None:
    """Assert that ``response`` (webob) is what the document says ``route`` answers to ``method``."""
    if route is None:
        return  # outside the API: Ryu's own 404
    action = route.defaults.get("action")
    body = response.json if response.body and response.content_type == "application/json" else None
    error_schema = {"$ref": "#/components/schemas/Error"}
    if action in ("method_not_allowed", "not_found") and response.status_code == 401:
        validate(doc, error_schema, body)  # the token is checked first
        return
    if action == "method_not_allowed":
        assert "Allow" in response.headers
        if method == "OPTIONS":
            assert response.status_code == 204
        else:
            assert response.status_code == 405
            validate(doc, error_schema, body)
        return
    if action == "not_found":
        assert response.status_code in (400, 404)
        validate(doc, error_schema, body)
        return
    operation = doc["paths"][route.routepath]["get" if method == "HEAD" else method.lower()]
    spec = operation["responses"].get(str(response.status_code))
    assert spec is not None, f"{method} {route.routepath}: {response.status_code} is not documented"
    spec = resolve(doc, spec)
    for header in spec.get("headers", {}):
        assert header in response.headers, f"{method} {route.routepath}: header {header} missing"
    content = spec.get("content")
    if method == "HEAD":
        assert not response.body
        return
    if not content:
        assert not response.body, f"{method} {route.routepath}: undocumented body"
        return
    if "application/json" in content:
        assert response.content_type == "application/json", response.content_type
        validate(doc, content["application/json"]["schema"], response.json)
    else:
        assert response.content_type == "text/plain"
