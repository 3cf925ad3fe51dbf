"""The ``lagctl apply`` planner: desired state + current configs -> changes, without HTTP."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from clients.apply import (
    CREATE,
    DELETE,
    REPLACE,
    Change,
    CurrentState,
    InvalidDesiredState,
    parse_desired,
    plan,
    read_file,
)

S1 = "0000000000000001"
S2 = "0000000000000002"


def config(ports: list[int], key: int, **fields: Any) -> dict[str, Any]:
    """A bond's ``config`` as GET returns it: every field, the API's defaults where not given."""
    return {
        "ports": ports, "key": key, "mode": "active", "rate": "slow", "system_priority": 32768,
        "port_priority": 32768, "min_links": 1, "system": None, **fields,
    }


def current_of(bonds: dict[str, dict[str, Any]], dpid: str = S1) -> CurrentState:
    return {dpid: {name: {"name": name, **cfg} for name, cfg in bonds.items()}}


def desired(bonds: dict[str, Any], dpid: Any = S1) -> dict[str, Any]:
    return {"switches": {dpid: {"bonds": bonds}}}


def planned(file: dict[str, Any], current: CurrentState, *, prune: bool = False) -> list[Change]:
    return plan(parse_desired(file), current, prune=prune)


def steps(changes: list[Change]) -> list[tuple[str, str]]:
    return [(c.action, c.bond) for c in changes]


# ---- what changes -----------------------------------------------------------------------------
def test_create_on_an_unknown_switch():
    changes = planned(desired({"bond0": {"ports": [2, 1], "rate": "fast"}}), {})
    assert steps(changes) == [(CREATE, "bond0")]
    change = changes[0]
    assert change.dpid == S1 and change.body == {"ports": [2, 1], "rate": "fast"}
    assert change.fields["ports"] == (None, [1, 2]) and change.fields["rate"] == (None, "fast")
    assert "key" not in change.fields  # the API picks it
    assert change.describe() == f"create {S1} bond0: ports [1, 2], rate fast"


def test_replace_only_the_bond_that_differs():
    current = current_of({"bond0": config([1, 2], 1, rate="fast"), "uplink": config([3, 4], 2)})
    file = desired({"bond0": {"ports": [1, 2], "rate": "fast"}, "uplink": {"ports": [3, 4], "min_links": 2}})
    changes = planned(file, current)
    assert steps(changes) == [(REPLACE, "uplink")]
    assert changes[0].fields == {"min_links": (1, 2)}
    assert changes[0].body == {"ports": [3, 4], "min_links": 2}  # no key: the API keeps the current one
    assert changes[0].describe() == f"replace {S1} uplink: min_links 1 -> 2"


def test_same_state_is_no_change():
    current = current_of({"bond0": config([1, 2], 7, rate="fast", system="02:00:00:00:00:01")})
    file = desired({"bond0": {"ports": [2, 1], "rate": "fast", "system": "02:00:00:00:00:01"}})
    assert planned(file, current) == []
    same_with_defaults = {"ports": [1, 2], "key": 7, "mode": "active", "rate": "fast", "min_links": 1,
                          "system": "02:00:00:00:00:01"}
    assert planned(desired({"bond0": same_with_defaults}), current) == []


def test_omitted_field_means_the_api_default():
    current = current_of({"bond0": config([1, 2], 1, rate="fast", system="02:00:00:00:00:01")})
    changes = planned(desired({"bond0": {"ports": [1, 2]}}), current)
    assert steps(changes) == [(REPLACE, "bond0")]
    assert changes[0].fields == {"rate": ("fast", "slow"), "system": ("02:00:00:00:00:01", None)}


def test_key_given_and_different_is_a_change():
    current = current_of({"bond0": config([1, 2], 1)})
    changes = planned(desired({"bond0": {"ports": [1, 2], "key": 9}}), current)
    assert steps(changes) == [(REPLACE, "bond0")] and changes[0].fields == {"key": (1, 9)}


def test_unnamed_bonds_stay_unless_pruned():
    current = current_of({"bond0": config([1, 2], 1), "old": config([7, 8], 2)})
    current.update(current_of({"other": config([1], 1)}, S2))
    file = desired({"bond0": {"ports": [1, 2]}})
    assert planned(file, current) == []
    changes = planned(file, current, prune=True)
    assert steps(changes) == [(DELETE, "old")]  # switch 2 is not in the file: untouched
    assert changes[0].fields["ports"] == ([7, 8], None) and changes[0].body is None
    assert changes[0].describe() == f"delete {S1} old: ports [7, 8]"


def test_prune_with_no_bonds_deletes_every_bond_of_the_switch():
    current = current_of({"a": config([1], 1), "b": config([2], 2)})
    assert steps(planned(desired({}), current, prune=True)) == [(DELETE, "a"), (DELETE, "b")]


def test_several_switches_in_file_order():
    file = {"switches": {"2": {"bonds": {"b": {"ports": [1]}}}, "1": {"bonds": {"a": {"ports": [1]}}}}}
    assert [(c.dpid, c.bond) for c in planned(file, {})] == [(S2, "b"), (S1, "a")]


# ---- order ------------------------------------------------------------------------------------
def test_port_moving_between_bonds_is_freed_first():
    current = current_of({"a": config([1, 2, 3], 1), "b": config([4], 2)})
    file = desired({"b": {"ports": [3, 4]}, "a": {"ports": [1, 2]}})  # b first in the file
    assert steps(planned(file, current)) == [(REPLACE, "a"), (REPLACE, "b")]


def test_pruned_bond_is_deleted_before_its_ports_are_reused():
    current = current_of({"old": config([1, 2], 1)})
    changes = planned(desired({"new": {"ports": [1, 2]}}), current, prune=True)
    assert steps(changes) == [(DELETE, "old"), (CREATE, "new")]


def test_chain_of_moves_is_ordered():
    current = current_of({"a": config([1], 1), "b": config([2], 2), "c": config([3], 3)})
    file = desired({"a": {"ports": [2]}, "b": {"ports": [3]}, "c": {"ports": [4]}})
    assert steps(planned(file, current)) == [(REPLACE, "c"), (REPLACE, "b"), (REPLACE, "a")]


def test_key_moving_between_bonds_is_freed_first():
    current = current_of({"a": config([1], 1), "b": config([2], 2)})
    file = desired({"b": {"ports": [2], "key": 1}, "a": {"ports": [1], "key": 3}})
    assert steps(planned(file, current)) == [(REPLACE, "a"), (REPLACE, "b")]


def test_creates_without_a_key_come_last():
    """The API gives a new bond the smallest unused key: not one the file gives another bond."""
    current = current_of({"a": config([1], 1)})
    file = desired({"new": {"ports": [5]}, "fixed": {"ports": [6], "key": 2}, "a": {"ports": [1], "key": 3}})
    assert steps(planned(file, current)) == [(REPLACE, "a"), (CREATE, "fixed"), (CREATE, "new")]


def test_swap_is_split_into_delete_and_create_keeping_the_key():
    current = current_of({"a": config([1, 2], 1), "b": config([3, 4], 2)})
    file = desired({"a": {"ports": [3, 4]}, "b": {"ports": [1, 2]}})
    changes = planned(file, current)
    assert steps(changes) == [(DELETE, "a"), (REPLACE, "b"), (CREATE, "a")]
    assert changes[2].body == {"ports": [3, 4], "key": 1}
    assert changes[1].fields == {"ports": ([3, 4], [1, 2])}


def test_only_a_bond_of_the_swap_is_split():
    """``c`` waits for the swapping ``a`` and ``b``: it is replaced, not deleted and created."""
    current = current_of({"a": config([1, 2], 1), "b": config([3, 4], 2), "c": config([5], 3)})
    file = desired({"c": {"ports": [5, 4]}, "a": {"ports": [3]}, "b": {"ports": [1, 2]}})
    changes = planned(file, current)
    assert steps(changes) == [(DELETE, "b"), (REPLACE, "c"), (REPLACE, "a"), (CREATE, "b")]


class Controller:
    """The API's rules for one switch: PUT keeps the current key or takes the smallest unused
    one, and refuses a port or key another bond has (as ``LagService.put_bond`` does)."""

    def __init__(self, bonds: dict[str, dict[str, Any]]) -> None:
        self.bonds = {name: dict(cfg) for name, cfg in bonds.items()}

    def carry_out(self, change: Change) -> None:
        if change.action == DELETE:
            del self.bonds[change.bond]
            return
        assert change.body is not None
        others = {name: cfg for name, cfg in self.bonds.items() if name != change.bond}
        own_key = self.bonds.get(change.bond, {}).get("key")
        key = change.body.get("key", own_key) or min(set(range(1, 100)) - {c["key"] for c in self.bonds.values()})
        for name, cfg in others.items():
            assert not set(cfg["ports"]) & set(change.body["ports"]), f"{change}: port of {name}"
            assert cfg["key"] != key, f"{change}: key of {name}"
        settings = {k: v for k, v in change.body.items() if k not in ("ports", "key")}
        self.bonds[change.bond] = {"name": change.bond, **config(sorted(change.body["ports"]), key, **settings)}


def test_plan_is_replayable():
    """Applying the plan to the current state gives a state whose plan is empty."""
    current = current_of({"a": config([1, 2], 1), "b": config([3, 4], 2), "old": config([5], 3)})
    file = desired({"a": {"ports": [3, 4]}, "b": {"ports": [1, 2], "rate": "fast"}, "c": {"ports": [5, 6]}})
    controller = Controller(current[S1])
    for change in planned(file, current, prune=True):
        controller.carry_out(change)
    assert planned(file, {S1: controller.bonds}, prune=True) == []


def test_new_bond_without_key_waits_for_every_keyed_change():
    """Splitting the swap a<->b frees a's key 1 until a is created again, which waits for the
    swap c<->d: bond n, whose key the API picks, must not be created in between and take 1."""
    current = current_of({"a": config([1, 5], 1), "b": config([2], 2), "c": config([3, 6], 3), "d": config([4], 4)})
    file = desired({"a": {"ports": [2, 6]}, "b": {"ports": [1]}, "c": {"ports": [4]}, "d": {"ports": [3]},
                    "n": {"ports": [5]}})
    changes = planned(file, current)
    assert changes[-1].bond == "n"
    controller = Controller(current[S1])
    for change in changes:
        controller.carry_out(change)
    assert controller.bonds["a"]["key"] == 1 and controller.bonds["n"]["key"] == 5


def random_bonds(rng: random.Random, names: str, explicit_keys: bool) -> dict[str, dict[str, Any]]:
    """Up to len(names) bonds over ports 1..8, no port or key twice."""
    ports = rng.sample(range(1, 9), rng.randint(0, 8))
    keys = rng.sample(range(1, 6), len(names))
    bonds = {}
    for name, key in zip(rng.sample(names, rng.randint(0, len(names))), keys):
        taken, ports = ports[:rng.randint(1, 3)], ports[3:]
        if taken:
            bond: dict[str, Any] = {"ports": taken}
            if explicit_keys or rng.random() < 0.4:
                bond["key"] = key
            if rng.random() < 0.3:
                bond["rate"] = "fast"
            bonds[name] = bond
    return bonds


def kept_key_taken(bonds: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> bool:
    """A file that gives one bond the key another keeps (by omitting its key): the API refuses it."""
    kept = {current[name]["key"] for name, body in bonds.items() if name in current and "key" not in body}
    return any(body.get("key") in kept for body in bonds.values())


@pytest.mark.parametrize("seed", range(300))
def test_random_plans_are_accepted_and_replayable(seed: int):
    """Any consistent current state to any consistent desired state, with prune: the API
    accepts every change in the planned order, and planning again finds nothing to do."""
    rng = random.Random(seed)
    before = {name: {"name": name, **config(sorted(b["ports"]), b["key"], **{k: v for k, v in b.items()
                                                                              if k not in ("ports", "key")})}
              for name, b in random_bonds(rng, "abcd", explicit_keys=True).items()}
    bonds = random_bonds(rng, "abcde", explicit_keys=False)
    while kept_key_taken(bonds, before):
        bonds = random_bonds(rng, "abcde", explicit_keys=False)
    file = desired(bonds)
    controller = Controller(before)
    for change in planned(file, {S1: before}, prune=True):
        controller.carry_out(change)
    assert planned(file, {S1: controller.bonds}, prune=True) == []


# ---- invalid files ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "file, message",
    [
        (None, "must be a mapping"),
        ([], "must be a mapping"),
        ({"switches": {}, "bonds": {}}, "top level: unknown key 'bonds'"),
        ({}, "switches: a mapping"),
        ({"switches": [1]}, "switches: a mapping"),
        ({"switches": {"zz": {"bonds": {}}}}, "not a dpid: 'zz'"),
        ({"switches": {"1" * 17: {"bonds": {}}}}, "out of range"),
        ({"switches": {"1": None}}, "switches.1: a mapping with 'bonds'"),
        ({"switches": {"1": {"bonds": {}, "ports": []}}}, "switches.1: unknown key 'ports'"),
        ({"switches": {"1": {}}}, "switches.1.bonds: a mapping"),
        ({"switches": {"1": {"bonds": {"b": [1, 2]}}}}, "switches.1.bonds.b: a mapping of bond fields"),
        ({"switches": {"1": {"bonds": {"b": None}}}}, "switches.1.bonds.b: a mapping of bond fields"),
        ({"switches": {"1": {"bonds": {"b": {"ports": []}}}}}, "switches.1.bonds.b: ports:"),
        ({"switches": {"1": {"bonds": {"b": {"ports": [1], "colour": "red"}}}}}, "colour: unknown field"),
        ({"switches": {"1": {"bonds": {"b": {"ports": [1], "rate": "warp"}}}}}, "rate: 'warp' is not one of"),
        ({"switches": {"1": {"bonds": {"b": {"ports": [1], "name": "c"}}}}}, "name 'c' differs"),
        ({"switches": {"1": {"bonds": {"bad name": {"ports": [1]}}}}}, "name: 1-32 characters"),
        ({"switches": {"1": {"bonds": {"a": {"ports": [1, 2]}, "b": {"ports": [2]}}}}},
         "port 2 is in both 'a' and 'b'"),
        ({"switches": {"1": {"bonds": {"a": {"ports": [1], "key": 4}, "b": {"ports": [2], "key": 4}}}}},
         "key 4 is in both"),
        ({"switches": {"1": {"bonds": {}}, "0x1": {"bonds": {}}}}, "switch 0000000000000001 is listed twice"),
    ],
)
def test_invalid_file_is_refused_with_its_place(file: Any, message: str):
    with pytest.raises(InvalidDesiredState, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_desired(file)


def test_yaml_switch_and_bond_keys_are_text(tmp_path: Path):
    path = tmp_path / "lag.yaml"
    path.write_text("switches:\n  10:\n    bonds: {a: {ports: [1]}}\n"
                    "  0000000000000011:\n    bonds: {b: {ports: [2]}}\n"
                    "  0x12:\n    bonds: {no: {ports: [3]}, 1: {ports: [4]}}\n")
    state = parse_desired(read_file(str(path)))
    assert list(state) == ["0000000000000010", "0000000000000011", "0000000000000012"]
    assert list(state["0000000000000012"]) == ["no", "1"]


def test_dpid_text_is_hex_and_a_python_int_is_the_number():
    file = {"switches": {"10": {"bonds": {}}, 16: {"bonds": {}}}}
    with pytest.raises(InvalidDesiredState, match="switch 0000000000000010 is listed twice"):
        parse_desired(file)
    assert list(parse_desired({"switches": {17: {"bonds": {}}, "0x1A": {"bonds": {}}}})) == [
        "0000000000000011", "000000000000001a"]
    with pytest.raises(InvalidDesiredState, match="not a dpid: 'True'"):
        parse_desired({"switches": {True: {"bonds": {}}}})


def test_yaml_and_json_read_the_same(tmp_path: Path):
    (tmp_path / "lag.yaml").write_text('switches:\n  "1":\n    bonds:\n      bond0: {ports: [1, 2], rate: fast}\n')
    (tmp_path / "lag.json").write_text('{"switches": {"1": {"bonds": {"bond0": {"ports": [1, 2], "rate": "fast"}}}}}')
    assert read_file(str(tmp_path / "lag.yaml")) == read_file(str(tmp_path / "lag.json"))


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("dup.yaml", "switches:\n  '1':\n    bonds:\n      a: {ports: [1]}\n      a: {ports: [2]}\n",
         "line 5: 'a' is listed twice"),
        ("bad.yaml", "switches: {1: [}", "not YAML"),
        ("bad.json", "{'switches': {}}", "not JSON"),
    ],
)
def test_unparsable_files(tmp_path: Path, name: str, text: str, message: str):
    (tmp_path / name).write_text(text)
    with pytest.raises(InvalidDesiredState, match=message):
        read_file(str(tmp_path / name))


def test_missing_file(tmp_path: Path):
    with pytest.raises(InvalidDesiredState, match="cannot read: No such file"):
        read_file(str(tmp_path / "absent.yaml"))
