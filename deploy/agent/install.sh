#!/usr/bin/env bash
# Install (or upgrade) the edugap agent on a Linux computer as a systemd service, from the
# offline bundle this script sits in (no network needed):
#
#   sudo ./install.sh --school-id 79000001 --broker mqtts://mqtt.edugap.example:8883 \
#        --ca-file ca.pem [--speed-tester]
#
# The MQTT password is asked for (or read from --password-file FILE, or from the environment
# variable EDUGAP_AGENT_BROKER_PASSWORD); it is never a command-line argument. The user name
# is the school id unless --username says otherwise.
#
# What it does: a Python venv in /opt/edugap-agent with the edugap wheel and its dependencies
# from ./wheels, a system user `edugap-agent`, the config /etc/edugap/agent.toml (written by
# `edugap-agent enrol` when --school-id is given, else the existing one is kept), the systemd
# unit, and `systemctl enable --now`. Re-running it upgrades the package and keeps the state.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE_USER=edugap-agent
SCHOOL_ID="" BROKER="" USERNAME="" PASSWORD_FILE="" CA_FILE="" SPEED_TESTER=0
INDEX_URL="" WHEELS="$HERE/wheels" PYTHON=python3 ROOT="" START=1

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    cat <<USAGE

options:
  --school-id ID        the school's code (needed unless a config already exists)
  --broker URL          mqtts://host:port (with --school-id)
  --ca-file FILE        the CA that signed the broker's certificate (copied to /etc/edugap/ca.pem)
  --username USER       MQTT user name (default: the school id, as the broker's ACL expects)
  --password-file FILE  read the MQTT password from FILE (default: \$EDUGAP_AGENT_BROKER_PASSWORD,
                        else asked for)
  --speed-tester        this computer runs the school's speed tests (designate one per school;
                        without it the computer sends inventory and heartbeats only)
  --wheels DIR          where the wheels are (default: ./wheels beside this script)
  --index-url URL       install from this package index instead of the wheels (needs network)
  --python EXE          the Python 3.11+ to build the venv with (default: python3)
  --root DIR            install under DIR instead of / (tests; the venv keeps DIR in its paths)
  --no-start            install and enable, but do not start now
USAGE
}

die() { echo "install.sh: $*" >&2; exit 1; }
usage_error() { echo "install.sh: $*" >&2; echo "run '$0 --help' for the options" >&2; exit 2; }

# value OPTION "$@": the argument after OPTION, refusing a missing or option-like one
value() {
    local option="$1"
    shift
    if [ $# -lt 2 ] || [ -z "$2" ] || [[ "$2" == --* ]]; then
        usage_error "$option needs a value"
    fi
    printf '%s' "$2"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --school-id) SCHOOL_ID="$(value "$1" "$@")"; shift 2 ;;
        --broker) BROKER="$(value "$1" "$@")"; shift 2 ;;
        --username) USERNAME="$(value "$1" "$@")"; shift 2 ;;
        --password-file) PASSWORD_FILE="$(value "$1" "$@")"; shift 2 ;;
        --ca-file) CA_FILE="$(value "$1" "$@")"; shift 2 ;;
        --speed-tester) SPEED_TESTER=1; shift ;;
        --wheels) WHEELS="$(value "$1" "$@")"; shift 2 ;;
        --index-url) INDEX_URL="$(value "$1" "$@")"; shift 2 ;;
        --python) PYTHON="$(value "$1" "$@")"; shift 2 ;;
        --root) ROOT="$(value "$1" "$@")"; shift 2 ;;
        --no-start) START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        --password) usage_error "--password is not taken (it would show in ps and the shell history): use --password-file FILE, EDUGAP_AGENT_BROKER_PASSWORD, or answer the prompt" ;;
        *) usage_error "unknown option '$1'" ;;
    esac
done

ROOT="${ROOT%/}"
PREFIX="$ROOT/opt/edugap-agent"
CONF_DIR="$ROOT/etc/edugap"
CONF="$CONF_DIR/agent.toml"
UNIT="$ROOT/etc/systemd/system/edugap-agent.service"

# --- the arguments, checked before anything changes ---------------------------------------
if [ -n "$SCHOOL_ID" ]; then
    [[ "$SCHOOL_ID" =~ ^[A-Za-z0-9_-]{1,64}$ ]] \
        || usage_error "--school-id '$SCHOOL_ID': 1 to 64 letters, digits, '-' or '_'"
    [ -n "$BROKER" ] || usage_error "--school-id needs --broker mqtts://host:port"
    [[ "$BROKER" =~ ^mqtts?://[^/]+$ ]] \
        || usage_error "--broker '$BROKER': must look like mqtts://host:port (or mqtt://host:port)"
    if [ -n "$CA_FILE" ]; then
        [ -f "$CA_FILE" ] || usage_error "--ca-file '$CA_FILE': no such file"
        [[ "$BROKER" == mqtts://* ]] || usage_error "--ca-file needs an mqtts:// --broker"
    fi
    if [ -n "$PASSWORD_FILE" ]; then
        [ -r "$PASSWORD_FILE" ] || usage_error "--password-file '$PASSWORD_FILE': cannot read it"
    fi
elif [ -n "$BROKER$USERNAME$PASSWORD_FILE$CA_FILE" ]; then
    usage_error "--broker, --username, --password-file and --ca-file need --school-id"
elif [ ! -f "$CONF" ]; then
    usage_error "no config at $CONF yet: give --school-id and --broker (see --help)"
fi
if [ -z "$INDEX_URL" ] && ! ls "$WHEELS"/edugap-*.whl >/dev/null 2>&1; then
    die "no edugap wheel in $WHEELS: run this script from the unpacked offline bundle (built by 'make agent-bundle'), or pass --index-url URL to install from a package index"
fi

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 ...)"
command -v systemctl >/dev/null || die "systemd is required"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install python3 (3.11 or newer) and python3-venv"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11; pass --python /path/to/python3.11"
[ -f "$HERE/edugap-agent.service" ] || die "edugap-agent.service must sit next to this script"

# The password, before anything is installed: asked for only when nothing else gives it
PASSWORD=""
if [ -n "$SCHOOL_ID" ]; then
    if [ -n "$PASSWORD_FILE" ]; then
        IFS= read -r PASSWORD <"$PASSWORD_FILE" || true
    elif [ -n "${EDUGAP_AGENT_BROKER_PASSWORD:-}" ]; then
        PASSWORD="$EDUGAP_AGENT_BROKER_PASSWORD"
    elif [ -t 0 ]; then
        IFS= read -r -s -p "MQTT password for school $SCHOOL_ID: " PASSWORD
        echo
    fi
    PASSWORD="${PASSWORD%$'\r'}"
    [ -n "$PASSWORD" ] || usage_error "no password: use --password-file FILE, EDUGAP_AGENT_BROKER_PASSWORD, or run in a terminal to be asked"
fi

# --- the package ----------------------------------------------------------------------------
echo "==> Python venv in $PREFIX"
if [ ! -x "$PREFIX/bin/python" ]; then
    "$PYTHON" -m venv "$PREFIX" || die "cannot create a venv (Debian/Ubuntu: apt install python3-venv)"
fi
if [ -n "$INDEX_URL" ]; then
    echo "    from the package index $INDEX_URL"
    "$PREFIX/bin/pip" install --quiet --upgrade --index-url "$INDEX_URL" edugap \
        || die "pip could not install edugap from $INDEX_URL"
else
    echo "    from $WHEELS (no network)"
    "$PREFIX/bin/pip" install --quiet --upgrade --no-index --find-links "$WHEELS" edugap \
        || die "pip could not install edugap from $WHEELS: does the bundle cover this computer (see its README)?"
fi
install -d "$ROOT/usr/local/bin"
ln -sf "$PREFIX/bin/edugap-agent" "$ROOT/usr/local/bin/edugap-agent"

echo "==> system user $SERVICE_USER"
if [ -n "$ROOT" ]; then
    grep -q "^$SERVICE_USER:" "$ROOT/etc/passwd" 2>/dev/null \
        || useradd --prefix "$ROOT" --system --no-create-home --home-dir /var/lib/edugap-agent \
            --shell /usr/sbin/nologin "$SERVICE_USER"
    GROUP_ID="$(awk -F: -v g="$SERVICE_USER" '$1 == g { print $3 }' "$ROOT/etc/group")"
elif ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/lib/edugap-agent \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi
GROUP_ID="${GROUP_ID:-$SERVICE_USER}"

echo "==> config $CONF"
install -d -m 0750 -o root -g "$GROUP_ID" "$CONF_DIR"
if [ -n "$SCHOOL_ID" ]; then
    enrol=("$PREFIX/bin/edugap-agent" enrol --force --config "$CONF" --school-id "$SCHOOL_ID"
           --broker "$BROKER" --password-file -)
    [ -n "$USERNAME" ] && enrol+=(--username "$USERNAME")
    [ -n "$CA_FILE" ] && enrol+=(--ca-file "$CA_FILE")
    [ "$SPEED_TESTER" -eq 1 ] && enrol+=(--speed-tester)
    # the password goes through a pipe from a shell builtin: never an argument of a process
    printf '%s\n' "$PASSWORD" | env -u EDUGAP_AGENT_BROKER_PASSWORD "${enrol[@]}" \
        || die "the enrolment above was refused; nothing was started"
    chgrp "$GROUP_ID" "$CONF" && chmod 0640 "$CONF"
    [ -f "$CONF_DIR/ca.pem" ] && chmod 0644 "$CONF_DIR/ca.pem"
else
    echo "    keeping the existing config (edit it, then: systemctl restart edugap-agent)"
fi
unset PASSWORD
install -d "$PREFIX/share"
install -m 0644 "$HERE/edugap-agent.example.toml" "$PREFIX/share/" 2>/dev/null || true

echo "==> checking the config"
env -u EDUGAP_AGENT_BROKER_PASSWORD "$PREFIX/bin/edugap-agent" check-config --config "$CONF" \
    || die "fix $CONF and run this script again"

echo "==> systemd unit $UNIT"
install -d "$(dirname "$UNIT")"
install -m 0644 "$HERE/edugap-agent.service" "$UNIT"
if [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" enable edugap-agent.service
    echo "Installed under $ROOT (not started)."
elif [ "$START" -eq 1 ]; then
    systemctl daemon-reload
    systemctl enable --now edugap-agent.service
    systemctl restart edugap-agent.service  # an upgrade takes effect now
    sleep 3
    systemctl --no-pager --lines=5 status edugap-agent.service || true
    echo
    echo "Installed. Check it:  sudo edugap-agent status --config $CONF"
else
    systemctl daemon-reload
    systemctl enable edugap-agent.service
    echo "Installed and enabled; start it with: systemctl start edugap-agent"
fi
