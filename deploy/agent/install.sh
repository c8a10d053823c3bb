#!/usr/bin/env bash
# Install (or upgrade) the edugap agent on a Linux computer as a systemd service.
#
#   sudo ./install.sh --school-id 79000001 --broker mqtts://mqtt.edugap.example:8883 \
#        --username 79000001 --password 'secret' --ca-file /path/to/ca.pem
#
# What it does: a Python venv in /opt/edugap-agent with the `edugap` package, a system user
# `edugap-agent`, the config /etc/edugap/agent.toml (kept if it exists), the systemd unit, and
# `systemctl enable --now`. Re-running it upgrades the package and keeps the config and state.
set -euo pipefail

PREFIX=/opt/edugap-agent
CONF_DIR=/etc/edugap
CONF="$CONF_DIR/agent.toml"
UNIT=/etc/systemd/system/edugap-agent.service
SERVICE_USER=edugap-agent
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

PACKAGE="edugap"
SCHOOL_ID=""
BROKER=""
USERNAME=""
PASSWORD=""
CA_FILE=""
START=1

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    cat <<USAGE
options:
  --school-id ID     the school's code (absent: the agent reports as "unenrolled")
  --broker URL       mqtt://host:port or mqtts://host:port
  --username USER    MQTT user name       --password PASS   MQTT password
  --ca-file FILE     CA certificate for mqtts:// (copied to $CONF_DIR/ca.pem)
  --package SPEC     what pip installs (default: edugap; or a wheel file path)
  --python EXE       the Python 3.11+ to build the venv with (default: python3)
  --no-start         install and enable, but do not start now
USAGE
}

PYTHON=python3
while [ $# -gt 0 ]; do
    case "$1" in
        --school-id) SCHOOL_ID="$2"; shift 2 ;;
        --broker) BROKER="$2"; shift 2 ;;
        --username) USERNAME="$2"; shift 2 ;;
        --password) PASSWORD="$2"; shift 2 ;;
        --ca-file) CA_FILE="$2"; shift 2 ;;
        --package) PACKAGE="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        --no-start) START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "install.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 ...)"
command -v systemctl >/dev/null || die "systemd is required"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install python3 (3.11 or newer) and python3-venv"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11; pass --python /path/to/python3.11"
[ -f "$HERE/edugap-agent.service" ] || die "edugap-agent.service must sit next to this script"

echo "==> Python venv in $PREFIX"
if [ ! -x "$PREFIX/bin/python" ]; then
    "$PYTHON" -m venv "$PREFIX" || die "cannot create a venv (Debian/Ubuntu: apt install python3-venv)"
fi
"$PREFIX/bin/pip" install --quiet --upgrade pip
"$PREFIX/bin/pip" install --quiet --upgrade "$PACKAGE"
ln -sf "$PREFIX/bin/edugap-agent" /usr/local/bin/edugap-agent

echo "==> system user $SERVICE_USER"
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/lib/edugap-agent \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi

toml_string() {  # a TOML basic string
    local s="${1//\\/\\\\}"
    printf '"%s"' "${s//\"/\\\"}"
}

echo "==> config $CONF"
install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
if [ -f "$CONF" ]; then
    echo "    keeping the existing config (edit it, then: systemctl restart edugap-agent)"
else
    tmp="$(mktemp)"
    {
        echo "# edugap agent config: every key is explained in $PREFIX/share/edugap-agent.example.toml"
        echo "# and in docs/agent.md. Written by install.sh on $(date -u +%Y-%m-%d)."
        echo
        echo "[school]"
        if [ -n "$SCHOOL_ID" ]; then echo "school_id = $(toml_string "$SCHOOL_ID")"; else echo "# school_id = \"79000001\""; fi
        echo
        echo "[broker]"
        if [ -n "$BROKER" ]; then echo "url = $(toml_string "$BROKER")"; else echo "# url = \"mqtts://mqtt.edugap.example:8883\""; fi
        if [ -n "$USERNAME" ]; then echo "username = $(toml_string "$USERNAME")"; fi
        if [ -n "$PASSWORD" ]; then echo "password = $(toml_string "$PASSWORD")"; fi
        if [ -n "$CA_FILE" ]; then
            install -m 0644 "$CA_FILE" "$CONF_DIR/ca.pem"
            echo "ca_file = \"$CONF_DIR/ca.pem\""
        fi
    } >"$tmp"
    install -m 0640 -o root -g "$SERVICE_USER" "$tmp" "$CONF"
    rm -f "$tmp"
fi
install -d "$PREFIX/share"
if [ -f "$HERE/edugap-agent.example.toml" ]; then
    install -m 0644 "$HERE/edugap-agent.example.toml" "$PREFIX/share/"
fi

echo "==> checking the config"
"$PREFIX/bin/edugap-agent" check-config --config "$CONF" || die "fix $CONF and run this script again"

echo "==> systemd unit $UNIT"
install -m 0644 "$HERE/edugap-agent.service" "$UNIT"
systemctl daemon-reload
if [ "$START" -eq 1 ]; then
    systemctl enable --now edugap-agent.service
    systemctl restart edugap-agent.service  # an upgrade takes effect now
    sleep 3
    systemctl --no-pager --lines=5 status edugap-agent.service || true
    echo
    echo "Installed. Check it:  sudo edugap-agent status --config $CONF"
else
    systemctl enable edugap-agent.service
    echo "Installed and enabled; start it with: systemctl start edugap-agent"
fi
