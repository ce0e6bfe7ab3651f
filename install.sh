#!/usr/bin/env bash
# Instafly's one-command install. Run ./install.sh --help for the modes.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODE=dev
ROOT=""
WITH_BROWSER=auto
WITH_VENV=yes
WITH_SHARE=no
CONFIG_FILE=""
PROXY_PORT=8080
WEB_PORT=8081
MIN_FREE_MB=3000
FIRST_PASSWORD=""
VERSIONS=locked
DEV_VENV=""

usage() {
  cat <<'EOF'
Usage: ./install.sh [--system [--share] [--root DIR]] [--latest] [--config FILE] [--no-browser]

  ./install.sh           Developer / try-it-out install, no root needed. Creates .venv in this
                         checkout and installs Instafly with its test tools into it. Run it again
                         at any time: when nothing changed it finishes in seconds and changes
                         nothing. Then:  .venv/bin/instaflyd run
                         As root (or with passwordless sudo) it also installs Debian's Chromium,
                         nftables, Samba and smbclient for the browser, transparent-mode and
                         shared-folder tests, unless --no-browser is given.

  sudo ./install.sh --system
                         The appliance install: Instafly in /opt/instafly/venv (not in the
                         checkout, so the service does not depend on it); the 'instafly' system
                         user; /etc/instafly/instafly.yaml
                         (never overwritten once it exists); /var/lib/instafly for the data;
                         /srv/instafly/drop and /srv/instafly/enhanced for photos; the systemd
                         unit instaflyd.service, installed and enabled (started when systemd runs).

  --share                With --system: also share /srv/instafly (its drop and enhanced folders)
                         on the home network with Debian's Samba, as the share "Instafly", for
                         the user "instafly" with a generated password (never guests). The
                         password is kept in /etc/instafly/share-password (0600) and printed at
                         the end; laptops and the iPhone Files app connect to smb://<box>/Instafly.
  --root DIR             With --system: install into DIR instead of / (for packaging and tests;
                         the user is not created and services are not started).
  --no-venv              With --system: set up the user, folders, config and unit only, for when
                         Instafly is already installed in /opt/instafly/venv by other means.
  --latest               Install the newest releases pyproject.toml's ranges allow instead of
                         the tested set: by default both modes install exactly the versions in
                         requirements/lock-py3.X.txt (dev: dev-py3.X.txt) for the Python that
                         runs, each file checked against its SHA-256 (a Python without a lock
                         file gets the newest, with a warning). scripts/lock.sh makes the files.
  --venv DIR             Dev mode: the virtual environment to create or update (default .venv;
                         CI uses a second one for a second Python, chosen with PYTHON=...).
  --config FILE          The config Instafly will run with, for the port checks and the summary
                         (default: $INSTAFLY_CONFIG, the system install's, else the one instaflyd
                         finds: /etc/instafly/instafly.yaml, ~/.config/instafly/instafly.yaml).
  --no-browser           Do not install Chromium, nftables, Samba, smbclient, wireguard-go and
                         wireguard-tools.
  -h, --help             This text.

The Python is $PYTHON if set, else the first of python3, python3.13, python3.12, python3.11.
Before installing it checks: Python >= 3.11, a 64-bit CPU and free disk space; once Instafly
is installed, that the proxy and status page ports of that config (8080 and 8081 by default)
are free. At the end it prints the address of the status
page and the proxy address to set on a phone.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --system) MODE=system ;;
    --root) ROOT="${2:?--root needs a folder}"; shift ;;
    --root=*) ROOT="${1#--root=}" ;;
    --no-browser) WITH_BROWSER=no ;;
    --no-venv) WITH_VENV=no ;;
    --latest) VERSIONS=latest ;;
    --venv) DEV_VENV="${2:?--venv needs a folder}"; shift ;;
    --venv=*) DEV_VENV="${1#--venv=}" ;;
    --share) WITH_SHARE=yes ;;
    --config) CONFIG_FILE="${2:?--config needs a file}"; shift ;;
    --config=*) CONFIG_FILE="${1#--config=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$1' (see ./install.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$ROOT" ] && [ "$MODE" != system ] && { echo "install.sh: --root goes with --system" >&2; exit 2; }
[ "$WITH_SHARE" = yes ] && [ "$MODE" != system ] && { echo "install.sh: --share goes with --system" >&2; exit 2; }
[ -n "$DEV_VENV" ] && [ "$MODE" = system ] && { echo "install.sh: --venv is for the dev install (--system uses /opt/instafly/venv)" >&2; exit 2; }
[ -n "$ROOT" ] && ROOT="$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)"

say()  { printf '\033[1m==>\033[0m %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die()  { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else return 1
  fi
}

# --- preflight ----------------------------------------------------------------------------

new_enough() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; }

find_python() {  # $PYTHON if set (it is what the user asked for), else the first good python3
  local candidate
  if [ -n "${PYTHON:-}" ]; then
    new_enough "$PYTHON" && command -v "$PYTHON"
    return
  fi
  for candidate in python3 python3.13 python3.12 python3.11; do
    command -v "$candidate" >/dev/null 2>&1 && new_enough "$candidate" && { command -v "$candidate"; return 0; }
  done
  return 1
}

# Root first: a user without it learns that before anything about their Python.
if [ "$MODE" = system ] && [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  die "--system needs root: sudo ./install.sh --system"
fi

PY="$(find_python)" || die "Python 3.11 or newer is needed (found: $("${PYTHON:-python3}" --version 2>&1 || echo none)). On Debian/Ubuntu: sudo apt install python3 python3-venv"
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "$PY cannot create virtual environments. On Debian/Ubuntu: sudo apt install python3-venv"

case "$(uname -m)" in
  x86_64|amd64|aarch64|arm64) ;;
  *) die "a 64-bit CPU (x86_64 or aarch64) is needed: TensorFlow has no build for $(uname -m)" ;;
esac

VENV="$HERE/.venv"
[ -n "$DEV_VENV" ] && VENV="$(mkdir -p "$(dirname "$DEV_VENV")" && cd "$(dirname "$DEV_VENV")" && pwd)/$(basename "$DEV_VENV")"
[ "$MODE" = system ] && VENV="$ROOT/opt/instafly/venv"

free_mb() { df -Pm "$1" | awk 'NR == 2 { print $4 }'; }
target_dir="$(dirname "$VENV")"; mkdir -p "$target_dir"
if [ "$WITH_VENV" = yes ] && [ ! -x "$VENV/bin/instaflyd" ] && [ "$(free_mb "$target_dir")" -lt "$MIN_FREE_MB" ]; then
  die "at least ${MIN_FREE_MB} MB of free disk space are needed in $target_dir for TensorFlow and mitmproxy (free: $(free_mb "$target_dir") MB)"
fi

port_in_use() {
  "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}
listener_of() {  # the command line of whatever listens on TCP port $1, if ss can tell
  local pid
  pid="$( (ss -ltnpH "sport = :$1" 2>/dev/null || true) | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
  [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null
}
check_ports() {  # the ports of the config Instafly will run with, each once
  for port in $(printf '%s\n' "$PROXY_PORT" "$WEB_PORT" | sort -un); do
    if port_in_use "$port"; then
      holder="$(listener_of "$port" || true)"; holder="${holder:0:60}"
      case "$holder" in
        *instaflyd*) ;;  # Instafly itself, from an earlier install: it keeps its port
        *) warn "port $port is in use${holder:+ by '${holder% }'}: Instafly will not start until it is free (or set proxy.listen_port / web.port in the config)" ;;
      esac
    fi
  done
}

# The config Instafly will run with: --config, $INSTAFLY_CONFIG, the system install's file, else
# what instaflyd finds itself (/etc/instafly, ~/.config/instafly). Its ports are the ones the
# summary prints and check_ports looks at, not the packaged defaults.
read_ports() {
  local file="${CONFIG_FILE:-${INSTAFLY_CONFIG:-}}" ports
  if [ -z "$file" ] && [ "$MODE" = system ] && [ -f "$ROOT/etc/instafly/instafly.yaml" ]; then
    file="$ROOT/etc/instafly/instafly.yaml"
  fi
  [ -x "$VENV/bin/python" ] || return 0
  if ports="$("$VENV/bin/python" - "$file" <<'EOF'
import sys
from instaflyd.config import ConfigError, load_config
try:
    config = load_config(sys.argv[1] or None)
except ConfigError as exc:
    sys.exit(f"install.sh: warning: the config cannot be read ({exc}); showing the default ports")
print(config.proxy.listen_port, config.web.port)
EOF
)"; then
    read -r PROXY_PORT WEB_PORT <<<"$ports"
  fi
}

# --- the virtual environment ----------------------------------------------------------------

source_digest() {  # what a non-editable install copies: a change here means reinstall
  (cd "$HERE" && find instaflyd config -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum)
}

# The tested set of versions for this Python: requirements/lock-py3.X.txt (the appliance) or
# dev-py3.X.txt (the same plus the test tools), every file checked against its hash.
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
LOCK=""
if [ "$VERSIONS" = locked ]; then
  if [ "$MODE" = dev ]; then LOCK="$HERE/requirements/dev-py$PY_VERSION.txt"; else LOCK="$HERE/requirements/lock-py$PY_VERSION.txt"; fi
  if [ ! -f "$LOCK" ]; then
    warn "no tested set of versions for Python $PY_VERSION ($(basename "$LOCK")): installing the newest releases pyproject.toml allows, which no test has seen together"
    LOCK=""
  fi
fi

# The installer: uv when there is one ($UV, uv on PATH, or one in a venv of this checkout such
# as .venv/bin/uv), else pip; in dev mode a new venv gets uv first, from the dev lock file with
# its hashes, through pip (a few seconds). uv installs the same lock files, every file checked
# against its hash too, in parallel and from its cache: a venv with TensorFlow in about 10 s
# instead of 3 min. With uv the venv itself is made by `uv venv --seed` (pip in it all the same).
find_uv() {
  local candidate
  for candidate in "${UV:-}" "$(command -v uv 2>/dev/null || true)" "$HERE"/.venv*/bin/uv; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1 && { echo "$candidate"; return 0; }
  done
  return 1
}

locked_line() {  # the lock file's entry for package $1 (its pin and hashes), for pip -r
  awk -v name="$1==" 'index($0, name) == 1 { p = 1 } p { print; if ($0 !~ /\\$/) exit }' "$LOCK"
}

UV_LINK=hardlink
[ "$MODE" = dev ] || UV_LINK=copy  # the appliance's venv: copies, not links into root's uv cache

pkg_install() {  # $1 = venv, the rest = install arguments (pip's, which uv pip install takes too)
  local venv="$1"
  shift
  if [ -n "$INSTALLER_UV" ]; then
    UV_LINK_MODE="$UV_LINK" "$INSTALLER_UV" pip install --quiet --python "$venv/bin/python" "$@" && return 0
    warn "uv could not install ($*); trying pip"
  fi
  "$venv/bin/python" -m pip install --quiet "$@"
}

venv_python_version() {  # $1 = venv: its Python's X.Y, empty when it no longer runs
  "$1/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

install_venv() {  # $1 = venv, $2 = what decides "up to date", the rest = pip install arguments
  local venv="$1" inputs="$2" stamp="$1/.instafly-install-stamp" want
  shift 2
  want="$( (cat "$HERE/pyproject.toml"; "$PY" --version; echo "$*"; echo "$inputs"; [ -z "$LOCK" ] || cat "$LOCK") | sha256sum | cut -d' ' -f1)"
  # A venv made by another Python (PYTHON=python3.13 once, plain python3 now; or a Python the
  # system upgraded) is made anew: installing this Python's lock into it would mix the two.
  if [ -e "$venv/bin/python" ] && [ "$(venv_python_version "$venv")" != "$PY_VERSION" ]; then
    say "$venv was made with $("$venv/bin/python" --version 2>&1 || echo 'a Python that is gone'): making it anew with $("$PY" --version)"
    rm -rf "$venv"
  fi
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/instaflyd" --version >/dev/null 2>&1; then
    say "$venv is up to date"
    return 0
  fi
  say "Creating $venv with $("$PY" --version)"
  INSTALLER_UV="$(find_uv || true)"
  if [ ! -x "$venv/bin/python" ]; then
    if [ -n "$INSTALLER_UV" ]; then
      UV_LINK_MODE="$UV_LINK" "$INSTALLER_UV" venv --quiet --seed --python "$PY" "$venv" || "$PY" -m venv "$venv"
    else
      "$PY" -m venv "$venv"
    fi
  fi
  if [ -z "$INSTALLER_UV" ] && [ "$MODE" = dev ] && [ -n "$LOCK" ] && [ -n "$(locked_line uv)" ]; then
    "$venv/bin/python" -m pip install --quiet --require-hashes -r <(locked_line uv) \
      && INSTALLER_UV="$venv/bin/uv"
  fi
  if [ -z "$INSTALLER_UV" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
  fi
  say "Installing Instafly into $venv with $([ -n "$INSTALLER_UV" ] && echo uv || echo pip) (TensorFlow and mitmproxy take a few minutes the first time)"
  if [ -n "$LOCK" ]; then
    say "Using the tested versions in ${LOCK#"$HERE/"} (--latest: the newest allowed instead)"
    pkg_install "$venv" --require-hashes -r "$LOCK"
    pkg_install "$venv" --no-deps "$@"
  else
    pkg_install "$venv" "$@"
  fi
  echo "$want" > "$stamp"
}

if [ "$MODE" = dev ]; then
  install_venv "$VENV" "editable" -e "$HERE[dev]"
elif [ "$WITH_VENV" = no ]; then
  say "Skipping the virtual environment (--no-venv)"
else
  install_venv "$VENV" "$(source_digest)" "$HERE"
fi

read_ports
check_ports

# --- system packages the tests use (dev path): Chromium, nftables, Samba, WireGuard ---------------

if [ "$MODE" = dev ] && [ "$WITH_BROWSER" = auto ]; then
  missing=()
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
  command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
  command -v smbd >/dev/null 2>&1 || [ -x /usr/sbin/smbd ] || missing+=(samba)
  command -v smbclient >/dev/null 2>&1 || missing+=(smbclient)
  if [ ${#missing[@]} -eq 0 ]; then
    say "Chromium, nftables and Samba are installed"
  elif command -v apt-get >/dev/null 2>&1 && as_root true; then
    say "Installing Debian's ${missing[*]} for the browser, transparent-mode and shared-folder tests"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
      || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
      || warn "could not install ${missing[*]}; the tests that need them will be skipped (sudo apt install ${missing[*]})"
  else
    warn "${missing[*]} missing and cannot be installed without root; the tests that need them will be skipped (sudo apt install ${missing[*]})"
  fi
  # WireGuard phones in network namespaces (tests/test_wireguard_phones.py). Without
  # recommends: wireguard-tools would pull in a kernel image.
  wg_missing=()
  command -v wireguard-go >/dev/null 2>&1 || wg_missing+=(wireguard-go)
  command -v wg >/dev/null 2>&1 || wg_missing+=(wireguard-tools)
  if [ ${#wg_missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1 && as_root true; then
      say "Installing Debian's ${wg_missing[*]} for the WireGuard phone tests"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wg_missing[@]}" >/dev/null 2>&1 \
        || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wg_missing[@]}" >/dev/null; } \
        || warn "could not install ${wg_missing[*]}; the WireGuard tests will be skipped (sudo apt-get install --no-install-recommends ${wg_missing[*]})"
    else
      warn "${wg_missing[*]} missing; the WireGuard tests will be skipped (sudo apt-get install --no-install-recommends ${wg_missing[*]})"
    fi
  fi
fi

# --- the system install -------------------------------------------------------------------

SHARE_PASSWORD=""
set_up_share() {  # the drop and enhanced folders as the Samba share "Instafly" (--share)
  local samba="$ROOT/etc/samba" include="include = /etc/samba/instafly.conf"
  if [ -z "$ROOT" ] && ! [ -x /usr/sbin/smbd ]; then
    say "Installing Debian's Samba for the shared folder"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq samba >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq samba >/dev/null; } \
      || die "could not install Samba (apt-get install samba); the rest is installed, run again with --share"
  fi
  install -d -m 0755 "$samba"
  sh "$HERE/systemd/instafly-share.sh" /srv/instafly instafly > "$samba/instafly.conf"
  chmod 0644 "$samba/instafly.conf"
  if [ ! -f "$samba/smb.conf" ]; then
    printf '[global]\n   server role = standalone server\n   map to guest = never\n' > "$samba/smb.conf"
  fi
  grep -qxF "$include" "$samba/smb.conf" || printf '\n# Instafly'"'"'s shared folder (install.sh --share)\n%s\n' "$include" >> "$samba/smb.conf"
  if [ -s "$ETC/share-password" ]; then
    SHARE_PASSWORD="$(cat "$ETC/share-password")"
  else
    SHARE_PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(12))')"
    (umask 077 && printf '%s\n' "$SHARE_PASSWORD" > "$ETC/share-password")
  fi
  chmod 0600 "$ETC/share-password"
  if [ -z "$ROOT" ]; then
    printf '%s\n%s\n' "$SHARE_PASSWORD" "$SHARE_PASSWORD" | smbpasswd -s -a instafly >/dev/null
    smbpasswd -e instafly >/dev/null
    if [ "$(systemctl is-system-running 2>/dev/null || true)" = offline ] || ! command -v systemctl >/dev/null; then
      warn "systemd is not running here: Samba shares the folder from the next boot"
    else
      systemctl enable smbd.service >/dev/null 2>&1 || true
      systemctl restart smbd.service
    fi
  fi
  say "Sharing /srv/instafly as the Samba share Instafly (user instafly)"
}

if [ "$MODE" = system ]; then
  ETC="$ROOT/etc/instafly"; DATA="$ROOT/var/lib/instafly"; SRV="$ROOT/srv/instafly"
  UNIT_DIR="$ROOT/etc/systemd/system"
  if [ -z "$ROOT" ]; then
    if ! id instafly >/dev/null 2>&1; then
      say "Creating the system user 'instafly'"
      useradd --system --home-dir /var/lib/instafly --no-create-home --shell /usr/sbin/nologin instafly
    fi
  fi
  install -d -m 0755 "$ETC" "$UNIT_DIR"
  install -d -m 0750 "$DATA" "$SRV" "$SRV/drop" "$SRV/enhanced"  # photos: user and group only
  if [ -z "$ROOT" ]; then chown instafly:instafly "$DATA" "$SRV" "$SRV/drop" "$SRV/enhanced"; fi
  if [ -e "$ETC/instafly.yaml" ]; then
    say "Keeping the existing $ETC/instafly.yaml"
    # It may hold passwords: readable by the service's group, never by every user of the box.
    chmod o-rwx "$ETC/instafly.yaml"
    if [ -z "$ROOT" ]; then chgrp instafly "$ETC/instafly.yaml"; fi
  else
    say "Writing $ETC/instafly.yaml"
    cat > "$ETC/instafly.yaml" <<'EOF'
# Instafly system configuration. Only the keys you change belong here; every key and its
# default is documented in config/instafly.yaml of the package. Check with:
#   /opt/instafly/venv/bin/instaflyd --config /etc/instafly/instafly.yaml check-config
data_dir: /var/lib/instafly
watch:
  drop_dir: /srv/instafly/drop
  output_dir: /srv/instafly/enhanced
EOF
    chmod 0640 "$ETC/instafly.yaml"
    if [ -z "$ROOT" ]; then chown root:instafly "$ETC/instafly.yaml"; fi
  fi
  # The status page's first password: made here so that the closing message can show it once
  # (only its hash is kept). Without the venv (--no-venv) the service's first start makes it.
  if [ -x "$VENV/bin/instaflyd" ]; then
    if FIRST_PASSWORD="$("$VENV/bin/instaflyd" --config "$ETC/instafly.yaml" --data-dir "$DATA" password --init)"; then
      if [ -n "$FIRST_PASSWORD" ] && [ -z "$ROOT" ]; then chown instafly:instafly "$DATA/web-password"; fi
    else
      warn "could not make the status page's password; the service makes one at its first start (journalctl -u instaflyd)"
    fi
  fi
  # An upgrade: the store goes to this release's schema now, with the service stopped (its old
  # code must not meet the new schema), as the service's user (the database stays its own); a
  # copy of the database as it was is kept as instafly.db.before-upgrade.
  if [ -x "$VENV/bin/instaflyd" ] && [ -f "$DATA/instafly.db" ]; then
    as_service=()
    if [ -z "$ROOT" ]; then
      systemctl stop instaflyd.service >/dev/null 2>&1 || true
      as_service=(runuser -u instafly --)
    fi
    if migrated="$("${as_service[@]}" "$VENV/bin/instaflyd" --config "$ETC/instafly.yaml" --data-dir "$DATA" migrate)"; then
      say "${migrated^}"
    else
      die "could not bring the store in $DATA to this release's schema (above); the database as it was is kept as $DATA/instafly.db.before-upgrade"
    fi
  fi
  install -m 0644 "$HERE/systemd/instaflyd.service" "$UNIT_DIR/instaflyd.service"
  if [ -f "$HERE/systemd/instafly-transparent.service" ]; then
    install -m 0644 "$HERE/systemd/instafly-transparent.service" "$UNIT_DIR/instafly-transparent.service"
    install -m 0755 "$HERE/systemd/instafly-transparent.sh" "$ROOT/opt/instafly/instafly-transparent.sh"
  fi
  if [ "$WITH_SHARE" = yes ]; then
    set_up_share
  fi
  if [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" enable instaflyd.service >/dev/null 2>&1 \
      || { mkdir -p "$UNIT_DIR/multi-user.target.wants" && ln -sf ../instaflyd.service "$UNIT_DIR/multi-user.target.wants/instaflyd.service"; }
  elif [ "$(systemctl is-system-running 2>/dev/null || true)" = offline ] || ! command -v systemctl >/dev/null; then
    systemctl enable instaflyd.service >/dev/null 2>&1 || true
    warn "systemd is not running here: the service is enabled and starts at the next boot"
  else
    systemctl daemon-reload
    systemctl enable instaflyd.service
    systemctl restart instaflyd.service  # starts it, or restarts it on the new code
  fi
fi

# --- summary ------------------------------------------------------------------------------

if [ "$MODE" = system ]; then read_ports; fi  # its config file may be new

lan_ip="$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1) }' | head -1)"
[ -n "$lan_ip" ] || lan_ip="$(hostname -I 2>/dev/null | awk '{ print $1 }')"
[ -n "$lan_ip" ] || lan_ip="<this box's address>"
echo
say "Instafly is installed."
if [ "$MODE" = dev ]; then
  echo "    Start it:        $VENV/bin/instaflyd run"
  echo "    Run the tests:   $VENV/bin/python -m pytest"
else
  echo "    Service:         systemctl status instaflyd    (logs: journalctl -u instaflyd -f)"
  echo "    Config:          $ETC/instafly.yaml"
  echo "    Drop photos in:  $SRV/drop    (results in $SRV/enhanced)"
  if [ "$WITH_SHARE" = yes ]; then
    echo "    Shared folder:   smb://$lan_ip/Instafly  (Windows: \\\\$lan_ip\\Instafly)"
    echo "                     user instafly, password $SHARE_PASSWORD  (kept in $ETC/share-password)"
  fi
fi
echo "    Status page:     http://$lan_ip:$WEB_PORT/"
if [ -n "$FIRST_PASSWORD" ]; then
  echo "    Password:        $FIRST_PASSWORD    (shown only this once; write it down)"
  echo "                     change it with: sudo -u instafly /opt/instafly/venv/bin/instaflyd password"
elif [ "$MODE" = dev ]; then
  echo "    Password:        printed once by the first 'instaflyd run'; change it with $VENV/bin/instaflyd password"
else
  echo "    Password:        set already, or printed once by the service's first start (journalctl -u instaflyd);"
  echo "                     change it with: sudo -u instafly /opt/instafly/venv/bin/instaflyd password"
fi
echo "    Phones:          open http://$lan_ip:$WEB_PORT/setup: Add a phone, scan its QR code with the"
echo "                     WireGuard app, trust the certificate; the page says when it is ready"
echo "    Or Wi-Fi proxy:  Wi-Fi settings -> HTTP proxy -> manual, server $lan_ip, port $PROXY_PORT"
