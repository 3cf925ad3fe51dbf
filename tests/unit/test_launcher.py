"""The ``ryu-lag`` launcher, the ``--lag-*`` options and the eventlet shim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from oslo_config import cfg

from ryu_lag import options
from ryu_lag.stores import StoreUrlError

BIN_DIR = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]

# Drops the import hook that the venv's .pth installs, so only the code under test helps.
_WITHOUT_HOOK = (
    "import sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path"
    " if type(f).__module__ != 'ryu_lag.eventlet_compat']\n"
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_help_lists_lag_options_and_loopback_defaults() -> None:
    result = subprocess.run(
        [str(BIN_DIR / "ryu-lag"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--lag-db", "--lag-db-fsync", "--lag-api-token", "--lag-tick-interval", "--lag-mac-age",
                 "--lag-lacp-meter-pps"):
        assert flag in result.stdout
    assert "openflow listen host (default 127.0.0.1)" in result.stdout
    assert "webapp listen host (default 127.0.0.1)" in result.stdout


def test_register_is_idempotent_before_and_after_parsing() -> None:
    conf = cfg.ConfigOpts()
    options.register(conf)
    options.register(conf)
    conf(args=["--lag-db", "/tmp/x.sqlite3", "--lag-mac-age", "60"])
    options.register(conf)
    assert conf.lag_db == "/tmp/x.sqlite3"
    assert conf.lag_mac_age == 60
    assert conf.lag_tick_interval == 0.05
    assert conf.lag_lacp_meter_pps == 20
    assert conf.lag_api_token is None


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--lag-mac-age", "0"),  # an OpenFlow idle timeout is 1..65535
        ("--lag-mac-age", "65536"),
        ("--lag-lacp-meter-pps", "2"),  # below the 3 LACPDUs a second LACP may send
        ("--lag-lacp-meter-pps", "100001"),
    ],
)
def test_option_values_out_of_range_are_refused(flag: str, value: str) -> None:
    conf = cfg.ConfigOpts()
    options.register(conf)
    with pytest.raises(SystemExit):
        conf(args=[flag, value])


def test_registered_after_parsing_reads_config_file(tmp_path: Path) -> None:
    config = tmp_path / "ryu.conf"
    config.write_text("[DEFAULT]\nlag_db = /srv/lag.sqlite3\n")
    conf = cfg.ConfigOpts()
    conf(args=["--config-file", str(config)])
    options.register(conf)
    assert conf.lag_db == "/srv/lag.sqlite3"


@pytest.mark.parametrize(
    "xdg, expected",
    [("/xdg", "/xdg/ryu-lag/ryu_lag.sqlite3"), ("", "~/.local/state/ryu-lag/ryu_lag.sqlite3")],
)
def test_default_db_path(monkeypatch: pytest.MonkeyPatch, xdg: str, expected: str) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", xdg)
    assert options.default_db_path() == Path(expected).expanduser()


def test_apply_makes_ryu_wsgi_importable() -> None:
    result = _python(
        _WITHOUT_HOOK + "from ryu_lag import eventlet_compat\n"
        "eventlet_compat.apply()\n"
        "eventlet_compat.apply()\n"
        "import ryu.app.wsgi\n"
    )
    assert result.returncode == 0, result.stderr
    assert "Eventlet is deprecated" not in result.stderr


def test_import_hook_is_lazy_and_patches_eventlet_wsgi() -> None:
    result = _python(
        _WITHOUT_HOOK + "from ryu_lag import eventlet_compat\n"
        "eventlet_compat.install_import_hook()\n"
        "eventlet_compat.install_import_hook()\n"
        "assert 'eventlet' not in sys.modules\n"
        "import ryu.app.wsgi\n"
    )
    assert result.returncode == 0, result.stderr


def test_the_store_is_lag_store_or_lag_db_never_both(tmp_path: Path) -> None:
    def parsed(*args: str) -> cfg.ConfigOpts:
        conf = cfg.ConfigOpts()
        options.register(conf)
        conf(args=list(args))
        return conf

    assert options.store_url(parsed("--lag-db", "/srv/x.sqlite3")) == "sqlite:/srv/x.sqlite3"
    assert options.store_url(parsed("--lag-store", "etcd://10.0.0.1:2379,10.0.0.2:2379")) == (
        "etcd://10.0.0.1:2379,10.0.0.2:2379")
    assert options.store_url(parsed()) == "sqlite:" + str(options.default_db_path())
    with pytest.raises(StoreUrlError, match="not both"):
        options.store_url(parsed("--lag-db", "/srv/x.sqlite3", "--lag-store", "sqlite:/srv/y.sqlite3"))
    with pytest.raises(StoreUrlError, match="unknown store 'redis'"):
        options.store_url(parsed("--lag-store", "redis://h:1"))
