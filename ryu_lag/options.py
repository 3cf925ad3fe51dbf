"""ryu_lag's options on Ryu's shared ``ryu.cfg.CONF``, read as ``CONF.lag_db`` and so on.

On the command line they are ``--lag-store``, ``--lag-db``, ``--lag-db-fsync``, ``--lag-instance-id``,
``--lag-advertise-url``, ``--lag-api-token``, ``--lag-insecure``, ``--lag-tick-interval``,
``--lag-mac-age``, ``--lag-lacp-meter-pps``, ``--lag-learn-meter-pps`` and ``--lag-max-macs``;
in a ``--config-file``, ``lag_db = ...`` under ``[DEFAULT]``. The API token falls back to the environment variable ``RYU_LAG_API_TOKEN``
(:func:`api_token`), which keeps it off command lines that other users can see.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from oslo_config import cfg
from ryu.cfg import CONF

from ryu_lag.stores import StoreUrlError, parse_store_url, sqlite_url
from ryu_lag.switching import (
    DEFAULT_LACP_METER_PPS,
    DEFAULT_LEARN_METER_PPS,
    DEFAULT_MAX_MACS,
    MIN_LACP_METER_PPS,
    MIN_LEARN_METER_PPS,
)

DB_FILENAME = "ryu_lag.sqlite3"
TOKEN_ENV = "RYU_LAG_API_TOKEN"


def default_db_path() -> Path:
    """Where the SQLite state lives by default: ``$XDG_STATE_HOME/ryu-lag/ryu_lag.sqlite3``.

    ``$XDG_STATE_HOME`` falls back to ``~/.local/state`` when unset or empty.
    """
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "ryu-lag" / DB_FILENAME


def _opts() -> list[cfg.Opt]:
    return [
        cfg.StrOpt(
            "lag-store",
            default=None,
            metavar="URL",
            help="where the state lives: sqlite:PATH (one instance; the default, as --lag-db) or "
            "etcd://HOST:PORT[,HOST:PORT...] (a cluster of instances sharing it; give every etcd member)",
        ),
        cfg.StrOpt(
            "lag-db",
            default=None,
            metavar="PATH",
            help="SQLite file holding ryu_lag's state, the same as --lag-store sqlite:PATH "
            "(default $XDG_STATE_HOME/ryu-lag/%s, or ~/.local/state/ryu-lag/%s)"
            % (DB_FILENAME, DB_FILENAME),
        ),
        cfg.StrOpt(
            "lag-instance-id",
            default=None,
            metavar="ID",
            help="this instance's name in a cluster: letters, digits, '.', '_', '-', at most 64 "
            "(default: the host name and the REST port, as in myhost-8080)",
        ),
        cfg.StrOpt(
            "lag-advertise-url",
            default=None,
            metavar="URL",
            help="the REST URL other instances of a cluster show for this one "
            "(default http://WSAPI_HOST:WSAPI_PORT)",
        ),
        cfg.BoolOpt(
            "lag-db-fsync",
            default=False,
            help="fsync the state file on every change, so that a change also survives a power loss "
            "(default off: a change survives the controller being killed, and costs no disk flush)",
        ),
        cfg.StrOpt(
            "lag-api-token",
            default=None,
            secret=True,
            help="token that REST API clients must present as 'Authorization: Bearer TOKEN' "
            "(default: $%s, else none)" % TOKEN_ENV,
        ),
        cfg.BoolOpt(
            "lag-insecure",
            default=False,
            help="allow the REST API on a non-loopback address without a token",
        ),
        cfg.FloatOpt(
            "lag-tick-interval",
            default=0.05,
            min=0.001,
            help="the longest the engines' clock sleeps; it also wakes at each LACP or BFD timer (default 0.05)",
        ),
        cfg.IntOpt(
            "lag-mac-age",
            default=300,
            min=1,
            max=0xFFFF,  # an OpenFlow idle timeout is 16 bits
            help="seconds after which a learned MAC address is forgotten (1..65535, default 300)",
        ),
        cfg.IntOpt(
            "lag-lacp-meter-pps",
            default=DEFAULT_LACP_METER_PPS,
            min=MIN_LACP_METER_PPS,
            max=100_000,
            help=f"LACPDUs a second each bond member may send to the controller, where the switch has meters "
            f"({MIN_LACP_METER_PPS}..100000, default {DEFAULT_LACP_METER_PPS})",
        ),
        cfg.IntOpt(
            "lag-learn-meter-pps",
            default=DEFAULT_LEARN_METER_PPS,
            min=MIN_LEARN_METER_PPS,
            max=1_000_000,
            help=f"frames from unknown source MACs a second each port or bond may send to the controller to be "
            f"learned, where the switch has meters; beyond it such frames are dropped until their source is "
            f"learned ({MIN_LEARN_METER_PPS}..1000000, default {DEFAULT_LEARN_METER_PPS})",
        ),
        cfg.IntOpt(
            "lag-max-macs",
            default=DEFAULT_MAX_MACS,
            min=1,
            max=10_000_000,
            help=f"learned MAC addresses per switch; past it learning pauses and new sources are flooded "
            f"(1..10000000, default {DEFAULT_MAX_MACS})",
        ),
    ]


def store_url(conf: cfg.ConfigOpts = CONF) -> str:
    """The store to open: ``--lag-store``, else ``sqlite:`` and ``--lag-db`` or the default path.

    Raises StoreUrlError for a URL that names no store, or for both options given.
    """
    if conf.lag_store is not None and conf.lag_db is not None:
        raise StoreUrlError("give --lag-store or --lag-db, not both (--lag-db PATH is --lag-store sqlite:PATH)")
    if conf.lag_store is not None:
        parse_store_url(conf.lag_store)
        return conf.lag_store
    return sqlite_url(conf.lag_db or str(default_db_path()))


def instance_id(conf: cfg.ConfigOpts = CONF) -> str:
    """``--lag-instance-id``, else the host's name (cut to what an id may hold) and the REST port."""
    if conf.lag_instance_id is not None:
        return conf.lag_instance_id
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]).strip("-._") or "ryu-lag"
    return f"{host[:56]}-{conf.wsapi_port}"


def advertise_url(conf: cfg.ConfigOpts = CONF) -> str:
    """``--lag-advertise-url``, else the REST listener's address."""
    if conf.lag_advertise_url is not None:
        return conf.lag_advertise_url
    host = conf.wsapi_host
    return f"http://{f'[{host}]' if ':' in host else host}:{conf.wsapi_port}"


def api_token(conf: cfg.ConfigOpts = CONF) -> str | None:
    """The REST API token: ``--lag-api-token``, else ``$RYU_LAG_API_TOKEN``; None when neither is set."""
    return conf.lag_api_token or os.environ.get(TOKEN_ENV) or None


def register(conf: cfg.ConfigOpts = CONF) -> None:
    """Register the ``--lag-*`` options on ``conf`` (idempotent).

    Before the command line is parsed they become command-line options. After it (an app
    module imported by plain ``ryu-manager``) they can only be set in a config file.
    """
    for opt in _opts():
        if opt.dest in conf:
            continue
        try:
            conf.register_cli_opt(opt)
        except cfg.ArgsAlreadyParsedError:
            conf.register_opt(opt)
