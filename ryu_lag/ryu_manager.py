"""Ryu's stock ``ryu-manager`` with the eventlet shim applied and ``--lag-*`` registered.

Usage: ``python -m ryu_lag.ryu_manager [flags] ryu_lag.app [more apps]``. The fallback
for ``ryu-manager ryu_lag.app`` where the venv's ``.pth`` import hook is not installed.
Ryu's defaults apply, so it listens on every address unless told otherwise.
"""

from __future__ import annotations

from ryu_lag import eventlet_compat, launcher, options


def main() -> None:
    """Run Ryu's manager on ``sys.argv``."""
    eventlet_compat.apply()
    from ryu_lag import fifo_hub  # imports eventlet: only once its deprecation banner is silenced

    fifo_hub.install()  # before Ryu's manager starts eventlet's default hub
    options.register()
    from ryu.cmd import manager

    launcher.exit_when_a_listener_cannot_bind()
    manager.main(prog="python -m ryu_lag.ryu_manager")


if __name__ == "__main__":
    main()
