#!/usr/bin/env bash
# Prepare this machine for ryu_lag: system packages, Open vSwitch, and .venv.
# Idempotent; run as root on Debian 12 from any directory. A second run skips
# everything that is already done.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

# etcd-server: the etcd members the store's cluster tests start on loopback (tests/etcdlab.py).
APT_PACKAGES=(openvswitch-switch mininet iputils-ping ethtool iproute2 python3-venv tcpdump etcd-server)
VENV=.venv
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -qq)
# The editable install is redone only when setup.py changes.
STAMP="$VENV/.ryu_lag-setup.sha256"
# Loaded by every interpreter of the venv; installs a lazy import hook so that
# plain `ryu-manager ryu_lag.app` works with modern eventlet (see eventlet_compat).
PTH_NAME=ryu_lag_eventlet_compat.pth
PTH_LINE="import ryu_lag.eventlet_compat as _c; _c.install_import_hook()"

log() { printf 'setup: %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    log "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Quiet unless it fails (debconf's notes go to stderr even with -qq).
    if ! out=$( { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } 2>&1); then
        printf '%s\n' "$out" >&2
        exit 1
    fi
fi

if ! ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
    log "starting Open vSwitch (userspace)"
    if ! out=$(/usr/share/openvswitch/scripts/ovs-ctl --no-monitor start --system-id=random 2>&1); then
        printf '%s\n' "$out" >&2
        exit 1
    fi
    ovs-vsctl --timeout=5 show >/dev/null
fi

if [[ ! -x "$PY" ]]; then
    log "creating $VENV"
    /usr/bin/python3 -m venv "$VENV"
fi

# Ryu 4.34's sdist only builds with an old setuptools and without build isolation.
if ! "$PY" - <<'PYEOF' 2>/dev/null; then
import setuptools, wheel
assert int(setuptools.__version__.split(".")[0]) < 67
PYEOF
    log "installing setuptools<67 and wheel"
    "${PIP[@]}" 'setuptools<67' wheel
fi

if ! "$PY" -c 'import importlib.metadata as m, sys; sys.exit(m.version("ryu") != "4.34")' 2>/dev/null; then
    log "installing ryu 4.34"
    "${PIP[@]}" --no-build-isolation ryu==4.34
fi

want=$(sha256sum setup.py | cut -d' ' -f1)
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" || ! -x "$VENV/bin/ryu-lag" ]]; then
    log "installing ryu_lag (editable) with test and benchmark extras"
    "${PIP[@]}" --no-build-isolation -e '.[test,bench]'
    printf '%s\n' "$want" >"$STAMP"
fi

site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [[ "$(cat "$site/$PTH_NAME" 2>/dev/null)" != "$PTH_LINE" ]]; then
    printf '%s\n' "$PTH_LINE" >"$site/$PTH_NAME"
fi

log "ready: $VENV"
