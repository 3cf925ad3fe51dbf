"""LagClient, lagctl and the README's curl lines against a live ``ryu-lag`` on loopback.

Two controllers for the module: one with a token (client and CLI), one without (curl, as
the README shows it). No switch connects, so bonds are configured ahead of their switch;
each test uses a switch of its own.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from clients import cli
from clients.client import (
    ApiError,
    Conflict,
    ConnectionFailed,
    LagClient,
    NotFound,
    ServerError,
    Unauthorized,
    ValidationError,
    format_dpid,
)
from tests.integration.netlab import VENV_BIN, free_port
from tests.rest import live

TOKEN = "live-test-token-5d1f"
README = Path(__file__).resolve().parents[2] / "README.md"
ISSUE_CURL = """curl -X POST http://127.0.0.1:8080/lag/0000000000000001 -d '{"ports":[1,2]}'"""
_dpids = itertools.count(0x100)


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[live.Controller]:
    tmp = tmp_path_factory.mktemp("client")
    controller = live.start(tmp / "state.sqlite3", tmp / "ryu-lag.log", token=TOKEN)
    yield controller
    controller.stop()


@pytest.fixture(scope="module")
def open_ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[live.Controller]:
    tmp = tmp_path_factory.mktemp("curl")
    controller = live.start(tmp / "state.sqlite3", tmp / "ryu-lag.log")
    yield controller
    controller.stop()


@pytest.fixture
def client(ctl: live.Controller) -> LagClient:
    return ctl.client()


@pytest.fixture
def dpid() -> str:
    """A switch no other test uses."""
    return format_dpid(next(_dpids))


# ---- client ---------------------------------------------------------------------------------
def test_create_get_list_delete(client: LagClient, dpid: str):
    bond = client.create_bond(dpid, [1, 2], rate="fast", min_links=2)
    assert (bond["dpid"], bond["name"], bond["applied"]) == (dpid, "bond0", False)
    assert bond["config"]["rate"] == "fast" and bond["config"]["min_links"] == 2 and bond["config"]["key"] == 1
    assert client.get_bond(dpid, "bond0") == bond
    assert {"dpid": dpid, "connected": False, "bond_count": 1} in client.list_switches()
    switch = client.get_switch(int(dpid, 16))
    assert switch["connected"] is False and [b["name"] for b in switch["bonds"]] == ["bond0"]
    assert client.delete_bond(dpid, "bond0") is None
    with pytest.raises(NotFound) as caught:
        client.get_bond(dpid, "bond0")
    assert caught.value.status == 404 and caught.value.code == "unknown_switch"


def test_put_is_idempotent_and_replaces(client: LagClient, dpid: str):
    first = client.put_bond(dpid, "trunk", [3, 4])
    assert client.put_bond(dpid, "trunk", [3, 4]) == first
    replaced = client.put_bond(dpid, "trunk", [3, 4, 5], mode="passive")
    assert replaced["config"]["ports"] == [3, 4, 5] and replaced["config"]["key"] == first["config"]["key"]


def test_typed_errors_carry_code_and_message(client: LagClient, dpid: str):
    client.create_bond(dpid, [1, 2])
    with pytest.raises(Conflict) as conflict:
        client.create_bond(dpid, [2, 3])
    assert conflict.value.code == "conflict" and conflict.value.field == "ports" and "bond0" in conflict.value.message
    with pytest.raises(ValidationError) as invalid:
        client.create_bond(dpid, [])
    assert invalid.value.code == "invalid_field" and invalid.value.field == "ports"
    with pytest.raises(ValidationError) as unknown:
        client.put_bond(dpid, "x", [5], colour="blue")
    assert unknown.value.field == "colour"
    with pytest.raises(NotFound) as missing:
        client.delete_bond(dpid, "nope")
    assert missing.value.code == "unknown_bond"
    assert all(issubclass(e, ApiError) for e in (Conflict, ValidationError, NotFound, Unauthorized, ServerError))


def test_unauthorized(ctl: live.Controller):
    for token in (None, "wrong"):
        with pytest.raises(Unauthorized) as caught:
            LagClient(ctl.url, token=token).list_switches()
        assert caught.value.status == 401 and caught.value.code == "unauthorized"


def test_token_never_logged(client: LagClient, ctl: live.Controller, dpid: str):
    client.create_bond(dpid, [1])
    with pytest.raises(Unauthorized):
        LagClient(ctl.url, token=TOKEN + "x").list_switches()
    assert TOKEN not in ctl.log_text()


def test_macs(client: LagClient, dpid: str):
    with pytest.raises(NotFound):
        client.list_macs(dpid)
    client.create_bond(dpid, [1, 2])
    assert client.list_macs(dpid) == [] and client.list_macs(dpid, bond="bond0") == []
    assert client.flush_macs(dpid) == 0 and client.flush_macs(dpid, port=7) == 0
    with pytest.raises(NotFound):
        client.flush_macs(dpid, bond="nope")


def test_openapi_and_metrics(client: LagClient, ctl: live.Controller):
    document = client.openapi()
    assert document["openapi"].startswith("3.") and "/lag/{dpid}/{bond}" in document["paths"]
    text = LagClient(ctl.url).metrics()  # no token needed
    assert 'ryu_lag_rest_requests_total{method="GET",route="/lag/openapi.json",status="200"}' in text


def test_dpid_forms(client: LagClient):
    dpid = next(_dpids)
    client.create_bond(dpid, [1])
    assert client.get_switch(hex(dpid))["dpid"] == client.get_switch(f"{dpid:x}")["dpid"] == format_dpid(dpid)
    with pytest.raises(ValueError):
        format_dpid("not-hex")


class FailingSession(requests.Session):
    """Every request fails to connect; counts the attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def request(self, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
        self.attempts += 1
        raise requests.ConnectionError("connection refused")


@pytest.mark.parametrize(
    "call, attempts",
    [
        (lambda c: c.list_switches(), 4),
        (lambda c: c.put_bond(1, "b", [1]), 4),
        (lambda c: c.delete_bond(1, "b"), 4),
        (lambda c: c.create_bond(1, [1]), 1),  # POST is not idempotent: never retried
    ],
    ids=["GET", "PUT", "DELETE", "POST"],
)
def test_retries_only_idempotent_calls(call, attempts: int):
    session = FailingSession()
    client = LagClient("http://127.0.0.1:9", retries=3, backoff=0.001, session=session)
    with pytest.raises(ConnectionFailed):
        call(client)
    assert session.attempts == attempts


def test_unreachable_controller():
    with pytest.raises(ConnectionFailed, match="cannot reach"):
        LagClient(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01).list_switches()


def test_error_without_json_body_still_typed(ctl: live.Controller):
    with pytest.raises(ApiError) as caught:
        LagClient(ctl.url, token=TOKEN)._call("GET", "/not-the-api")
    assert caught.value.status == 404 and isinstance(caught.value, NotFound)


# ---- lagctl -------------------------------------------------------------------------------------
def lagctl(ctl: live.Controller, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           *argv: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    """Run lagctl's main in-process: (exit status, stdout, stderr)."""
    if token is None:
        monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(cli.TOKEN_ENV, token)
    monkeypatch.setenv(cli.URL_ENV, ctl.url)
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def run(ctl: live.Controller, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    return lambda *argv, **kw: lagctl(ctl, monkeypatch, capsys, *argv, **kw)


def test_cli_create_show_delete(run, dpid: str):
    status, out, _ = run("create", dpid, "--ports", "1", "2", "--rate", "fast", "--name", "uplink")
    assert status == 0 and f"bond uplink on {dpid}: not applied (switch not connected)" in out
    assert "rate fast" in out
    status, out, _ = run("show", dpid)
    assert status == 0 and out.startswith(f"switch {dpid}: not connected, 1 bond")
    assert re.search(r"PORT\s+LINK\s+MUX\s+SELECTION\s+ENABLED\s+TIMEOUT\s+LAST RX\s+ACTOR\s+PARTNER", out)
    assert re.search(r"^\s+1\s+down\s+detached\s+unselected\s+no\s+0s", out, re.M)
    status, out, _ = run("show", dpid, "uplink")
    assert status == 0 and out.startswith(f"bond uplink on {dpid}")
    status, out, _ = run("switches")
    assert status == 0 and re.search(rf"^{dpid}\s+no\s+1$", out, re.M)
    status, out, _ = run("delete", dpid, "uplink")
    assert status == 0 and out.strip() == f"deleted bond uplink of {dpid}"


def test_cli_put_and_json(run, dpid: str):
    status, out, _ = run("--json", "put", dpid.lstrip("0"), "trunk", "--ports", "3,4", "--min-links", "2")
    assert status == 0
    bond = json.loads(out)
    assert bond["dpid"] == dpid and bond["config"]["ports"] == [3, 4] and bond["config"]["min_links"] == 2
    status, out, _ = run("--json", "switches")
    assert {"dpid": dpid, "connected": False, "bond_count": 1} in json.loads(out)
    status, out, _ = run("--json", "macs", dpid)
    assert status == 0 and json.loads(out) == []
    status, out, _ = run("--json", "flush", dpid, "--bond", "trunk")
    assert status == 0 and json.loads(out) == {"dpid": dpid, "flushed": 0}
    status, out, _ = run("macs", dpid, "--port", "9")
    assert status == 0 and out.strip() == "no learned MACs"
    status, out, _ = run("flush", dpid)
    assert status == 0 and out.strip() == "flushed 0 MACs"


def test_cli_exit_statuses(run, dpid: str):
    run("create", dpid, "--ports", "1", "2")
    status, _, err = run("show", dpid, "nope")
    assert status == cli.EXIT_NOT_FOUND and "unknown_bond" in err
    status, _, err = run("create", dpid, "--ports", "2", "3")
    assert status == cli.EXIT_CONFLICT and "already in bond 'bond0'" in err
    status, _, err = run("create", dpid, "--ports", "0")
    assert status == cli.EXIT_INVALID and "invalid_field" in err
    status, _, err = run("switches", token=None)
    assert status == cli.EXIT_UNAUTHORIZED and "unauthorized" in err
    status, out, err = run("--json", "show", dpid, "nope")
    assert status == cli.EXIT_NOT_FOUND and out == "" and json.loads(err)["error"]["code"] == "unknown_bond"
    status, _, err = run("--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2", "switches")
    assert status == cli.EXIT_UNREACHABLE and "cannot reach" in err


def test_cli_usage_errors(run):
    for argv in (["create", "1"], ["create", "1", "--ports", "a"], ["show", "nothex"], ["bogus"], []):
        with pytest.raises(SystemExit) as caught:
            run(*argv)
        assert caught.value.code == cli.EXIT_USAGE


def test_console_script(ctl: live.Controller, dpid: str):
    """The installed ``lagctl`` takes its token from the environment."""
    env = live.environment(TOKEN)
    ctl.client().create_bond(dpid, [1, 2])
    done = subprocess.run([str(VENV_BIN / "lagctl"), "--url", ctl.url, "show", dpid, "bond0"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and f"bond bond0 on {dpid}" in done.stdout, done.stderr
    done = subprocess.run([str(VENV_BIN / "lagctl"), "--url", ctl.url, "switches"],
                          capture_output=True, text=True, env=live.environment(None), timeout=60)
    assert done.returncode == cli.EXIT_UNAUTHORIZED and "unauthorized" in done.stderr


# ---- curl, as the issue and the README show it ----------------------------------------------------
def readme_section() -> str:
    text = README.read_text()
    start = text.index("## REST API")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def readme_curls() -> list[str]:
    """The curl commands of the README's REST API section (backslash continuations joined)."""
    commands = []
    for block in re.findall(r"```(?:sh|console|bash)?\n(.*?)```", readme_section(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("curl "):
                commands.append(line)
    return commands


def test_readme_shows_the_issue_command():
    assert ISSUE_CURL in readme_curls()


def test_issue_curl_command_works(open_ctl: live.Controller):
    command = ISSUE_CURL.replace("8080", str(open_ctl.api_port))
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    bond = json.loads(done.stdout)
    assert bond["name"] == "bond0" and bond["config"]["ports"] == [1, 2] and bond["config"]["mode"] == "active"
    assert open_ctl.client().get_bond(1, "bond0") == bond
    open_ctl.client().delete_bond(1, "bond0")  # the README's own walk-through starts from nothing


def test_readme_curl_examples_work(open_ctl: live.Controller):
    """Every curl line of the README, in order, answers without an HTTP error."""
    commands = readme_curls()
    assert len(commands) >= 8
    for command in commands:
        command = command.replace("127.0.0.1:8080", f"127.0.0.1:{open_ctl.api_port}")
        checked = command + " -sS -o /dev/null -w '%{http_code}'"
        done = subprocess.run(checked, shell=True, capture_output=True, text=True, timeout=30,
                              env=live.environment(None))
        assert done.returncode == 0 and done.stdout.isdigit() and int(done.stdout) < 400, (command, done.stdout)
