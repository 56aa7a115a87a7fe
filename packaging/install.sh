#!/bin/sh
# Install edgek (docs: README.md): `sudo packaging/install.sh` installs a server with its
# embedded agent; with EDGEK_URL and EDGEK_TOKEN (or EDGEK_TOKEN_FILE) an agent that joins it.
#
#   INSTALL_EDGEK_EXEC="--flag ..."  flags for `edgek server|agent` (also: the arguments)
#   INSTALL_EDGEK_ZIPAPP=FILE        install this zipapp (air-gapped); from a checkout without
#                                    it the zipapp for this machine is built first
#   INSTALL_EDGEK_BIN_DIR=DIR        where edgek and its scripts go (default /usr/local/bin)
#   INSTALL_EDGEK_SKIP_ENABLE=true   do not enable the service (implies SKIP_START)
#   INSTALL_EDGEK_SKIP_START=true    do not start it
#   INSTALL_EDGEK_SKIP_PACKAGES=true never install Podman through apt/dnf
#   INSTALL_EDGEK_ROOT=DIR           write every file under DIR instead of / and start nothing
set -eu

ROOT=${INSTALL_EDGEK_ROOT:-}
BIN_DIR=${INSTALL_EDGEK_BIN_DIR:-/usr/local/bin}
UNIT_DIR=/etc/systemd/system
CONFIG_DIR=/etc/edgek
DATA_DIR=/var/lib/edgek
EXEC_ARGS="${INSTALL_EDGEK_EXEC:-} $*"
CHANGED=false

info() { echo "[edgek] $*"; }
fatal() { echo "[edgek] ERROR: $*" >&2; exit 1; }

# --- server or agent --------------------------------------------------------------------
if [ -n "${EDGEK_URL:-}" ]; then
    KIND=agent SERVICE=edgek-agent UNINSTALL=edgek-agent-uninstall.sh
    if [ -z "${EDGEK_TOKEN:-}" ] && [ -n "${EDGEK_TOKEN_FILE:-}" ]; then
        EDGEK_TOKEN=$(cat "$EDGEK_TOKEN_FILE")
    fi
    [ -n "${EDGEK_TOKEN:-}" ] || fatal "an agent needs EDGEK_TOKEN or EDGEK_TOKEN_FILE with EDGEK_URL"
else
    KIND=server SERVICE=edgek UNINSTALL=edgek-uninstall.sh
fi

# --- system checks ----------------------------------------------------------------------
check_system() {
    command -v python3 >/dev/null 2>&1 || fatal "python3 (3.11 or newer) is needed: apt-get install python3"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || fatal "Python 3.11 or newer is needed; this is $(python3 -V 2>&1)"
    if ! command -v podman >/dev/null 2>&1; then
        if [ -z "$ROOT" ] && [ "${INSTALL_EDGEK_SKIP_PACKAGES:-}" != true ]; then
            info "installing Podman"
            if command -v apt-get >/dev/null 2>&1; then
                apt-get install -y podman
            elif command -v dnf >/dev/null 2>&1; then
                dnf install -y podman
            else
                info "WARNING: Podman is missing; the node runs no pods until it is installed"
            fi
        else
            info "WARNING: Podman is missing; the node runs no pods until it is installed"
        fi
    fi
    command -v iptables >/dev/null 2>&1 || info "WARNING: iptables is missing (apt-get install iptables)"
    if [ -r /sys/fs/cgroup/cgroup.controllers ] && ! grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
        cmdline=/boot/firmware/cmdline.txt
        [ -e "$cmdline" ] || cmdline=/boot/cmdline.txt
        info "the memory cgroup is disabled: pods cannot get memory limits."
        info "On a Raspberry Pi add ' cgroup_memory=1 cgroup_enable=memory' to the end of the"
        info "single line in $cmdline, then reboot and run this script again."
        [ -n "$ROOT" ] || fatal "memory cgroup missing"
    fi
}

# --- the zipapp -------------------------------------------------------------------------
find_zipapp() {
    if [ -n "${INSTALL_EDGEK_ZIPAPP:-}" ]; then
        [ -f "$INSTALL_EDGEK_ZIPAPP" ] || fatal "INSTALL_EDGEK_ZIPAPP: no file $INSTALL_EDGEK_ZIPAPP"
        ZIPAPP=$INSTALL_EDGEK_ZIPAPP
        return
    fi
    here=$(cd "$(dirname "$0")" && pwd)
    arch=$(uname -m)
    [ "$arch" = arm64 ] && arch=aarch64
    if [ -f "$here/build.py" ]; then
        info "building the zipapp for $arch"
        python3 "$here/build.py" --arch "$arch" >&2
        ZIPAPP=$(ls "$here"/../dist/edgek-*-linux-"$arch".pyz)
        return
    fi
    for ZIPAPP in "$here"/edgek-*-linux-"$arch".pyz ./edgek-*-linux-"$arch".pyz; do
        [ -f "$ZIPAPP" ] && return
    done
    fatal "no zipapp: download edgek-<version>-linux-$arch.pyz and set INSTALL_EDGEK_ZIPAPP"
}

# put FILE MODE: install stdin as $ROOT/FILE with MODE, noting whether anything changed
put() {
    target=$ROOT$1
    mkdir -p "$(dirname "$target")"
    tmp=$(mktemp "$target.XXXXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [ -f "$target" ] && cmp -s "$tmp" "$target" && [ "$(stat -c %a "$target")" = "${2#0}" ]; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$target"
        CHANGED=true
    fi
}

# --- files ------------------------------------------------------------------------------
unit() {
    cat <<UNIT
[Unit]
Description=edgek: lightweight Kubernetes ($KIND)
Documentation=https://github.com/edgek/edgek
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
# edgek sends READY=1 to \$NOTIFY_SOCKET once it serves (agent: once it runs pods)
# and WATCHDOG=1 pings while its event loop runs (edgek/sdnotify.py)
Type=notify
NotifyAccess=main
WatchdogSec=120s
EnvironmentFile=-$UNIT_DIR/$SERVICE.service.env
# the modules pods need; ignored where they are built in or absent
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$BIN_DIR/edgek $KIND$(printf '%s' "$EXEC_ARGS" | sed 's/^ *$//; s/^ */ /; s/ *$//')
# containers survive restarts and upgrades of the service (edgek-killall.sh stops them)
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
UNIT
}

env_file() {
    echo "# edgek $KIND: read by $SERVICE.service (0600: holds the join token)"
    [ -z "${EDGEK_URL:-}" ] || echo "EDGEK_URL=$EDGEK_URL"
    [ -z "${EDGEK_TOKEN:-}" ] || echo "EDGEK_TOKEN=$EDGEK_TOKEN"
}

config_file() {
    cat <<CONFIG
# edgek configuration: keys are the long flag names of \`edgek $KIND\`, e.g.
#   data-dir: $DATA_DIR
#   node-name: pi1
# flags given on the command line (the unit's ExecStart) win over this file.
CONFIG
}

killall_script() {
    cat <<KILLALL
#!/bin/sh
# Stop edgek and everything it runs: the services, its processes, pods and containers, its
# Podman networks and bridges (ek*), mounts under its data dir. Files stay.
set -u
DATA_DIR=\${EDGEK_DATA_DIR:-$DATA_DIR}
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop edgek.service edgek-agent.service 2>/dev/null
fi
# the zipapp as run through its shebang: "python3 $BIN_DIR/edgek server|agent ..."
for pid in \$(pgrep -f "^([^ ]*/)?python3[.0-9]* $BIN_DIR/edgek (server|agent)" || true); do
    kill "\$pid" 2>/dev/null
done
sleep 1
podman_cmd() {
    p=\$DATA_DIR/agent/podman
    HOME=\$p/home CONTAINERS_CONF=\$p/containers.conf CONTAINERS_STORAGE_CONF=\$p/storage.conf \\
        podman --root "\$p/storage" --runroot "\$p/run" --tmpdir "\$p/tmp" \\
        --network-config-dir "\$p/networks" --volumepath "\$p/volumes" \\
        --cgroup-manager cgroupfs --events-backend file "\$@"
}
if [ -d "\$DATA_DIR/agent/podman/storage" ] && command -v podman >/dev/null 2>&1; then
    podman_cmd pod rm --all --force --time 0 >/dev/null 2>&1
    podman_cmd rm --all --force --time 0 >/dev/null 2>&1
    for net in \$(podman_cmd network ls --quiet 2>/dev/null | grep '^ek' || true); do
        podman_cmd network rm --force "\$net" >/dev/null 2>&1
    done
fi
for link in \$(ip -o link show 2>/dev/null | sed -n 's/^[0-9]*: \\(ek[0-9a-f]\\{10\\}\\)[:@].*/\\1/p'); do
    ip link delete "\$link" 2>/dev/null
done
grep " \$DATA_DIR/" /proc/self/mounts | cut -d' ' -f2 | sort -r | while read -r mount; do
    umount -l "\$mount" 2>/dev/null
done
exit 0
KILLALL
}

uninstall_script() {
    cat <<UNINSTALL
#!/bin/sh
# Remove edgek ($KIND): stop everything (edgek-killall.sh), then delete exactly the files
# the installer created and edgek's data dir.
set -u
ROOT=\${INSTALL_EDGEK_ROOT:-$ROOT}
if [ -z "\$ROOT" ]; then
    [ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
    "$BIN_DIR/edgek-killall.sh"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable $SERVICE.service 2>/dev/null
        systemctl daemon-reload
    fi
fi
rm -f "\$ROOT$UNIT_DIR/$SERVICE.service" "\$ROOT$UNIT_DIR/$SERVICE.service.env" \\
    "\$ROOT$CONFIG_DIR/config.yaml" "\$ROOT$BIN_DIR/edgek" "\$ROOT$BIN_DIR/edgek-killall.sh"
rmdir "\$ROOT$CONFIG_DIR" 2>/dev/null
rm -rf "\$ROOT$DATA_DIR"
rm -f "\$ROOT$BIN_DIR/$UNINSTALL"
UNINSTALL
}

have_systemd() { [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; }

start_service() {
    systemctl daemon-reload
    [ "${INSTALL_EDGEK_SKIP_ENABLE:-}" = true ] && return
    systemctl enable "$SERVICE.service" >/dev/null
    [ "${INSTALL_EDGEK_SKIP_START:-}" = true ] && return
    if [ "$CHANGED" = true ] || ! systemctl is-active --quiet "$SERVICE.service"; then
        info "starting $SERVICE.service"
        systemctl restart "$SERVICE.service"
    fi
    if [ "$KIND" = server ]; then
        info "waiting for the node to be Ready"
        i=0
        until "$BIN_DIR/edgek" kubectl wait --for=condition=Ready node --all --timeout=5s >/dev/null 2>&1; do
            i=$((i + 1))
            [ $i -lt 60 ] || { info "the node is not Ready yet: journalctl -u $SERVICE"; break; }
            sleep 2
        done
        info "kubeconfig: /etc/edgek/edgek.yaml (kubectl: export KUBECONFIG=/etc/edgek/edgek.yaml)"
        info "join another device: curl -sfL <url>/install.sh | sudo EDGEK_URL=https://$(hostname):6443 EDGEK_TOKEN=\$(sudo cat $DATA_DIR/server/node-token) sh -"
    fi
}

main() {
    check_system
    find_zipapp
    put "$BIN_DIR/edgek" 0755 <"$ZIPAPP"
    killall_script | put "$BIN_DIR/edgek-killall.sh" 0755
    uninstall_script | put "$BIN_DIR/$UNINSTALL" 0755
    unit | put "$UNIT_DIR/$SERVICE.service" 0644
    env_file | put "$UNIT_DIR/$SERVICE.service.env" 0600
    if [ ! -f "$ROOT$CONFIG_DIR/config.yaml" ]; then
        config_file | put "$CONFIG_DIR/config.yaml" 0644
    fi
    if have_systemd; then
        start_service
    elif [ -n "$ROOT" ]; then
        info "installed under $ROOT (nothing started)"
    else
        info "no systemd here: run the service by hand:"
        info "  set -a; . $UNIT_DIR/$SERVICE.service.env; set +a; $BIN_DIR/edgek $KIND $EXEC_ARGS"
    fi
}

main
