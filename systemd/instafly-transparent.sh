#!/bin/sh
# Instafly transparent mode: the box is the LAN's gateway and the phones need no proxy setting.
#
#   instafly-transparent.sh start | stop | status
#
# start  redirects TCP 80 and 443 arriving on the LAN interface to the proxy's port, rejects
#        UDP 443 (QUIC) there so that browsers fall back to TCP at once, and turns on IP
#        forwarding (the previous sysctl values are saved). Everything lives in one nftables
#        table, "inet instafly", so nothing else in the firewall is touched.
# stop   deletes that table and restores the saved sysctl values.
#
# Run as root by instafly-transparent.service; the daemon itself needs no privileges (mitmproxy
# reads the original destination with SO_ORIGINAL_DST). Set proxy.mode: transparent in the
# config. Settings, from /etc/instafly/transparent.env or the environment:
#   INSTAFLY_LAN_INTERFACE   the interface the phones' traffic arrives on (default: the one of
#                            the default route)
#   INSTAFLY_PROXY_PORT      the proxy's port (default: proxy.listen_port of the config, 8080)
set -eu

TABLE="inet instafly"
STATE_DIR="${RUNTIME_DIRECTORY:-/run/instafly-transparent}"
SYSCTLS="net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.send_redirects"
PYTHON="${INSTAFLY_PYTHON:-/opt/instafly/venv/bin/python}"
READ_PORT='from instaflyd.config import load_config; print(load_config().proxy.listen_port)'

die() { echo "instafly-transparent: $*" >&2; exit 1; }

proxy_port() {
  if [ -n "${INSTAFLY_PROXY_PORT:-}" ]; then
    echo "$INSTAFLY_PROXY_PORT"
  elif [ -x "$PYTHON" ] && port="$("$PYTHON" -c "$READ_PORT" 2>/dev/null)"; then
    echo "$port"
  else
    echo 8080
  fi
}

lan_interface() {
  if [ -n "${INSTAFLY_LAN_INTERFACE:-}" ]; then
    echo "$INSTAFLY_LAN_INTERFACE"
  else
    ip -o route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }'
  fi
}

rules() {  # $1 = interface, $2 = port
  cat <<RULES
table $TABLE {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "$1" fib daddr type != local tcp dport { 80, 443 } redirect to :$2
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "$1" udp dport 443 reject
  }
}
RULES
}

start() {
  command -v nft >/dev/null || die "nft is missing: apt install nftables"
  port="$(proxy_port)"
  case "$port" in ''|*[!0-9]*) die "the proxy port '$port' is not a number" ;; esac
  [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "the proxy port $port is out of range"
  iface="$(lan_interface)"
  [ -n "$iface" ] || die "no LAN interface: set INSTAFLY_LAN_INTERFACE in /etc/instafly/transparent.env"
  ip link show "$iface" >/dev/null 2>&1 || die "the interface '$iface' does not exist"

  mkdir -p "$STATE_DIR"
  if [ ! -f "$STATE_DIR/sysctl" ]; then  # keep the values from before the first start
    for key in $SYSCTLS; do
      value="$(sysctl -n "$key" 2>/dev/null)" && echo "$key=$value"
    done > "$STATE_DIR/sysctl"
  fi
  nft delete table $TABLE 2>/dev/null || true
  rules "$iface" "$port" | nft -f -
  sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0
  sysctl -q -w net.ipv6.conf.all.forwarding=1 2>/dev/null || true
  echo "instafly-transparent: TCP 80/443 on $iface -> port $port, UDP 443 rejected"
}

stop() {
  nft delete table $TABLE 2>/dev/null || true
  if [ -f "$STATE_DIR/sysctl" ]; then
    while IFS= read -r setting; do
      sysctl -q -w "$setting" 2>/dev/null || true
    done < "$STATE_DIR/sysctl"
    rm -f "$STATE_DIR/sysctl"
  fi
  echo "instafly-transparent: rules removed"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) nft list table $TABLE ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
