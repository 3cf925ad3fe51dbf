"""The systemd unit runs ``ryu-lag --lag-store ${RYU_LAG_STORE} $RYU_LAG_ARGS``, with a SQLite default
that ``ryu-lag`` accepts, and the flags of a cluster member split into words as systemd does."""

from __future__ import annotations

import shlex
from pathlib import Path

from oslo_config import cfg

from ryu_lag import options
from ryu_lag.stores import parse_store_url

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "ryu-lag.service"


def service_section() -> dict[str, list[str]]:
    """The [Service] settings, each with its values in order (Environment= repeats)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def expand(exec_start: str, env: dict[str, str]) -> list[str]:
    """systemd's ExecStart expansion: ``${VAR}`` is one word, ``$VAR`` splits on whitespace."""
    words: list[str] = []
    for word in shlex.split(exec_start):
        if word.startswith("${") and word.endswith("}"):
            words.append(env[word[2:-1]])
        elif word.startswith("$"):
            words.extend(env[word[1:]].split())
        else:
            words.append(word)
    return words


def test_the_unit_takes_the_store_and_flags_from_its_environment() -> None:
    service = service_section()
    env = dict(item.partition("=")[::2] for item in service["Environment"])
    assert parse_store_url(env["RYU_LAG_STORE"]).path == "/var/lib/ryu-lag/ryu_lag.sqlite3"
    (exec_start,) = service["ExecStart"]
    for overrides in ({}, {"RYU_LAG_STORE": "etcd://10.0.0.1:2379,10.0.0.2:2379",
                           "RYU_LAG_ARGS": "--lag-instance-id ctl1 --lag-advertise-url http://10.0.0.1:8080"}):
        words = expand(exec_start, {**env, **overrides})
        assert words[0].endswith("/.venv/bin/ryu-lag")
        conf = cfg.ConfigOpts()
        options.register(conf)
        conf(args=words[1:])
        assert options.store_url(conf) == overrides.get("RYU_LAG_STORE", env["RYU_LAG_STORE"])
    assert conf.lag_instance_id == "ctl1" and conf.lag_advertise_url == "http://10.0.0.1:8080"
