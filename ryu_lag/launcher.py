"""The ``ryu-lag`` command: Ryu's manager running the ``ryu_lag.app`` application.

Every ``ryu-manager`` flag works (``--ofp-tcp-listen-port``, ``--wsapi-host``,
``--wsapi-port``, ``--config-file``, the log flags, ...), plus the ``--lag-*`` options of
:mod:`ryu_lag.options`. The application is always ``ryu_lag.app``: there is no
positional app list to give. Unlike ``ryu-manager``, which listens on every address,
``ryu-lag`` listens on 127.0.0.1 (OpenFlow on port 6653, REST on port 8080) unless
``--ofp-listen-host`` or ``--wsapi-host`` (on the command line or in a config file) say
otherwise. SIGTERM stops it as cleanly as Ctrl-C does: the apps are closed, exit status 0.
A listener that cannot bind (say, another ``ryu-lag`` has the port) stops it with one
critical log line and exit status 2.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from oslo_config import cfg
from ryu.cfg import CONF

from ryu_lag import eventlet_compat, options

APP = "ryu_lag.app"
LOOPBACK = "127.0.0.1"
LOG = logging.getLogger("ryu_lag")


def main(argv: Sequence[str] | None = None) -> None:
    """Run Ryu's manager with ``ryu_lag.app`` and the command-line flags ``argv``."""
    args = list(sys.argv[1:] if argv is None else argv)
    eventlet_compat.apply()
    from ryu_lag import fifo_hub  # imports eventlet: only once its deprecation banner is silenced

    fifo_hub.install()  # before Ryu's manager starts eventlet's default hub
    options.register()
    # Importing the manager registers Ryu's own options and monkey-patches via eventlet.
    from ryu.cmd import manager

    _listen_on_loopback(CONF)
    exit_when_a_listener_cannot_bind()
    signal.signal(signal.SIGTERM, _interrupt)
    manager.main(args=[APP, *args], prog="ryu-lag")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Ryu's manager closes its apps and returns on KeyboardInterrupt.
    raise KeyboardInterrupt


def exit_when_a_listener_cannot_bind() -> None:
    """Make a Ryu listener (``hub.StreamServer``) that cannot bind stop the process, status 2.

    Ryu binds its WSGI server in the main green thread (the error would end the process with
    a traceback) and its OpenFlow server in another (the error would be logged and the
    controller would run on without OpenFlow). Either way: one critical line, then
    ``SystemExit(2)`` in the main green thread, so Ryu's manager closes the apps.
    """
    import greenlet
    from ryu.lib import hub

    main_thread = greenlet.getcurrent()
    bind = hub.StreamServer.__init__

    def bind_or_exit(server: Any, listen_info: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bind(server, listen_info, *args, **kwargs)
        except OSError as exc:
            address = ":".join(str(part) for part in listen_info) if isinstance(listen_info, tuple) else listen_info
            LOG.critical("ryu_lag cannot start: cannot listen on %s: %s", address, exc.strerror or exc)
            if greenlet.getcurrent() is main_thread:
                raise SystemExit(2) from None
            main_thread.throw(SystemExit(2))

    hub.StreamServer.__init__ = bind_or_exit


def _listen_on_loopback(conf: cfg.ConfigOpts) -> None:
    # Re-registered rather than set_default(), so that --help states the new default.
    for name, what in (("ofp-listen-host", "openflow"), ("wsapi-host", "webapp")):
        opt = cfg.StrOpt(name, default=LOOPBACK, help=f"{what} listen host (default {LOOPBACK})")
        conf.unregister_opt(opt)
        conf.register_cli_opt(opt)


if __name__ == "__main__":
    main()
