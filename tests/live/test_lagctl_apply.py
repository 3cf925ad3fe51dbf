"""``lagctl apply`` and ``LagClient.apply`` against a live ``ryu-lag`` on loopback.

No switch connects: bonds are configured ahead of their switch. Each test uses switches of
its own; the server's ``/metrics`` counts the PUTs and DELETEs that reached it.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from clients import cli
from clients.apply import CREATE, DELETE, REPLACE
from clients.client import ApplyError, Conflict, ConnectionFailed, LagClient, format_dpid
from tests.integration.netlab import VENV_BIN
from tests.rest import live

TOKEN = "apply-test-token-81c2"
_dpids = itertools.count(0x200)


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[live.Controller]:
    tmp = tmp_path_factory.mktemp("apply")
    controller = live.start(tmp / "state.sqlite3", tmp / "ryu-lag.log", token=TOKEN)
    yield controller
    controller.stop()


@pytest.fixture
def client(ctl: live.Controller) -> LagClient:
    return ctl.client()


@pytest.fixture
def dpid() -> str:
    """A switch no other test uses."""
    return format_dpid(next(_dpids))


@pytest.fixture
def run(ctl: live.Controller, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """lagctl's main in-process: (exit status, stdout, stderr)."""
    monkeypatch.setenv(cli.TOKEN_ENV, TOKEN)
    monkeypatch.setenv(cli.URL_ENV, ctl.url)

    def lagctl(*argv: str) -> tuple[int, str, str]:
        status = cli.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return lagctl


def writes(client: LagClient) -> dict[str, int]:
    """PUT and DELETE requests the server has answered so far (any route, any status)."""
    counts = {"PUT": 0, "DELETE": 0}
    for labels, value in re.findall(r"^ryu_lag_rest_requests_total\{(.*)\} (\S+)$", client.metrics(), re.M):
        method = re.search(r'\bmethod="([A-Z]+)"', labels)
        if method and method[1] in counts:
            counts[method[1]] += int(float(value))
    return counts


def bonds(client: LagClient, dpid: str) -> dict[str, dict[str, Any]]:
    return {bond["name"]: bond["config"] for bond in client.get_switch(dpid)["bonds"]}


def write_yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "lag.yaml"
    path.write_text(text)
    return str(path)


def test_apply_then_again_is_no_change(run, client: LagClient, dpid: str, tmp_path: Path):
    other = format_dpid(next(_dpids))
    path = write_yaml(tmp_path, f"""\
switches:
  {dpid.lstrip("0")}:
    bonds:
      bond0: {{ports: [1, 2], rate: fast}}
      uplink: {{ports: [3, 4], min_links: 2}}
  "{other}":
    bonds:
      trunk: {{ports: [5], key: 9}}
""")
    status, out, err = run("apply", path)
    assert status == cli.EXIT_OK, err
    assert out.splitlines() == [
        f"create {dpid} bond0: ports [1, 2], rate fast",
        f"create {dpid} uplink: ports [3, 4], min_links 2",
        f"create {other} trunk: ports [5], key 9",
        "3 changes applied",
    ]
    made = bonds(client, dpid)
    assert made["bond0"]["ports"] == [1, 2] and made["bond0"]["rate"] == "fast"
    assert made["uplink"]["min_links"] == 2 and made["uplink"]["rate"] == "slow"
    assert bonds(client, other)["trunk"]["key"] == 9

    before = writes(client)
    assert before["PUT"] >= 3  # the metrics do count them
    status, out, err = run("apply", path)
    assert (status, out, err) == (cli.EXIT_OK, "no changes\n", "")
    assert writes(client) == before  # not a single PUT or DELETE


def test_only_the_differing_bond_is_put(run, client: LagClient, dpid: str, tmp_path: Path):
    client.put_bond(dpid, "bond0", [1, 2], rate="fast")
    client.put_bond(dpid, "uplink", [3, 4])
    path = write_yaml(tmp_path, f"switches:\n  '{dpid}':\n    bonds:\n"
                                "      bond0: {ports: [1, 2], rate: fast}\n      uplink: {ports: [3, 4, 5]}\n")
    before = writes(client)
    status, out, _ = run("--json", "apply", path)
    assert status == cli.EXIT_OK
    assert json.loads(out) == {"applied": True, "changes": [{
        "action": REPLACE, "dpid": dpid, "bond": "uplink",
        "fields": {"ports": {"current": [3, 4], "desired": [3, 4, 5]}},
    }]}
    assert writes(client) == {"PUT": before["PUT"] + 1, "DELETE": before["DELETE"]}
    assert bonds(client, dpid)["uplink"]["ports"] == [3, 4, 5]


def test_dry_run_changes_nothing(run, client: LagClient, dpid: str, tmp_path: Path):
    client.put_bond(dpid, "old", [7, 8])
    path = write_yaml(tmp_path, f"switches:\n  '{dpid}':\n    bonds:\n      new: {{ports: [7, 8]}}\n")
    before, state = writes(client), bonds(client, dpid)
    status, out, _ = run("apply", "--dry-run", "--prune", path)
    assert status == cli.EXIT_OK
    assert out.splitlines() == [f"delete {dpid} old: ports [7, 8]", f"create {dpid} new: ports [7, 8]",
                                "2 changes (dry run: nothing changed)"]
    assert writes(client) == before and bonds(client, dpid) == state


def test_prune_deletes_unnamed_bonds_before_reusing_their_ports(run, client: LagClient, dpid: str, tmp_path: Path):
    client.put_bond(dpid, "old", [1, 2])
    client.put_bond(dpid, "keep", [3])
    path = tmp_path / "lag.json"
    path.write_text(json.dumps({"switches": {dpid: {"bonds": {"keep": {"ports": [3]}, "new": {"ports": [1, 2]}}}}}))
    status, _, err = run("apply", str(path))
    assert status == cli.EXIT_CONFLICT and f"create of bond new on {dpid} refused: conflict:" in err
    assert set(bonds(client, dpid)) == {"old", "keep"}
    status, out, err = run("apply", "--prune", str(path))
    assert status == cli.EXIT_OK, err
    assert out.splitlines()[:2] == [f"delete {dpid} old: ports [1, 2]", f"create {dpid} new: ports [1, 2]"]
    assert set(bonds(client, dpid)) == {"keep", "new"}


def test_ports_swapped_between_bonds(client: LagClient, dpid: str):
    client.put_bond(dpid, "a", [1, 2])
    client.put_bond(dpid, "b", [3, 4])
    keys = {name: cfg["key"] for name, cfg in bonds(client, dpid).items()}
    desired = {"switches": {dpid: {"bonds": {"a": {"ports": [3, 4]}, "b": {"ports": [1, 2], "rate": "fast"}}}}}
    changes = client.apply(desired)
    assert [(c.action, c.bond) for c in changes] == [(DELETE, "a"), (REPLACE, "b"), (CREATE, "a")]
    after = bonds(client, dpid)
    assert (after["a"]["ports"], after["b"]["ports"], after["b"]["rate"]) == ([3, 4], [1, 2], "fast")
    assert {name: cfg["key"] for name, cfg in after.items()} == keys
    assert client.apply(desired) == []


def test_conflict_stops_at_the_refused_change(run, client: LagClient, dpid: str, tmp_path: Path):
    client.put_bond(dpid, "existing", [5, 6])
    path = write_yaml(tmp_path, f"switches:\n  '{dpid}':\n    bonds:\n"
                                "      first: {ports: [1], key: 30}\n      clash: {ports: [6, 7], key: 40}\n"
                                "      never: {ports: [9]}\n")
    status, out, err = run("apply", path)
    assert status == cli.EXIT_CONFLICT
    assert out.splitlines() == [f"create {dpid} first: ports [1], key 30", "1 change applied"]
    assert err.strip() == (f"lagctl: create of bond clash on {dpid} refused: "
                           "conflict: ports: port 6 is already in bond 'existing'")
    assert set(bonds(client, dpid)) == {"existing", "first"}  # nothing after the refused change

    with pytest.raises(ApplyError) as caught:
        client.apply(json.loads(json.dumps({"switches": {dpid: {"bonds": {"clash": {"ports": [6]}}}}})))
    assert isinstance(caught.value.error, Conflict) and caught.value.error.code == "conflict"
    assert (caught.value.change.action, caught.value.change.bond) == (CREATE, "clash")

    status, out, err = run("--json", "apply", path)
    assert status == cli.EXIT_CONFLICT
    error = json.loads(err)["error"]
    assert error["status"] == 409 and error["code"] == "conflict"
    assert error["change"]["bond"] == "clash" and error["change"]["dpid"] == dpid


def test_invalid_file_makes_no_call(run, client: LagClient, dpid: str, tmp_path: Path):
    before = writes(client)
    for text, message in [
        (f"switches:\n  '{dpid}':\n    bonds:\n      a: [1, 2]\n", "a mapping of bond fields"),
        (f"switches:\n  '{dpid}':\n    bonds: {{a: {{ports: [1]}}}}\nextra: 1\n", "unknown key 'extra'"),
        ("switches:\n  not-a-dpid:\n    bonds: {}\n", "not a dpid"),
    ]:
        path = write_yaml(tmp_path, text)
        status, out, err = run("apply", path)
        assert (status, out) == (cli.EXIT_INVALID, "") and err.startswith(f"lagctl: {path}: ") and message in err
    status, _, err = run("--json", "apply", str(tmp_path / "absent.yaml"))
    assert status == cli.EXIT_INVALID and json.loads(err)["error"]["code"] == cli.INVALID_FILE
    assert writes(client) == before


def test_console_script_reads_standard_input(ctl: live.Controller, client: LagClient, dpid: str):
    text = json.dumps({"switches": {dpid: {"bonds": {"bond0": {"ports": [1, 2]}}}}})
    command = [str(VENV_BIN / "lagctl"), "--url", ctl.url, "apply", "-"]
    done = subprocess.run(command, input=text, capture_output=True, text=True, env=live.environment(TOKEN), timeout=60)
    assert done.returncode == 0 and done.stdout.endswith("1 change applied\n"), done.stderr
    done = subprocess.run(command, input=text, capture_output=True, text=True, env=live.environment(TOKEN), timeout=60)
    assert (done.returncode, done.stdout) == (0, "no changes\n"), done.stderr
    assert bonds(client, dpid)["bond0"]["ports"] == [1, 2]


class PutFails(requests.Session):
    """The controller goes away before the first PUT: GETs go through, PUTs cannot connect."""

    def request(self, method: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if method == "PUT":
            raise requests.ConnectionError("connection refused")
        return super().request(method, *args, **kwargs)


def test_unreachable_mid_apply(ctl: live.Controller, dpid: str):
    client = LagClient(ctl.url, token=TOKEN, retries=1, backoff=0.001, session=PutFails())
    with pytest.raises(ApplyError) as caught:
        client.apply({"switches": {dpid: {"bonds": {"bond0": {"ports": [1]}}}}})
    assert isinstance(caught.value.error, ConnectionFailed) and caught.value.done == []
    assert (caught.value.change.action, caught.value.change.bond) == (CREATE, "bond0")
    assert cli.exit_status(caught.value) == cli.EXIT_UNREACHABLE
