"""Desired state for ``lagctl apply``: read and validate the file, then plan the changes.

The file names switches and their bonds::

    switches:
      "0000000000000001":          # dpids are hex, as everywhere in lagctl ("1" is the same switch)
        bonds:
          bond0: {ports: [1, 2], rate: fast}

Each bond's mapping is the body of ``PUT /lag/{dpid}/{bond}``; a field it omits means the
API's default, except ``key``, which stays the bond's current key. :func:`plan` is pure:
the desired state and the switches' current bond configs (``config`` of each bond in
``GET /lag/{dpid}``) in, the smallest list of :class:`Change` out, in an order the API
accepts (see :func:`plan`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clients.client import format_dpid
from ryu_lag.config import BondConfig, ConfigError

CREATE = "create"
REPLACE = "replace"
DELETE = "delete"

TOP_LEVEL_KEYS = frozenset({"switches"})
SWITCH_KEYS = frozenset({"bonds"})
_STR_TAG = "tag:yaml.org,2002:str"
_ANY_KEY = 1  # stands in for a key the file omits where only the other fields matter

DesiredState = dict[str, dict[str, dict[str, Any]]]
"""dpid (16 hex digits) -> bond name -> the file's mapping for that bond (a PUT body)."""

CurrentState = dict[str, dict[str, dict[str, Any]]]
"""dpid -> bond name -> the bond's ``config`` as ``GET /lag/{dpid}`` returns it."""

Resource = tuple[str, int]
"""What two bonds of one switch cannot share: ``("port", n)`` or ``("key", n)``."""


class InvalidDesiredState(ValueError):
    """The desired-state file is unreadable as such; the message says where and why."""


@dataclass(frozen=True)
class Change:
    """One call of an apply: ``action`` on bond ``bond`` of switch ``dpid``.

    ``fields`` maps each field that changes to ``(current, desired)``: every field of a
    create (current None) and of a delete (desired None), the differing ones of a replace.
    ``body`` is the PUT body of a create or replace, None for a delete.
    """

    action: str
    dpid: str
    bond: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    body: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``fields`` as ``{name: {"current": ..., "desired": ...}}``."""
        fields = {name: {"current": old, "desired": new} for name, (old, new) in self.fields.items()}
        return {"action": self.action, "dpid": self.dpid, "bond": self.bond, "fields": fields}

    def describe(self) -> str:
        """One line for people: what happens to which bond."""
        if self.action == DELETE:
            detail = f"ports {self.fields['ports'][0]}"
        elif self.action == CREATE:
            detail = ", ".join(f"{name} {self.fields[name][1]}" for name in self.fields if name in (self.body or {}))
        else:
            detail = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in self.fields.items())
        return f"{self.action} {self.dpid} {self.bond}: {detail}"


# ---- reading and validating ------------------------------------------------------------
def read_file(path: str) -> Any:
    """The content of a JSON (``*.json``) or YAML file; ``-`` reads standard input as YAML.

    Switch and bond keys keep the text they are written with, so an unquoted ``10`` is
    switch 0x10 (not ten), ``0000000000000010`` is not read as an octal number and a bond
    named ``no`` is not ``False``.
    Raises :class:`InvalidDesiredState` when it cannot be read or does not parse.
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDesiredState(f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise InvalidDesiredState(f"not JSON: {exc}") from None
    try:
        return _load_yaml(text)
    except yaml.YAMLError as exc:
        raise InvalidDesiredState(f"not YAML: {exc}") from None


def _load_yaml(text: str) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_unique_keys(node)
        switches = _mapping_value(node, "switches")
        for switch in _keys_as_text(switches):
            _keys_as_text(_mapping_value(switch, "bonds"))
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _mapping_value(node: yaml.Node, key: str) -> yaml.MappingNode | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return value_node if isinstance(value_node, yaml.MappingNode) else None
    return None


def _keys_as_text(node: yaml.MappingNode | None) -> list[yaml.Node]:
    """Read the keys of ``node`` as the text they are written with; returns its values."""
    if node is None:
        return []
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key_node.tag = _STR_TAG
    return [value_node for _, value_node in node.value]


def _check_unique_keys(node: yaml.Node) -> None:
    """YAML keeps the last of two equal keys silently; a desired state must not."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    line = key_node.start_mark.line + 1
                    raise InvalidDesiredState(f"line {line}: {key_node.value!r} is listed twice")
                seen.add(key_node.value)
            _check_unique_keys(value_node)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_unique_keys(item)


def parse_desired(data: Any) -> DesiredState:
    """Validate a file's content with the API's own rules; raise :class:`InvalidDesiredState`.

    Checks the shape (only ``switches``, each with only ``bonds``, each bond a mapping),
    the dpids (text is hex, as in lagctl; a Python int is the number), every bond as
    ``PUT`` would, and that no port or explicit key is given to two bonds of one switch.
    """
    if not isinstance(data, dict):
        raise InvalidDesiredState("the file must be a mapping with 'switches'")
    _only(data, TOP_LEVEL_KEYS, "top level")
    switches = data.get("switches")
    if not isinstance(switches, dict):
        raise InvalidDesiredState("switches: a mapping of dpid to {bonds: ...} is required")
    desired: DesiredState = {}
    for raw_dpid, switch in switches.items():
        try:
            dpid = format_dpid(raw_dpid if _is_int(raw_dpid) else str(raw_dpid))
        except ValueError as exc:
            raise InvalidDesiredState(f"switches: {exc}") from None
        where = f"switches.{raw_dpid}"
        if dpid in desired:
            raise InvalidDesiredState(f"{where}: switch {dpid} is listed twice")
        if not isinstance(switch, dict):
            raise InvalidDesiredState(f"{where}: a mapping with 'bonds' is required")
        _only(switch, SWITCH_KEYS, where)
        bonds = switch.get("bonds")
        if not isinstance(bonds, dict):
            raise InvalidDesiredState(f"{where}.bonds: a mapping of bond name to bond is required ({{}} for none)")
        desired[dpid] = {str(name): _bond_body(dpid, str(name), body, f"{where}.bonds.{name}")
                         for name, body in bonds.items()}
        _check_unshared(desired[dpid], f"{where}.bonds")
    return desired


def _is_int(value: Any) -> bool:
    """A Python caller's numeric dpid (a file's dpids are text: hex)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _only(mapping: dict[Any, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(map(str, set(mapping) - allowed))
    if unknown:
        raise InvalidDesiredState(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _bond_body(dpid: str, name: str, body: Any, where: str) -> dict[str, Any]:
    """The bond's PUT body, validated as the API would (its name is its key in the file)."""
    if not isinstance(body, dict):
        raise InvalidDesiredState(f"{where}: a mapping of bond fields is required, e.g. {{ports: [1, 2]}}")
    if "name" in body and body["name"] != name:
        raise InvalidDesiredState(f"{where}: name {body['name']!r} differs from the bond's key {name!r}")
    body = {k: v for k, v in body.items() if k != "name"}
    try:
        BondConfig.from_dict(int(dpid, 16), body, name=name, key=_ANY_KEY)
    except ConfigError as exc:
        raise InvalidDesiredState(f"{where}: {exc}") from None
    return body


def _check_unshared(bonds: dict[str, dict[str, Any]], where: str) -> None:
    owner: dict[Resource, str] = {}
    for name, body in bonds.items():
        for resource in _explicit_resources(body):
            if resource in owner:
                kind, number = resource
                raise InvalidDesiredState(f"{where}: {kind} {number} is in both {owner[resource]!r} and {name!r}")
            owner[resource] = name


def _explicit_resources(body: dict[str, Any]) -> Iterator[Resource]:
    yield from (("port", port) for port in body["ports"])
    if "key" in body:
        yield ("key", body["key"])


# ---- planning ----------------------------------------------------------------------------
def plan(desired: DesiredState, current: CurrentState, *, prune: bool = False) -> list[Change]:
    """The changes that turn ``current`` into ``desired``, in an order the API accepts.

    A bond is replaced only when a field of its config differs from what the file means
    (omitted fields: the API's defaults; omitted ``key``: its current key); with
    ``prune``, bonds of the named switches that the file does not name are deleted.
    Within a switch, a change that takes a port (or key) another bond holds comes after
    the delete or replace that frees it; otherwise deletes come first, then replaces,
    then creates with a key, then creates without one (the API picks their key, so it
    must not pick one the file gives). Bonds swapping ports with each other cannot be
    ordered: one of them is deleted first and created again after (keeping its key).
    """
    changes: list[Change] = []
    for dpid, bonds in desired.items():
        changes += _plan_switch(dpid, bonds, current.get(dpid, {}), prune)
    return changes


# Among the steps that wait for nothing, the lowest rank goes first.
_RANK_DELETE = 0
_RANK_REPLACE = 1
_RANK_CREATE_WITH_KEY = 2
_RANK_CREATE_ANY_KEY = 3  # after every other step, even one still waiting: the API picks the key


@dataclass
class _Step:
    change: Change
    rank: int
    takes: set[Resource]
    frees: set[Resource]


def _plan_switch(dpid: str, bonds: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]],
                 prune: bool) -> list[Change]:
    steps: list[_Step] = []
    if prune:
        for name in sorted(set(current) - set(bonds)):
            steps.append(_delete(dpid, name, current[name]))
    for name, body in bonds.items():
        step = _put(dpid, name, body, current.get(name))
        if step is not None:
            steps.append(step)
    return [step.change for step in _order(steps, current)]


def _normalized(dpid: str, name: str, body: dict[str, Any], key: int) -> dict[str, Any]:
    """The bond's config as the API would store it from ``body`` (``key`` when it gives none)."""
    config = BondConfig.from_dict(int(dpid, 16), body, name=name, key=key).to_dict()
    del config["dpid"], config["name"]
    return config


def _held(config: dict[str, Any]) -> set[Resource]:
    return {("port", port) for port in config["ports"]} | {("key", config["key"])}


def _delete(dpid: str, name: str, config: dict[str, Any]) -> _Step:
    fields = {k: (v, None) for k, v in config.items() if k != "name"}
    return _Step(Change(DELETE, dpid, name, fields), _RANK_DELETE, set(), _held(config))


def _put(dpid: str, name: str, body: dict[str, Any], config: dict[str, Any] | None) -> _Step | None:
    if config is None:
        new = _normalized(dpid, name, body, _ANY_KEY)
        if "key" not in body:
            del new["key"]  # the API picks it
        fields = {k: (None, v) for k, v in new.items()}
        rank = _RANK_CREATE_WITH_KEY if "key" in body else _RANK_CREATE_ANY_KEY
        return _Step(Change(CREATE, dpid, name, fields, body), rank, set(_explicit_resources(body)), set())
    new = _normalized(dpid, name, body, config["key"])
    fields = {k: (config.get(k), v) for k, v in new.items() if config.get(k) != v}
    if not fields:
        return None
    frees = _held(config) - _held(new)
    return _Step(Change(REPLACE, dpid, name, fields, body), _RANK_REPLACE, set(_explicit_resources(body)), frees)


def _order(steps: list[_Step], current: dict[str, dict[str, Any]]) -> list[_Step]:
    """Steps in dependency order: a step waits for the steps that free what it takes."""
    holder = {resource: name for name, config in current.items() for resource in _held(config)}
    remaining = list(steps)
    done: list[_Step] = []

    def blocker(step: _Step) -> _Step | None:
        """A remaining step that frees something ``step`` takes from another bond."""
        for resource in sorted(step.takes):  # sorted: the same plan in every process
            owner = holder.get(resource)
            if owner is None or owner == step.change.bond:
                continue
            for other in remaining:
                if other.change.bond == owner and resource in other.frees:
                    return other
        return None

    while remaining:
        keyed_left = any(step.rank < _RANK_CREATE_ANY_KEY for step in remaining)
        ready = [step for step in remaining
                 if blocker(step) is None and not (keyed_left and step.rank == _RANK_CREATE_ANY_KEY)]
        if ready:
            step = min(ready, key=lambda s: (s.rank, remaining.index(s)))
            remaining.remove(step)
            done.append(step)
            continue
        # Every keyed step left waits; following what each waits for leads into a cycle,
        # which only replaces can form (they both take and free): split one of its replaces.
        seen: list[_Step] = []
        step = next(step for step in remaining if step.rank < _RANK_CREATE_ANY_KEY)
        while step not in seen:
            seen.append(step)
            step = blocker(step) or step
        index = remaining.index(step)
        remaining[index:index + 1] = _split(step, current[step.change.bond])
    return done


def _split(step: _Step, config: dict[str, Any]) -> list[_Step]:
    """A replace as a delete now and a create later that keeps the bond's key."""
    change = step.change
    body = dict(change.body or {})
    body.setdefault("key", config["key"])
    delete = _delete(change.dpid, change.bond, config)
    new = _normalized(change.dpid, change.bond, body, body["key"])
    create = Change(CREATE, change.dpid, change.bond, {k: (None, v) for k, v in new.items()}, body)
    return [delete, _Step(create, _RANK_CREATE_WITH_KEY, set(_explicit_resources(body)), set())]
